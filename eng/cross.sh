# Every platform this machine can build: cross builds (Linux arm64 with glibc, musl x64 and
# arm64, Windows x64 with mingw-w64), their test runs (qemu-user, musl's loader, wine),
# binary format and glibc symbol-version checks, and the CI workflow's validation.
# Sourced by build.sh:
#   cross_build_all [--host-only] (./build.sh pack) build every RID whose toolchain is
#                                 installed into build/<rid>/ and copy the library to
#                                 runtimes/<rid>/native/; a missing toolchain skips its RID
#   cross_test                    (./build.sh test) build, run each RID's CTest suite,
#                                 (win-x64: under wine, and the managed FdSend.WinTests too),
#                                 check every runtimes/<rid>/native binary, validate ci.yml
#   cross_check_runtimes [root]   check the binaries under <root>/runtimes (default: the
#                                 repository's) - usable on an unpacked nupkg too
# SPDX-License-Identifier: MIT

# RIDs this script cross-builds (the host's own RID is built by native_build).
CROSS_RIDS="linux-arm64 linux-musl-x64 linux-musl-arm64 win-x64"
# The newest glibc symbol version libfdsend.so may need. GLIBC_2.17 is the oldest glibc
# with arm64 support, and the glibc of RHEL/CentOS 7, so a library within it loads on
# every glibc distribution .NET supports (RHEL/Alma/Rocky 8+, Debian 10+, Ubuntu 18.04+,
# SLES 12 SP5+, Amazon Linux 2) and on older ones still (Ubuntu 14.04 has 2.19, Debian 8
# has 2.19).
CROSS_GLIBC_BASELINE="2.17"
# DLLs a Windows libfdsend.dll may import: the system's own, nothing from a toolchain.
CROSS_WIN_SYSTEM_DLLS="kernel32.dll ws2_32.dll iphlpapi.dll msvcrt.dll ucrtbase.dll"

cross_build_dir() { echo "$ROOT/build/$1"; }

# Is the toolchain for this RID installed? Prints why not.
cross_toolchain_ready() {
  local cc
  case "$1" in
    linux-arm64) cc=aarch64-linux-gnu-gcc ;;
    linux-musl-x64) cc=x86_64-linux-musl-gcc ;;
    linux-musl-arm64) cc=aarch64-linux-musl-gcc ;;
    win-x64) cc=x86_64-w64-mingw32-gcc ;;
    *) echo "no toolchain known for $1"; return 1 ;;
  esac
  if ! command -v "$cc" >/dev/null 2>&1; then
    echo "$cc is not installed (Debian packages: eng/apt/cross.txt)"
    return 1
  fi
  if [ "$1" = linux-musl-arm64 ] && ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    echo "aarch64-linux-gnu-gcc (which musl's arm64 wrapper drives) is not installed"
    return 1
  fi
}

# musl for arm64 comes from Debian's arm64 architecture (musl-dev:arm64), which apt can
# install only once dpkg knows that architecture; .ci/run's plain package list cannot do
# it. Add the architecture and install it here when we are root; otherwise say why not.
cross_ensure_musl_arm64() {
  dpkg -s musl-dev:arm64 >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "musl-dev:arm64 is missing and this is not a root shell with apt-get: run"
    echo "  dpkg --add-architecture arm64 && apt-get update && apt-get install musl-dev:arm64"
    return 1
  fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "==> dpkg --add-architecture arm64 (for musl-dev:arm64)"
    dpkg --add-architecture arm64 || return 1
  fi
  echo "==> apt-get install musl-dev:arm64"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends musl-dev:arm64 \
    >"$ROOT/build/apt-musl-arm64.log" 2>&1 || { tail -5 "$ROOT/build/apt-musl-arm64.log"; return 1; }
}

