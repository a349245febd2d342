#!/usr/bin/env bash
# FdSend build entry point. See README.md.
#   ./build.sh            the same as ./build.sh pack
#   ./build.sh test       build everything and run every test step (TEST_STEPS below)
#   ./build.sh test STEP...  build everything and run only those test steps, in the order given
#   ./build.sh steps      list the test steps, in the order ./build.sh test runs them
#   ./build.sh demo       build everything and run the demo
#   ./build.sh pack [--host-only]  build and pack every RID this machine can build
#                                  (--host-only: this machine's own RID only)
#   ./build.sh bench      run the comparison benchmarks (writes bench/RESULTS.md)
#   ./build.sh torture    the full reliability torture run
# SPDX-License-Identifier: MIT
source "$(dirname "$0")/eng/common.sh"
cd "$ROOT"

# The test steps of `./build.sh test`, in the order it runs them: "<step> <function>".
# This list is the only place that decides what `./build.sh test` runs. The functions live
# in eng/<area>.sh (named <area>_test or <area>_<what>_test). Every function whose name
# ends in _test must be listed here: `./build.sh test` and `./build.sh steps` refuse to
# run while one is not (so a new step is neither skipped nor added without a line here);
# a helper that is not a step takes another name. A step that fails does not stop the run:
# the others still run, and the end of the run names the failed steps.
TEST_STEPS=(
  "ctest               native_ctest_test"        # the native CTest suite (see native_ctest_test)
  "aot                 aot_test"                 # NativeAOT publish of the demo, run
  "bench               bench_test"               # the benchmarks' quick correctness run
  "cross               cross_test"               # cross RIDs (qemu, musl, wine), binary checks, ci.yml
  "docs                docs_test"                # README/docs links and code blocks
  "handoff             handoff_test"             # tests/FdSend.Handoff.Tests
  "managed             managed_test"             # tests/FdSend.Tests (NUnit)
  "managed_aspnetcore  managed_aspnetcore_test"  # tests/FdSend.AspNetCore.Tests
  "native              native_test"              # sanitizers, valgrind, fuzz, exports, install, no-seqpacket
  "package             package_test"             # the nupkg used from fresh projects
  "reliability         reliability_test"         # interop, torture slice, faults, hostile, tsan, .NET
  "systemd             systemd_test"             # tests/FdSend.Systemd.Tests
)

cmd="${1:-all}"
[ $# -gt 0 ] && shift

# Each area of the project keeps its steps in eng/<area>.sh, defining functions named
# <area>_<step>; this runs one. A step no eng/*.sh defines is an error (a renamed function
# must not turn a verb into a silent success).
run_step() {
  local fn="$1"; shift
  declare -F "$fn" >/dev/null || { echo "ERROR: build.sh calls $fn, which no eng/*.sh defines" >&2; return 1; }
  "$fn" "$@"
}
for f in "$ROOT"/eng/*.sh; do
  case "$(basename "$f")" in common.sh) ;; *) source "$f" ;; esac
done

build_all() {
  log "native library ($(host_rid))"
  native_build
  if command -v dotnet >/dev/null 2>&1; then run_step managed_build
  else skip "managed build: dotnet is not installed (the native library and its tests only)"; fi
}

# The native CTest suite. Its reliability-labelled tests (interop, torture slice, faults,
# hostile) are left to the reliability step when this run includes it (./build.sh test);
# without it (./build.sh test ctest, as CI's per-platform jobs run) they run here.
native_ctest_test() {
  case " ${RUN_STEPS:-} " in
    *" reliability "*) run_ctest native "$(NATIVE_BUILD_DIR)" -j2 -LE '^reliability$' ;;
    *) run_ctest native "$(NATIVE_BUILD_DIR)" -j2 ;;
  esac
}

step_name() { set -- $1; echo "$1"; }
step_fn() { set -- $1; echo "$2"; }
list_steps() { local s; for s in "${TEST_STEPS[@]}"; do printf '%-20s %s\n' "$(step_name "$s")" "$(step_fn "$s")"; done; }

# TEST_STEPS and the *_test functions must match: an unlisted *_test function, or a listed
# function that does not exist, stops the run before anything is built.
check_steps() {
  local s fn bad=0 listed=" "
  for s in "${TEST_STEPS[@]}"; do
    fn="$(step_fn "$s")"; listed+="$fn "
    declare -F "$fn" >/dev/null || { echo "ERROR: TEST_STEPS in build.sh lists $fn, which no eng/*.sh defines" >&2; bad=1; }
  done
  for fn in $(declare -F | awk '{print $3}' | grep -E '^[a-z_]+_test$'); do
    case "$listed" in *" $fn "*) ;; *)
      echo "ERROR: $fn (eng/*.sh) is not in TEST_STEPS in build.sh: add it there as a test step, or rename it if it is not one" >&2
      bad=1 ;;
    esac
  done
  return $bad
}

failures=()
# Run a test step, remember its failure, keep going so that one run reports everything.
test_step() {
  local name="$1"; shift
  log "test: $name"
  if "$@"; then :; else failures+=("$name"); fi
}

case "$cmd" in
  all|build|pack)
    build_all
    run_step cross_build_all "$@"
    run_step managed_pack "$@"
    ;;
  steps)
    check_steps || exit 1
    list_steps
    ;;
  test)
    check_steps || { printf '\nFAILED: the test steps in build.sh do not match the *_test functions (above)\n' >&2; exit 1; }
    selected=()
    if [ $# -eq 0 ]; then
      selected=("${TEST_STEPS[@]}")
    else
      for want in "$@"; do
        found=""
        for s in "${TEST_STEPS[@]}"; do [ "$(step_name "$s")" = "$want" ] && found="$s"; done
        [ -n "$found" ] || { echo "unknown test step: $want (./build.sh steps lists them)" >&2; exit 2; }
        selected+=("$found")
      done
    fi
    RUN_STEPS="$(for s in "${selected[@]}"; do step_name "$s"; done | tr '\n' ' ')"
    rm -rf "$STEP_NOTES"
    build_all
    for s in "${selected[@]}"; do
      test_step "$(step_name "$s")" "$(step_fn "$s")"
    done
    if compgen -G "$STEP_NOTES/*.txt" >/dev/null; then
      for f in "$STEP_NOTES"/*.txt; do
        printf '\n--- %s ---\n' "$(basename "$f" .txt)"
        head -60 "$f"
      done
    fi
    if [ ${#failures[@]} -gt 0 ]; then
      printf '\nFAILED test steps: %s\n' "${failures[*]}"
      exit 1
    fi
    printf '\nAll test steps passed.\n'
    ;;
  demo)
    build_all
    run_step managed_demo "$@"
    ;;
  bench)
    build_all
    run_step bench_run "$@"
    ;;
  torture)
    build_all
    run_step torture_run "$@"
    ;;
  *)
    echo "usage: $0 [build|test [STEP...]|steps|demo|pack [--host-only]|bench|torture]" >&2
    exit 2
    ;;
esac
