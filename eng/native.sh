# libfdsend's extra checks (issue 2). Sourced by build.sh; defines
#   native_test   run by ./build.sh test after the plain CTest run of the native build:
#     sanitizers  a second tree built with clang-14 -fsanitize=address,undefined (plus the
#                 libFuzzer target), whose CTest suite runs there (all but the
#                 reliability slices: eng/reliability.sh runs those, at their pace)
#     valgrind    the native build's CTest suite under valgrind memcheck, failing on
#                 memory errors, heap leaks and leaked descriptors
#     fuzz        the cmsg parser and the channel codec, each fuzzed for
#                 FDSEND_FUZZ_SECONDS (30) on a copy of its committed seed corpus
#                 (tests/native/fuzz/corpus, tests/native-msg/fuzz/corpus)
#     exports     libfdsend.so exports fdsend_* symbols and nothing else
#     install     cmake --install into a temporary prefix, then tests/native/install's
#                 consumer built and run every way a C project takes libfdsend:
#                 find_package (shared, static), pkg-config (shared, --static),
#                 add_subdirectory, FetchContent
#     no_seqpacket the CTest suite again with SOCK_SEQPACKET refused, as on macOS (not
#                 the reliability slices: Linux-only programs that need seqpacket)
# A missing tool prints "SKIPPED: <why>" and does not fail. The helpers below are named
# _native_* so that build.sh (which runs every *_test function) does not call them.
# SPDX-License-Identifier: MIT

# Configure, build and copy the native library for the host into runtimes/<rid>/native.
# Extra arguments go to cmake's configure step.
native_build() {
  local dir="$ROOT/build/native-$(host_rid)"
  mkdir -p "$ROOT/build"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFDSEND_RUNTIMES_DIR="$ROOT/runtimes/$(host_rid)/native" "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)"
}
NATIVE_BUILD_DIR() { echo "$ROOT/build/native-$(host_rid)"; }

NATIVE_SAN_DIR() { echo "$ROOT/build/native-asan"; }

# skip, remembered so that the summary says "skipped" rather than "ok".
_native_skip() { skip "$@"; NATIVE_STEP_SKIPPED=1; }

# Whether clang-14 can link a program with the given -fsanitize= list.
_native_clang_can() {
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }
#ifndef FUZZ
int main(void) { return 0; }
#endif' >"$1.probe.c"
  clang-14 -fsanitize="$2" ${3:-} -x c "$1.probe.c" -o "$1.probe" >/dev/null 2>&1
  local rc=$?
  rm -f "$1.probe.c" "$1.probe"
  return $rc
}

# (a) The second tree: clang-14, ASan+UBSan, and the fuzz target when libFuzzer links.
_native_sanitizers() {
  local dir; dir="$(NATIVE_SAN_DIR)"
  NATIVE_FUZZ_READY=0
  if ! command -v clang-14 >/dev/null; then
    _native_skip "sanitizers and fuzzing: clang-14 is not installed (Debian: clang-14 libclang-rt-14-dev)"
    return 0
  fi
  mkdir -p "$dir"
  if ! _native_clang_can "$dir" address,undefined; then
    _native_skip "sanitizers and fuzzing: clang-14 cannot link -fsanitize=address,undefined (libclang-rt-14-dev missing?)"
    return 0
  fi
  local fuzz=OFF
  if _native_clang_can "$dir" fuzzer,address,undefined -DFUZZ; then
    fuzz=ON
  else
    _native_skip "fuzzing: clang-14 cannot link -fsanitize=fuzzer (libclang-rt-14-dev missing?)"
  fi
  cmake -S "$ROOT" -B "$dir" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Debug \
    -DFDSEND_SANITIZE=address,undefined -DFDSEND_FUZZ=$fuzz >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j2 >"$dir.build.log" 2>&1 || { tail -40 "$dir.build.log"; return 1; }
  [ "$fuzz" = ON ] && NATIVE_FUZZ_READY=1
  ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    run_ctest sanitizers "$dir" -j2 -LE '^reliability$'
}