# Configure (once) and build one RID. Extra arguments: the targets to build (default all).
cross_build() {
  local rid="$1"; shift
  local dir; dir="$(cross_build_dir "$rid")"
  mkdir -p "$ROOT/build"
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$ROOT/eng/toolchains/$rid.cmake" \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFDSEND_RUNTIMES_DIR="$ROOT/runtimes/$rid/native" \
      >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; rm -f "$dir/CMakeCache.txt"; return 1; }
  fi
  local targets=()
  local t
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$dir" -j2 "${targets[@]}" >"$dir.build.log" 2>&1 \
    || { tail -40 "$dir.build.log"; echo "build of $rid failed (full log: $dir.build.log)"; return 1; }
}

# ./build.sh pack: every RID whose toolchain is here, library only (--host-only: none;
# --all-rids, the old spelling, is the default now). Sets CROSS_BUILT_RIDS for managed_pack.
cross_build_all() {
  CROSS_BUILT_RIDS=""
  case " $* " in
    *" --host-only "*) echo "cross builds: not requested (--host-only): the package carries $(host_rid) only"; return 0 ;;
  esac
  local rid why built=() skipped=() failed=()
  for rid in $CROSS_RIDS; do
    if [ "$rid" = linux-musl-arm64 ]; then cross_ensure_musl_arm64 || true; fi
    if ! why="$(cross_toolchain_ready "$rid")"; then
      skip "$rid: not packed: $why"; skipped+=("$rid"); continue
    fi
    log "cross build $rid"
    if cross_build "$rid" fdsend; then built+=("$rid"); else failed+=("$rid"); fi
  done
  CROSS_BUILT_RIDS="${built[*]}"
  echo "cross builds: built ${built[*]:-none}; skipped ${skipped[*]:-none}; failed ${failed[*]:-none}"
  [ ${#failed[@]} -eq 0 ] && cross_check_runtimes "$ROOT"
}

# ---- Checks on built binaries -----------------------------------------------------------

# The highest GLIBC_x.y version a shared library needs (empty if none).
cross_glibc_max() {
  { readelf -W --version-info "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' \
    | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -1; } || true
}

# version_le A B: A <= B for dotted versions.
cross_version_le() {
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -t. -k1,1n -k2,2n -k3,3n | head -1)" = "$1" ]
}

# Check one native binary against what its RID promises. Prints one line; 0 if right.
cross_check_binary() {
  local rid="$1" f="$2" machine problems="" info
  info="$(file -b "$f")"
  case "$rid" in
    linux-*|linux-musl-*)
      case "$rid" in *-x64) machine="Advanced Micro Devices X86-64" ;; *-arm64) machine="AArch64" ;; esac
      # (Output captured first: with pipefail, grep -q closing a pipe early would fail it.)
      local hdr; hdr="$(readelf -h "$f" 2>/dev/null || true)"
      grep -q "Type:.*DYN" <<<"$hdr" || problems+=" not an ELF shared object;"
      grep -q "Machine:.*$machine" <<<"$hdr" || problems+=" machine is not $machine;"
      grep -q "Class:.*ELF64" <<<"$hdr" || problems+=" not ELF64;"
      local needed; needed="$(readelf -d "$f" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ' || true)"
      case "$rid" in
        linux-musl-*)
          # musl's libc is libc.so; a glibc-built library would need libc.so.6 and GLIBC_*.
          [ "$needed" = "libc.so " ] || problems+=" needs [$needed] instead of musl's libc.so alone;"
          [ -z "$(cross_glibc_max "$f")" ] || problems+=" needs glibc symbol versions;"
          ;;
        *)
          # libc.so.6, the dynamic loader itself where thread-local storage needs it, and
          # libgcc_s.so.1: the cleanup handlers that release a socket when a thread is
          # cancelled in the middle of a channel frame (pthread_cleanup_push with
          # -fexceptions) need gcc's personality routine. glibc itself loads libgcc_s to
          # unwind a cancelled thread, so every glibc system has it; linking it statically
          # instead would bind _dl_find_object@GLIBC_2.35.
          [ -z "$(sed -E 's/libc\.so\.6 //; s/ld-linux[-a-z0-9_.]*\.so\.[0-9] //; s/libgcc_s\.so\.1 //' <<<"$needed")" ] \
            || problems+=" needs [$needed]: more than glibc's libc.so.6, its loader and libgcc_s.so.1;"
          local g; g="$(cross_glibc_max "$f")"
          if [ -z "$g" ]; then problems+=" no GLIBC symbol versions (not a glibc build?);"
          elif ! cross_version_le "$g" "$CROSS_GLIBC_BASELINE"; then
            problems+=" needs GLIBC_$g, newer than the baseline GLIBC_$CROSS_GLIBC_BASELINE ($(readelf -W --dyn-syms "$f" | grep -o "[a-z_0-9]*@GLIBC_$g" | sort -u | tr '\n' ' '));"
          fi
          info+=", highest glibc symbol GLIBC_$g (baseline GLIBC_$CROSS_GLIBC_BASELINE)"
          ;;
      esac
      # Only fdsend_* (musl's crti.o adds _init/_fini, which every musl library has).
      local bad; bad="$(readelf -W --dyn-syms "$f" | awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") && $4 != "NOTYPE" {print $8}' | { grep -Ev '^(fdsend_|_init$|_fini$)' || true; } | tr '\n' ' ')"
      [ -z "$bad" ] || problems+=" exports non-fdsend symbols: $bad;"
      ;;
    win-x64|win-arm64)
      local od=objdump
      command -v x86_64-w64-mingw32-objdump >/dev/null 2>&1 && od=x86_64-w64-mingw32-objdump
      case "$rid" in
        win-x64) grep -q "PE32+ executable (DLL).*x86-64" <<<"$info" || problems+=" not a PE32+ x86-64 DLL;" ;;
        win-arm64) grep -q "PE32+ executable (DLL).*Aarch64" <<<"$info" || problems+=" not a PE32+ Aarch64 DLL;" ;;
      esac
      local dll
      for dll in $($od -p "$f" | sed -n 's/.*DLL Name: //p' | tr 'A-Z' 'a-z'); do
        case " $CROSS_WIN_SYSTEM_DLLS " in
          *" $dll "*) ;;
          *) case "$dll" in api-ms-win-crt-*) ;; *) problems+=" imports $dll (not a system DLL);" ;; esac ;;
        esac
      done
      local pe; pe="$($od -p "$f")"
      local exports; exports="$(sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' <<<"$pe" | awk 'NF>=3 && $1=="[" {print $3} NF==2 && $1 ~ /^\[/ {print $2}')"
      [ -n "$exports" ] || problems+=" exports nothing;"
      local bad; bad="$({ grep -v '^fdsend_' <<<"$exports" || true; } | tr '\n' ' ')"
      [ -z "${bad// /}" ] || problems+=" exports non-fdsend symbols: $bad;"
      info+=", imports $($od -p "$f" | sed -n 's/.*DLL Name: //p' | tr '\n' ' ')"
      ;;
    osx-x64|osx-arm64)
      case "$rid" in osx-x64) machine=x86_64 ;; *) machine=arm64 ;; esac
      grep -q "^Mach-O 64-bit $machine dynamically linked shared library" <<<"$info" \
        || problems+=" not a Mach-O $machine dylib;"
      ;;
    freebsd-x64|illumos-x64)
      local hdr; hdr="$(readelf -h "$f" 2>/dev/null || true)"
      grep -q "Type:.*DYN" <<<"$hdr" || problems+=" not an ELF shared object;"
      grep -q "Machine:.*X86-64" <<<"$hdr" || problems+=" machine is not x86-64;"
      ;;
    *) problems+=" unknown RID;" ;;
  esac
  if [ -n "$problems" ]; then
    echo "FAIL $rid/$(basename "$f"):$problems"
    return 1
  fi
  echo "ok   $rid/$(basename "$f"): $info"
}

