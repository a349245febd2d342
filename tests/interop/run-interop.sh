#!/usr/bin/env bash
# Runs the interop pairs: libfdsend (c_peer) against CPython (peer.py) and Perl IO::FDPass
# (peer.pl), each direction, each side in its own process over a socket path.
#   run-interop.sh C_PEER [NMSGS]
# Prints one line per pair and "N passed, N failed, N skipped"; exits 1 if any failed.
# SPDX-License-Identifier: MIT
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cpeer="$1"
nmsgs="${2:-40}"
work="$(mktemp -d /tmp/fdsend-interop.XXXXXX)"
trap 'rm -rf "$work"' EXIT
passed=0 failed=0 skipped=0

# run_pair NAME RECEIVER-CMD... -- SENDER-CMD...   (the socket path is $work/NAME.sock)
run_pair() {
  local name="$1"; shift
  local recv=() send=()
  while [ "$1" != "--" ]; do recv+=("$1"); shift; done
  shift; send=("$@")
  local out_r="$work/$name.recv" out_s="$work/$name.send"
  timeout 60 "${recv[@]}" >"$out_r" 2>&1 &
  local pr=$!
  timeout 60 "${send[@]}" >"$out_s" 2>&1
  local rs=$?
  wait $pr
  local rr=$?
  if grep -q '^SKIPPED:' "$out_r" "$out_s"; then
    echo "SKIPPED: $name: $(grep -h '^SKIPPED:' "$out_r" "$out_s" | head -1 | sed 's/^SKIPPED: //')"
    skipped=$((skipped + 1))
    # a skipped side leaves the other one waiting for a connection: it has ended by now
    return
  fi
  if [ $rs -eq 0 ] && [ $rr -eq 0 ] && grep -q '^PASS' "$out_r" && grep -q '^PASS' "$out_s"; then
    echo "ok   $name"
    sed 's/^/       /' "$out_s" "$out_r"
    passed=$((passed + 1))
  else
    echo "FAIL $name (sender exit $rs, receiver exit $rr)"
    sed 's/^/       /' "$out_s" "$out_r"
    failed=$((failed + 1))
  fi
}

have_python=1; command -v python3 >/dev/null || have_python=0
have_fdpass=1; perl -MIO::FDPass -e1 2>/dev/null || have_fdpass=0

if [ $have_python = 1 ]; then
  run_pair c-to-python python3 "$here/peer.py" recv "$work/c-to-python.sock" "$nmsgs" -- \
    "$cpeer" send rights "$work/c-to-python.sock" "$nmsgs"
  run_pair python-to-c "$cpeer" recv rights "$work/python-to-c.sock" "$nmsgs" -- \
    python3 "$here/peer.py" send "$work/python-to-c.sock" "$nmsgs"
else
  echo "SKIPPED: c-to-python, python-to-c: python3 is not installed"; skipped=$((skipped + 2))
fi
if [ $have_fdpass = 1 ]; then
  run_pair c-to-perl perl "$here/peer.pl" recv "$work/c-to-perl.sock" "$nmsgs" -- \
    "$cpeer" send fdpass "$work/c-to-perl.sock" "$nmsgs"
  run_pair perl-to-c "$cpeer" recv fdpass "$work/perl-to-c.sock" "$nmsgs" -- \
    perl "$here/peer.pl" send "$work/perl-to-c.sock" "$nmsgs"
else
  echo "SKIPPED: c-to-perl, perl-to-c: Perl module IO::FDPass is not installed (Debian: libio-fdpass-perl)"
  skipped=$((skipped + 2))
fi
echo "interop: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