# (b) The native build's CTest suite under valgrind (tests/native/valgrind_ctest.py).
_native_valgrind() {
  command -v valgrind >/dev/null || { _native_skip "valgrind: not installed (Debian: valgrind)"; return 0; }
  command -v python3 >/dev/null || { _native_skip "valgrind: python3 is needed to drive it"; return 0; }
  python3 "$ROOT/tests/native/valgrind_ctest.py" "$(NATIVE_BUILD_DIR)" -j2
}

# (c) Fuzz the cmsg parser and the channel codec, each for a bounded time on a temporary
# copy of its seed corpus (the committed corpora only change by hand or by running
# tests/native/fuzz/make_corpus.py).
_native_fuzz() {
  local dir rc=0
  dir="$(NATIVE_SAN_DIR)"
  if [ "${NATIVE_FUZZ_READY:-0}" != 1 ] || [ ! -x "$dir/tests/native/fuzz_parse_rights" ]; then
    _native_skip "fuzzing: no libFuzzer build (see the sanitizers step)"; return 0
  fi
  _native_fuzz_one fdsend_parse_rights "$dir/tests/native/fuzz_parse_rights" \
    "$ROOT/tests/native/fuzz/corpus" || rc=1
  _native_fuzz_one "the channel codec" "$dir/tests/native-msg/fuzz_frame" \
    "$ROOT/tests/native-msg/fuzz/corpus" || rc=1
  return $rc
}
_native_fuzz_one() {   # _native_fuzz_one WHAT FUZZER CORPUS
  local tmp rc secs="${FDSEND_FUZZ_SECONDS:-30}"
  [ -x "$2" ] || { echo "fuzzer $2 is missing"; return 1; }
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fdsend-fuzz.XXXXXX")"
  cp -R "$3" "$tmp/corpus"
  echo "fuzzing $1 for ${secs}s from $(ls "$tmp/corpus" | wc -l) seeds"
  "$2" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$tmp/" "$tmp/corpus" >"$tmp/log" 2>&1
  rc=$?
  grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units)" "$tmp/log" || true
  if [ $rc -ne 0 ]; then
    tail -60 "$tmp/log"
    echo "fuzzer failed (exit $rc); crash inputs:"
    ls "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-* 2>/dev/null | while read -r f; do
      echo "  $f: $(od -An -tx1 -v "$f" | tr -d '\n' | cut -c1-300)"
    done
    echo "(kept in $tmp)"
    return 1
  fi
  rm -rf "$tmp"
}

# (d) Only fdsend_* in the dynamic symbol table, and every public function there.
_native_exports() {
  local lib bad missing f
  lib="$(NATIVE_BUILD_DIR)/libfdsend.so"
  command -v nm >/dev/null || { _native_skip "exports: nm is not installed (Debian: binutils)"; return 0; }
  [ -f "$lib" ] || { echo "exports: $lib is missing"; return 1; }
  bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^fdsend_' || true)
  missing=""
  # Every function fdsend.h declares (fdsend_socketpair, fdsend_set_inheritable and
  # fdsend_fd_info come from native/src/fdinfo.c).
  for f in fdsend_send fdsend_send_to fdsend_recv fdsend_recv_part fdsend_recv_refused fdsend_peer_credentials fdsend_max_fds \
           fdsend_close_all fdsend_strerror fdsend_version fdsend_last_os_error \
           fdsend_recv_exact fdsend_recv_exact_step fdsend_sendfds fdsend_recvfds fdsend_socketpair \
           fdsend_set_inheritable fdsend_fd_info fdsend_dup fdsend_msg_send fdsend_msg_recv \
           fdsend_check_fds fdsend_check_received fdsend_check_fd fdsend_check_peer fdsend_recv_checked fdsend_shm_create \
           fdsend_shm_map fdsend_shm_unmap fdsend_open_beneath fdsend_broker_serve_one \
           fdsend_broker_open fdsend_open_directory fdsend_broker_check_request \
           fdsend_broker_reply_encode fdsend_broker_reply_decode \
           fdsend_poller_create fdsend_poller_destroy fdsend_poller_add fdsend_poller_modify \
           fdsend_poller_remove fdsend_poller_wait fdsend_poller_wake fdsend_wait fdsend_peek \
           fdsend_frame_encode fdsend_frame_reader_init fdsend_frame_reader_want \
           fdsend_frame_reader_feed fdsend_frame_reader_begin_ahead \
           fdsend_frame_reader_frame_fds fdsend_frame_reader_limits fdsend_frame_check_record \
           fdsend_frame_ahead_size \
           fdsend_channel_open fdsend_channel_send fdsend_channel_recv fdsend_channel_close; do
    nm -D --defined-only "$lib" | awk '{print $NF}' | grep -qx "$f" || missing="$missing $f"
  done
  echo "libfdsend.so exports $(nm -D --defined-only "$lib" | grep -c ' fdsend_') fdsend_* symbols"
  [ -z "$bad" ] || { echo "exports: symbols outside fdsend_*:"; echo "$bad"; return 1; }
  [ -z "$missing" ] || { echo "exports: missing:$missing"; return 1; }
}