# Check every runtimes/<rid>/native/* under root (default: this repository).
cross_check_runtimes() {
  local root="${1:-$ROOT}" pass=0 fail=0 rid f
  [ -d "$root/runtimes" ] || { echo "no runtimes folder under $root"; return 1; }
  for rid in $(ls "$root/runtimes"); do
    for f in "$root/runtimes/$rid/native/"*; do
      [ -f "$f" ] || continue
      if cross_check_binary "$rid" "$f"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
    done
  done
  echo "binary checks: $pass passed, $fail failed"
  [ $fail -eq 0 ] && [ $pass -gt 0 ]
}

# ---- Test runs ------------------------------------------------------------------------------

# Run one RID's CTest suite; prints CTest's summary. Extra arguments go to ctest.
cross_ctest() {
  local rid="$1"; shift
  local dir; dir="$(cross_build_dir "$rid")"
  local out="$dir.ctest.log"
  local rc=0
  ctest --test-dir "$dir" -j2 --output-on-failure --timeout 180 "$@" >"$out" 2>&1 || rc=$?
  # Failures in full, then the summary lines.
  # Each failing test's output (up to the next test's line), then CTest's summary.
  sed -n '1,/tests passed/p' "$out" \
    | sed -n '/\*\*\*Failed\|\*\*\*Timeout\|\*\*\*Exception\|Not Run/,/^ *[0-9]*\/[0-9]* Test/p' | head -150
  sed -n '/tests passed/,$p' "$out" | grep -v "^Label Time\|sec\*proc\|^Total Test time\|^$" | head -40
  if grep -q "No tests were found" "$out"; then
    echo "no CTest tests are defined for $rid"
    return 1
  fi
  return $rc
}

