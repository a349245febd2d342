# Reliability, hostile peers and interop (issue 6). Sourced by build.sh; defines
#   reliability_test  the short slices run by ./build.sh test (about 3 minutes at most)
#   torture_run       the full torture run: ./build.sh torture
# SPDX-License-Identifier: MIT

REL_DIR() { echo "$ROOT/build/reliability"; }

# Compile the reliability C programs against the static libfdsend built by native_build.
reliability_build_c() {
  local out; out="$(REL_DIR)"
  local lib; lib="$(NATIVE_BUILD_DIR)/libfdsend.a"
  mkdir -p "$out"
  [ -f "$lib" ] || { echo "reliability: $lib is missing (native_build failed?)"; return 1; }
  local cc="${CC:-cc}" flags="-std=c11 -O2 -g -Wall -Wextra -Werror -I$ROOT/native/include"
  $cc $flags -o "$out/c_peer" "$ROOT/tests/interop/c_peer.c" "$lib" || return 1
}

reliability_interop() {
  bash "$ROOT/tests/interop/run-interop.sh" "$(REL_DIR)/c_peer" 40
}

reliability_test() {
  local t0=$SECONDS rc=0 results=()
  reliability_build_c || return 1
  local step
  for step in interop; do
    log "reliability: $step"
    if "reliability_$step"; then results+=("$step: ok"); else results+=("$step: FAILED"); rc=1; fi
  done
  printf '\nreliability summary (%ss):\n' "$((SECONDS - t0))"
  printf '  %s\n' "${results[@]}"
  local nf; nf=$(printf '%s\n' "${results[@]}" | grep -c FAILED || true)
  echo "$(( ${#results[@]} - nf )) passed, $nf failed"
  return $rc
}
