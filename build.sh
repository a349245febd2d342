#!/usr/bin/env bash
# FdSend build entry point. See README.md.
#   ./build.sh            the same as ./build.sh pack
#   ./build.sh test       build everything and run every test
#   ./build.sh demo       build everything and run the demo
#   ./build.sh pack [--host-only]  build and pack every RID this machine can build
#                                  (--host-only: this machine's own RID only)
#   ./build.sh bench      run the comparison benchmarks (writes tests/FdSend.Benchmarks/RESULTS.md)
#   ./build.sh torture    the full reliability torture run
# SPDX-License-Identifier: MIT
source "$(dirname "$0")/eng/common.sh"
cd "$ROOT"

cmd="${1:-all}"
[ $# -gt 0 ] && shift

# Each area of the project keeps its steps in eng/<area>.sh, defining functions named
# <area>_<step>; this runs the step if the area defines it.
run_step() {
  local fn="$1"; shift
  if declare -F "$fn" >/dev/null; then "$fn" "$@"; fi
}
for f in "$ROOT"/eng/*.sh; do
  case "$(basename "$f")" in common.sh) ;; *) source "$f" ;; esac
done

build_all() {
  log "native library ($(host_rid))"
  native_build
  run_step managed_build
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
  test)
    rm -rf "$STEP_NOTES"
    build_all
    test_step "native (CTest)" run_ctest native "$(NATIVE_BUILD_DIR)" -j2 -LE '^reliability$'  # the reliability step runs those
    for area_test in $(declare -F | awk '{print $3}' | grep -E '^[a-z_]+_test$' | sort); do
      test_step "${area_test%_test}" "$area_test"
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
    echo "usage: $0 [build|test|demo|pack [--host-only]|bench|torture]" >&2
    exit 2
    ;;
esac