# Windows tests under wine, in a throw-away WINEPREFIX that this function creates and
# removes; the wine server is kept up for the whole run (each test then starts in well
# under a second) and stopped at the end.
cross_wine_suite() {
  local prefix rc
  prefix="$(mktemp -d /tmp/fdsend-wine.XXXXXX)"
  (
    export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" WINEARCH=win64
    echo "wine $(wine --version 2>/dev/null): creating a prefix in $prefix"
    if ! timeout 180 wine wineboot -i >"$prefix.boot.log" 2>&1; then
      tail -5 "$prefix.boot.log"; echo "wineboot failed or took over 180 s"; exit 1
    fi
    wineserver -p 60 >/dev/null 2>&1 || true # (non-zero when wineboot's server is still up)
    cross_ctest win-x64 -L win
    rc=$?
    cross_wine_managed || rc=1
    wineserver -k >/dev/null 2>&1 || true
    exit $rc
  )
  rc=$?
  rm -rf "$prefix" "$prefix.boot.log"
  return $rc
}

# The managed API on Windows (tests/FdSend.WinTests), inside cross_wine_suite's prefix:
# published self-contained for win-x64 (the runtime pack comes from NuGet; no restore, no
# run: a visible skip) and run under wine with libfdsend's C test program as the interop
# peer. wine's mscoree must stay enabled here (the prefix was booted without it so that
# wineboot does not ask for wine-mono): .NET's IL-only assemblies load through it.
cross_wine_managed() {
  local out="$ROOT/build/win-x64-managed" log="$ROOT/build/win-x64-managed.log"
  echo "managed (win-x64, self-contained) under wine: tests/FdSend.WinTests"
  if ! command -v dotnet >/dev/null 2>&1; then
    skip "win-x64 managed tests: dotnet is not installed"; return 0
  fi
  if ! dotnet publish "$ROOT/tests/FdSend.WinTests/FdSend.WinTests.csproj" -c Release -r win-x64 \
       --self-contained -o "$out" --nologo -v quiet -clp:NoSummary >"$log" 2>&1; then
    if grep -qiE "NU1101|NU1102|NU1301|Unable to load the service index|Microsoft.NETCore.App.Runtime.win-x64" "$log"; then
      tail -5 "$log"; skip "win-x64 managed tests: the win-x64 runtime pack could not be restored (offline?)"; return 0
    fi
    tail -30 "$log"; echo "publish of FdSend.WinTests for win-x64 failed (log: $log)"; return 1
  fi
  local rc=0
  WINEDLLOVERRIDES="mshtml=" timeout 600 wine "$out/FdSend.WinTests.exe" \
    --c-peer "$(cross_build_dir win-x64)/tests/native-win/test_win.exe" >"$log" 2>&1 || rc=$?
  grep -v '^   at ' "$log" | tr -d '\r' | head -80
  [ $rc -eq 0 ] || echo "FdSend.WinTests under wine FAILED (exit $rc; log: $log)"
  return $rc
}

