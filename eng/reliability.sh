# Reliability, hostile peers and interop (issue 6). Sourced by build.sh; defines
#   reliability_test  the short slices run by ./build.sh test (well under 3 minutes)
#   torture_run       the full torture run: ./build.sh torture
# The C programs live in tests/torture and tests/interop; the .NET side in
# tests/FdSend.Reliability. See README.md, section "Reliability".
# SPDX-License-Identifier: MIT

REL_DIR() { echo "$ROOT/build/reliability"; }
REL_CFLAGS="-std=c11 -O2 -g -Wall -Wextra -Wshadow -Werror"

# Compile the reliability C programs against the static libfdsend built by native_build.
reliability_build_c() {
  local out lib cc="${CC:-cc}" p
  out="$(REL_DIR)"; lib="$(NATIVE_BUILD_DIR)/libfdsend.a"
  mkdir -p "$out"
  [ -f "$lib" ] || { echo "reliability: $lib is missing (native_build failed?)"; return 1; }
  $cc $REL_CFLAGS -I"$ROOT/native/include" -o "$out/c_peer" "$ROOT/tests/interop/c_peer.c" "$lib" || return 1
  for p in torture faults hostile stress; do
    $cc $REL_CFLAGS -I"$ROOT/native/include" -o "$out/$p" "$ROOT/tests/torture/$p.c" "$lib" -lpthread || return 1
  done
}

reliability_interop() {
  bash "$ROOT/tests/interop/run-interop.sh" "$(REL_DIR)/c_peer" 40
}

# A slice of the torture run: 500,000 messages (about 10-25 s here).
reliability_torture_slice() {
  "$(REL_DIR)/torture" --messages "${FDSEND_TORTURE_SLICE:-500000}" --phase-size 4000 --max-seconds 60 \
    --seed "${FDSEND_TORTURE_SEED:-$(date +%s)}"
}

reliability_faults() { "$(REL_DIR)/faults"; }
reliability_hostile() { "$(REL_DIR)/hostile"; }

# The library and the concurrency stress built with clang-14 -fsanitize=thread.
reliability_tsan() {
  local cc=clang-14 dir="$ROOT/build/tsan"
  command -v "$cc" >/dev/null || { skip "ThreadSanitizer stress: $cc is not installed (Debian: clang-14 libclang-rt-14-dev)"; return 0; }
  mkdir -p "$dir"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_C_COMPILER="$cc" -DFDSEND_SANITIZE=thread \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" --target fdsend_static -j2 >"$dir.build.log" 2>&1 || { tail -30 "$dir.build.log"; return 1; }
  if ! echo 'int main(void){return 0;}' | "$cc" -fsanitize=thread -x c - -o "$dir/probe" 2>/dev/null; then
    skip "ThreadSanitizer stress: $cc cannot link -fsanitize=thread (libclang-rt-14-dev missing?)"; return 0
  fi
  "$cc" -std=c11 -O1 -g -fsanitize=thread -Wall -Wextra -Werror -I"$ROOT/native/include" \
    -o "$dir/stress" "$ROOT/tests/torture/stress.c" "$dir/libfdsend.a" -lpthread || return 1
  # clang-14's TSan cannot map its shadow memory under the high ASLR entropy of recent
  # kernels ("unexpected memory mapping"): run without address randomisation when we can.
  local norand=()
  setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" "${norand[@]}" "$dir/stress" 5000
}

# The .NET side: interop with CPython/Perl, .NET as one side of the C torture protocol,
# hostile peers and faults, threads sharing sockets (tests/FdSend.Reliability, NUnit).
reliability_dotnet() {
  command -v dotnet >/dev/null || { skip ".NET reliability tests: the dotnet SDK is not installed"; return 0; }
  local proj="$ROOT/tests/FdSend.Reliability/FdSend.Reliability.csproj"
  dotnet build "$proj" -c Release --nologo -v quiet -clp:NoSummary || return 1
  run_nunit "$proj" "$(REL_DIR)/dotnet-results" reliability-dotnet
}

reliability_test() {
  local t0=$SECONDS rc=0 results=() step s
  reliability_build_c || return 1
  for step in interop torture_slice faults hostile tsan dotnet; do
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
  bash "$ROOT/tests/torture/mutants.sh" "$(NATIVE_BUILD_DIR)/generated" "$(REL_DIR)/mutants" || rc=1
  bash "$ROOT/tests/torture/managed-mutants.sh" || rc=1
  return $rc
}
