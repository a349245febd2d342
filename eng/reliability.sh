# Reliability, hostile peers and interop (issue 6). Sourced by build.sh; defines
#   reliability_test  the short slices run by ./build.sh test (well under 3 minutes)
#   torture_run       the full torture run: ./build.sh torture
# The C programs live in tests/torture and tests/interop and are built by CMake with the
# native build; the .NET side in tests/FdSend.Reliability. See README.md, section
# "Reliability".
# SPDX-License-Identifier: MIT

REL_DIR() { echo "$ROOT/build/reliability"; }
REL_PROGRAMS="torture faults hostile stress c_peer"

# The C programs are built by CMake with the native build (tests/torture/CMakeLists.txt);
# this links them into build/reliability/, where tests/FdSend.Reliability and torture_run
# find them.
reliability_build_c() {
  local out bin p
  out="$(REL_DIR)"; bin="$(NATIVE_BUILD_DIR)/tests/torture"
  mkdir -p "$out"
  for p in $REL_PROGRAMS; do
    [ -x "$bin/$p" ] || { echo "reliability: $bin/$p is missing (native_build failed, or not Linux?)"; return 1; }
    ln -sfn "$bin/$p" "$out/$p"
  done
}

# The bounded slices are CTest tests of the native build, labelled reliability and
# interop / torture (500,000 messages, FDSEND_TORTURE_SLICE; seed FDSEND_TORTURE_SEED) /
# faults / hostile. -V shows each program's own output (its counts and summary line),
# printed without CTest's "<test number>: " in front, as the programs print it.
reliability_ctest() {
  run_ctest reliability "$(NATIVE_BUILD_DIR)" -L "^$1\$" -V | sed -E 's/^[0-9]+: //'
}
reliability_interop() { reliability_ctest interop; }
reliability_torture_slice() { reliability_ctest torture; }
reliability_faults() { reliability_ctest faults; }
reliability_hostile() { reliability_ctest hostile; }

# The library and the concurrency stress built with clang-14 -fsanitize=thread.
reliability_tsan() {
  local cc=clang-14 dir="$ROOT/build/tsan"
  command -v "$cc" >/dev/null || { skip "ThreadSanitizer stress: $cc is not installed (Debian: clang-14 libclang-rt-14-dev)"; return 0; }
  mkdir -p "$dir"
  if ! echo 'int main(void){return 0;}' | "$cc" -fsanitize=thread -x c - -o "$dir/probe" 2>/dev/null; then
    skip "ThreadSanitizer stress: $cc cannot link -fsanitize=thread (libclang-rt-14-dev missing?)"; return 0
  fi
  # Only the stress program (and what it links: fdsend_static, fdsend_testutil) is built.
  cmake -S "$ROOT" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DFDSEND_SANITIZE=thread \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" --target reliability_stress -j2 >"$dir.build.log" 2>&1 || { tail -30 "$dir.build.log"; return 1; }
  # clang-14's TSan cannot map its shadow memory under the high ASLR entropy of recent
  # kernels ("unexpected memory mapping"): run without address randomisation when we can.
  local norand=()
  setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" "${norand[@]}" "$dir/tests/torture/stress" 5000
}

# The .NET side: interop with CPython/Perl, .NET as one side of the C torture protocol,
# hostile peers and faults, threads sharing sockets (tests/FdSend.Reliability, NUnit).
reliability_dotnet() {
  command -v dotnet >/dev/null || { skip ".NET reliability tests: the dotnet SDK is not installed"; return 0; }
  local proj="$ROOT/tests/FdSend.Reliability/FdSend.Reliability.csproj"
  dotnet build "$proj" -c Release --nologo -v quiet -clp:NoSummary || return 1
  run_nunit "$proj" "$(REL_DIR)/dotnet-results" reliability-dotnet
}

# The mutant check (tests/torture/mutants.sh): copies of libfdsend with known bugs must each
# make the torture, fault, hostile or TSan program fail. In every test run (about 45 s), so
# that a mutant the source has moved away from fails at once instead of going stale.
reliability_mutants() {
  bash "$ROOT/tests/torture/mutants.sh" "$(NATIVE_BUILD_DIR)/generated" "$(REL_DIR)/mutants"
}

reliability_test() {
  local t0=$SECONDS rc=0 results=() step s
  reliability_build_c || return 1
  for step in interop torture_slice faults hostile tsan mutants dotnet; do
    log "reliability: $step"
    s=$SECONDS
    if "reliability_$step"; then results+=("$step: ok ($((SECONDS - s)) s)"); else results+=("$step: FAILED"); rc=1; fi
  done
  step_summary reliability "$t0" "${results[@]}"
  return $rc
}

# ./build.sh torture: 3,000,000 messages (FDSEND_TORTURE_MESSAGES), bounded to 9 minutes,
# then the mutant check (copies of libfdsend with known bugs must make the tests fail).
torture_run() {
  local rc=0
  reliability_build_c || return 1
  log "torture: ${FDSEND_TORTURE_MESSAGES:-3000000} messages"
  "$(REL_DIR)/torture" --messages "${FDSEND_TORTURE_MESSAGES:-3000000}" --phase-size 8000 \
    --max-seconds 540 --seed "${FDSEND_TORTURE_SEED:-$(date +%s)}" || rc=1
  log "torture: stress (threads sharing sockets)"
  "$(REL_DIR)/stress" 20000 || rc=1
  log "torture: mutants"
  reliability_mutants || rc=1
  bash "$ROOT/tests/torture/managed-mutants.sh" || rc=1
  return $rc
}