# The CI workflow must be valid GitHub Actions syntax (schema check from the npm registry).
cross_validate_workflow() {
  local wf="$ROOT/.github/workflows/ci.yml"
  [ -f "$wf" ] || { echo "no $wf"; return 1; }
  if ! command -v npx >/dev/null 2>&1; then
    skip "workflow validation: npx (Node.js) is not installed"; return 0
  fi
  local out
  if out="$(cd /tmp && timeout 240 npx --yes @action-validator/cli@0.6.0 "$wf" 2>&1)"; then
    echo "action-validator: $(basename "$wf") is valid"
  else
    if echo "$out" | grep -qiE "ENOTFOUND|ETIMEDOUT|EAI_AGAIN|network|registry"; then
      echo "$out" | tail -3; skip "workflow validation: the npm registry is unreachable"; return 0
    fi
    echo "$out" | grep -v "npm warn" | tail -30
    echo "action-validator: $(basename "$wf") is NOT valid"
    return 1
  fi
}

cross_test() {
  local start=$SECONDS pass=0 fail=0 skipped=0 rid why
  local -a results=()
  mkdir -p "$ROOT/build"
  cross_ensure_musl_arm64 || echo "(linux-musl-arm64 will be skipped)"
  for rid in linux-arm64 linux-musl-x64 linux-musl-arm64 win-x64; do
    local t0=$SECONDS
    if ! why="$(cross_toolchain_ready "$rid")"; then
      skip "$rid: $why"; skipped=$((skipped + 1)); results+=("$rid: skipped ($why)"); continue
    fi
    log "cross: build and test $rid"
    if [ "$rid" = win-x64 ]; then
      # The POSIX test areas are not built for Windows; tests/native-win is its suite.
      if ! cross_build "$rid" fdsend fdsend_static test_win test_win_record; then
        fail=$((fail + 1)); results+=("$rid: build FAILED"); continue
      fi
      if ! command -v wine >/dev/null 2>&1; then
        skip "$rid tests (the C suite and the managed FdSend.WinTests): wine is not installed (eng/apt/cross.txt)"
        skipped=$((skipped + 1)); results+=("$rid: built; tests skipped (no wine)"); continue
      fi
      if cross_wine_suite; then pass=$((pass + 1)); results+=("$rid: passed under wine: C suite + managed FdSend.WinTests ($((SECONDS - t0)) s)")
      else fail=$((fail + 1)); results+=("$rid: FAILED under wine"); fi
    else
      if ! cross_build "$rid"; then
        fail=$((fail + 1)); results+=("$rid: build FAILED"); continue
      fi
      case "$rid" in
        *arm64) if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
                  skip "$rid tests: qemu-aarch64-static is not installed (qemu-user-static)"
                  skipped=$((skipped + 1)); results+=("$rid: built; tests skipped (no qemu)"); continue
                fi ;;
      esac
      if cross_ctest "$rid"; then pass=$((pass + 1)); results+=("$rid: passed ($((SECONDS - t0)) s)")
      else fail=$((fail + 1)); results+=("$rid: FAILED"); fi
    fi
  done

  log "cross: binary format, architecture, imports/exports, glibc baseline"
  if cross_check_runtimes "$ROOT"; then pass=$((pass + 1)); results+=("binary checks: passed")
  else fail=$((fail + 1)); results+=("binary checks: FAILED"); fi

  log "cross: CI workflow validation"
  if cross_validate_workflow; then pass=$((pass + 1)); results+=("workflow: passed")
  else fail=$((fail + 1)); results+=("workflow: FAILED"); fi

  printf '\ncross summary (%d s):\n' $((SECONDS - start))
  printf '  %s\n' "${results[@]}"
  echo "cross: $pass passed, $fail failed, $skipped skipped"
  [ $fail -eq 0 ]
}
