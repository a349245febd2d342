# Shared helpers for build.sh and the eng/*.sh scripts. Source it; do not run it.
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The .NET runtime identifier of this machine (linux-x64, linux-musl-arm64, osx-arm64...).
host_rid() {
  local os arch
  case "$(uname -s)" in
    Linux) if ldd --version 2>&1 | grep -qi musl; then os=linux-musl; else os=linux; fi ;;
    Darwin) os=osx ;;
    FreeBSD) os=freebsd ;;
    SunOS) os=illumos ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;;
  esac
  case "$(uname -m)" in
    x86_64|amd64) arch=x64 ;;
    i86pc) arch=x64 ;;   # illumos on x86 names the machine class; OmniOS is 64-bit only
    aarch64|arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  echo "$os-$arch"
}

log() { printf '\n==> %s\n' "$*"; }
skip() { printf 'SKIPPED: %s\n' "$*"; }


# What a test step wants said again at the very end of `./build.sh test`, where CI's log
# tail shows it: the failed tests with their messages, or tests that only passed when run
# again. One file per step under build/step-notes; build.sh prints them all.
STEP_NOTES="$ROOT/build/step-notes"
step_note() { mkdir -p "$STEP_NOTES"; tee -a "$STEP_NOTES/$1.txt"; }

# Runs an NUnit test project with a .trx log in RESULTS and prints every skip with its
# reason. A failed run is listed (failed tests with their messages, or why the test host
# was aborted) in the output and in the step notes, and then run once more in a fresh test
# host: only the failed test methods if at most three failed, the whole project if the
# host crashed or the run failed without a failed test. The step passes only if that run
# passes, and then prints "FLAKY" with what failed the first time, so that a
# timing-dependent test is seen and mended rather than hidden. More than three failed
# methods, or a second failure, fail the step.
run_nunit() {   # run_nunit PROJECT RESULTS NAME [FILTER]
  local proj="$1" results="$2" name="$3" only="${4:-}" rc=0 filter what
  rm -rf "$results" && mkdir -p "$results"
  # --blame-hang-timeout: a hung test fails the run (with a dump) instead of stalling CI.
  dotnet test "$proj" -c Release --nologo --results-directory "$results" ${only:+--filter "$only"} \
    --logger "trx;LogFileName=$name.trx" --blame-hang-timeout 120s 2>&1 | tee "$results/$name.log" || rc=$?
  python3 "$ROOT/eng/trx.py" skipped "$results/$name.trx" || true
  [ $rc -eq 0 ] && return 0
  python3 "$ROOT/eng/trx.py" failed "$results/$name.trx" | step_note "$name" || true
  if grep -q -E 'Test Run Aborted|run was aborted' "$results/$name.log"; then
    # a crashed or hung test host says why in the console output only
    grep -E -A12 'run was aborted|Unhandled exception|hang timeout' "$results/$name.log" | head -40 | step_note "$name" || true
    filter="$only" what="${only:-the whole project} (the test host was aborted)"
  elif filter="$(python3 "$ROOT/eng/trx.py" rerun "$results/$name.trx" 3)"; then
    filter="${filter:-$only}"
    what="${filter:-the whole project (the run failed without a failed test)}"
    [ -n "$filter" ] || tail -15 "$results/$name.log" | step_note "$name"
  else
    echo "$name: more than three test methods failed; not run again" | step_note "$name"
    return $rc
  fi
  log "$name: once more, in a fresh test host: $what"
  if dotnet test "$proj" -c Release --no-build --nologo --results-directory "$results/rerun" \
    --logger "trx;LogFileName=rerun.trx" --blame-hang-timeout 120s ${filter:+--filter "$filter"}; then
    echo "FLAKY: failed in the full run, passed when run again ($what); the first failure is above" \
      | step_note "$name"
    return 0
  fi
  python3 "$ROOT/eng/trx.py" failed "$results/rerun/rerun.trx" | sed 's/^/again: /' | step_note "$name" || true
  return $rc
}

# CTest in DIR with its usual output; the list of failed tests also goes to the step notes
# under NAME.
run_ctest() {
  local name="$1" dir="$2" rc=0; shift 2
  ctest --test-dir "$dir" --output-on-failure "$@" 2>&1 | tee "$dir/ctest.log" || rc=$?
  [ $rc -eq 0 ] || sed -n '/The following tests FAILED/,$p' "$dir/ctest.log" | step_note "$name" || true
  return $rc
}

# The end of an area step that runs sub-steps: their results (one "name: ok/FAILED ..."
# line each) and the plain "N passed, N failed" line. Usage: step_summary AREA T0 RESULT...
step_summary() {
  local area="$1" t0="$2" nf; shift 2
  printf '\n%s summary (%s s):\n' "$area" "$((SECONDS - t0))"
  printf '  %s\n' "$@"
  nf=$(printf '%s\n' "$@" | grep -c FAILED || true)
  echo "$(( $# - nf )) passed, $nf failed"
}