# (e) Every way a C project can take libfdsend, each building tests/native/install's
# consumer (a descriptor sent over a socketpair with fdsend_send/fdsend_recv, the same file
# received, the header's and the library's versions equal) and running it:
#   installed + find_package (shared and static), installed + pkg-config (shared, with the
#   rpath the README states, and --static into a fully static program), add_subdirectory
#   and FetchContent (the README's block, pointed at this working tree: no network).
# The installed libfdsend must be optimised, and an embedded FdSend must bring no tests.
_native_consumer_run() {   # _native_consumer_run WHAT EXE
  local out
  out=$("$2" 2>&1) && [ "$out" = "consumer ok $(_native_version)" ] \
    && { echo "  ok   $1: $out"; return 0; }
  echo "  FAIL $1: $2 printed: $out"; return 1
}
_native_consumer_cmake() {   # _native_consumer_cmake WHAT DIR CMAKE-ARGS...
  local what="$1" dir="$2" exe; shift 2
  if ! { cmake -S "$ROOT/tests/native/install" -B "$dir" "$@" >"$dir.log" 2>&1 \
         && cmake --build "$dir" -j2 >>"$dir.log" 2>&1; }; then
    tail -30 "$dir.log"; echo "  FAIL $what: does not configure or build (log above)"; return 1
  fi
  if [ "$what" != find_package ] && ! ctest --test-dir "$dir" -N 2>/dev/null | grep -q "Total Tests: 0"; then
    echo "  FAIL $what: FdSend's tests joined the consumer's CTest"; return 1
  fi
  for exe in consumer consumer_static; do _native_consumer_run "$what ($exe)" "$dir/$exe" || return 1; done
  if readelf -d "$dir/consumer_static" 2>/dev/null | grep -q 'libfdsend'; then
    echo "  FAIL $what: consumer_static needs libfdsend.so"; return 1
  fi
}
_native_install() {
  local tmp prefix rc=0 cc="${CC:-cc}" f flags
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/fdsend-install.XXXXXX")"; prefix="$tmp/prefix"
  cmake --install "$(NATIVE_BUILD_DIR)" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log"; rm -rf "$tmp"; return 1; }
  for f in include/fdsend.h lib/libfdsend.so lib/libfdsend.a lib/pkgconfig/fdsend.pc \
           lib/cmake/fdsend/fdsendConfig.cmake; do
    [ -e "$prefix/$f" ] || { echo "install: $f is missing from the prefix"; rc=1; }
  done
  # Built with optimisation (the tests' tree is RelWithDebInfo; a plain configure is Release).
  flags="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$(NATIVE_BUILD_DIR)/CMakeCache.txt")"
  case "$flags" in Release|RelWithDebInfo|MinSizeRel) echo "  ok   installed library built as $flags" ;;
    *) echo "  FAIL installed library built as '${flags}', not optimised"; rc=1 ;; esac

  _native_consumer_cmake find_package "$tmp/find_package" -DCMAKE_PREFIX_PATH="$prefix" || rc=1

  if command -v pkg-config >/dev/null; then
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    # shared, with the run path the README gives (no LD_LIBRARY_PATH, no ldconfig)
    if $cc "$ROOT/tests/native/install/consumer.c" $(pkg-config --cflags --libs fdsend) \
         -Wl,-rpath,"$(pkg-config --variable=libdir fdsend)" -o "$tmp/pc_shared"; then
      _native_consumer_run "pkg-config (shared)" "$tmp/pc_shared" || rc=1
    else echo "  FAIL pkg-config (shared): does not build"; rc=1; fi
    # --static: Libs.private must be enough for a program with no shared libraries at all
    if $cc -static "$ROOT/tests/native/install/consumer.c" $(pkg-config --cflags --libs --static fdsend) \
         -o "$tmp/pc_static" 2>"$tmp/pc_static.log"; then
      if readelf -d "$tmp/pc_static" 2>/dev/null | grep -q NEEDED; then
        echo "  FAIL pkg-config --static: the program still needs shared libraries"; rc=1
      else _native_consumer_run "pkg-config --static (no shared libraries)" "$tmp/pc_static" || rc=1; fi
    else cat "$tmp/pc_static.log"; echo "  FAIL pkg-config --static: does not link"; rc=1; fi
    unset PKG_CONFIG_PATH
  else
    _native_skip "pkg-config consumers: pkg-config is not installed (Debian: pkg-config)"
  fi

  # Embedded, with the consumer's own CTest on, as a real project would have it.
  _native_consumer_cmake add_subdirectory "$tmp/subdirectory" -DFDSEND_CONSUME=subdirectory \
    -DFDSEND_SOURCE_DIR="$ROOT" -DCMAKE_BUILD_TYPE=Release || rc=1
  _native_consumer_cmake FetchContent "$tmp/fetchcontent" -DFDSEND_CONSUME=fetchcontent \
    -DFETCHCONTENT_SOURCE_DIR_FDSEND="$ROOT" -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
    -DCMAKE_BUILD_TYPE=Release || rc=1
  [ $rc -ne 0 ] && echo "(kept in $tmp)" || rm -rf "$tmp"
  return $rc
}

