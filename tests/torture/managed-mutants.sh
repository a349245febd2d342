#!/usr/bin/env bash
# Proves the .NET reliability tests can fail: copies the repository (sources only) to a
# temporary folder, breaks the COPY of the managed library in one known way each, and
# checks that the named tests fail against it. Never touches the real tree.
#   managed-mutants.sh
# SPDX-License-Identifier: MIT
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
command -v dotnet >/dev/null || { echo "SKIPPED: managed mutants: dotnet is not installed"; exit 0; }
killed=0 survived=0 stale=0

# mutant NAME FILTER PYTHON-EDIT
mutant() {
  local name="$1" filter="$2" edit="$3"
  local d; d="$(mktemp -d /tmp/fdsend-managed-mutant.XXXXXX)"
  (cd "$ROOT" && tar --exclude=./build --exclude='*/bin' --exclude='*/obj' --exclude=./.git \
     --exclude='*/TestResults' -cf - .) | tar -xf - -C "$d"
  mkdir -p "$d/build" && cp -r "$ROOT/build/reliability" "$d/build/"
  if ! (cd "$d" && python3 -c "$edit"); then
    echo "STALE: managed mutant $name: its pattern no longer matches (the source moved on: update the mutant)"; stale=$((stale + 1))
    rm -rf "$d"; return
  fi
  if timeout 600 dotnet test "$d/tests/FdSend.Reliability/FdSend.Reliability.csproj" -c Release --nologo \
       --filter "$filter" >"$d.log" 2>&1; then
    echo "SURVIVED: managed mutant $name ($filter)"; survived=$((survived + 1))
  else
    echo "killed: managed mutant $name by $filter: $(grep -m1 -A1 'Error Message' "$d.log" | tail -1 | cut -c1-160)"
    killed=$((killed + 1))
  fi
  rm -rf "$d" "$d.log"
}

# Sending a SafeHandle without holding a reference for the native call: a handle disposed
# by another thread frees its fd number, another file takes it, and that file is sent.
mutant no-safehandle-reference "Name~HandleDisposedDuringSend" "
import sys
p='managed/FdSend/Descriptor.cs'; s=open(p).read(); a='_handle.DangerousAddRef(ref referenced);'
if a not in s: sys.exit(1)
open(p,'w').write(s.replace(a, 'referenced = false;'))
p='managed/FdSend/FdSendCore.cs'; s=open(p).read(); a='fds[i].Handle?.DangerousRelease();'
if a not in s: sys.exit(1)
open(p,'w').write(s.replace(a, '{ }'))
"
echo "managed mutants: $killed killed, $survived survived, $stale stale"
[ $survived -eq 0 ] && [ $stale -eq 0 ]