# (f) The C suite on a system without SOCK_SEQPACKET Unix sockets, as macOS is: an
# LD_PRELOAD shim refuses them (EPROTONOSUPPORT). Cases about that type must skip, cases
# that loop over socket types must go on with the others, and nothing may fail.
_native_no_seqpacket() {
  local dir shim log rc=0
  dir="$(NATIVE_BUILD_DIR)"; shim="$dir/no_seqpacket_shim.so"; log="$dir/ctest-no-seqpacket.log"
  [ "$(uname -s)" = Linux ] || { _native_skip "no-SOCK_SEQPACKET run: the LD_PRELOAD shim is for Linux"; return 0; }
  cc -shared -fPIC -O2 -Wall -Werror -o "$shim" "$ROOT/tests/native/no_seqpacket_shim.c" -ldl || return 1
  LD_PRELOAD="$shim" ctest --test-dir "$dir" -j2 --output-on-failure -LE '^reliability$' >"$log" 2>&1 || rc=$?
  grep -E "tests passed|\(Skipped\)|\(Failed\)|\(Timeout\)" "$log" || true
  if [ $rc -ne 0 ]; then
    sed -n '/The following tests FAILED/,$p' "$log" | step_note native
    return $rc
  fi
  # The shim must have worked: the seqpacket-only cases were skipped.
  grep -q "msg.roundtrip_seqpacket (Skipped)" "$log" ||
    { echo "no-SOCK_SEQPACKET run: msg.roundtrip_seqpacket was not skipped; the shim did not take"; return 1; }
}

_native_version() {
  sed -n 's/^#define FDSEND_VERSION_STRING "\(.*\)"$/\1/p' "$ROOT/native/include/fdsend.h"
}

native_test() {
  local t0=$SECONDS rc=0 results=() step s
  for step in sanitizers valgrind fuzz exports install no_seqpacket; do
    log "native: $step"
    s=$SECONDS
    NATIVE_STEP_SKIPPED=0
    if "_native_$step"; then
      if [ "$NATIVE_STEP_SKIPPED" = 1 ]; then results+=("$step: skipped or partly skipped (see SKIPPED above)"); else results+=("$step: ok ($((SECONDS - s)) s)"); fi
    else
      results+=("$step: FAILED ($((SECONDS - s)) s)"); rc=1
    fi
  done
  step_summary native "$t0" "${results[@]}"
  return $rc
}
