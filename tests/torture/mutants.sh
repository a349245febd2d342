#!/usr/bin/env bash
# Proves the reliability programs can fail: builds COPIES of libfdsend with one known
# fd-passing bug each (never touching native/src) and checks that the torture, fault or
# hostile program run against each copy fails. A mutation whose file is gone or whose
# pattern no longer matches the source is STALE and fails the check: the source moved on,
# and the mutant must follow it (it once kept building the unchanged library for four
# mutants of a removed msg.c, which then "survived" unnoticed).
#   mutants.sh CONFIG_DIR OUT_DIR
# CONFIG_DIR holds the generated fdsend_config.h (build/native-<rid>/generated).
# SPDX-License-Identifier: MIT
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cfg="$1"; out="$2"
mkdir -p "$out"
killed=0 survived=0 skipped=0 stale=0

# mutant NAME FILE SED-EXPR PROGRAM ARGS...
mutant() {
  local name="$1" file="$2" expr="$3"; shift 3
  local d="$out/$name"
  rm -rf "$d"; mkdir -p "$d/src"
  cp "$ROOT"/native/src/*.c "$ROOT"/native/src/*.h "$d/src/"
  if [ ! -f "$ROOT/native/src/$file" ]; then
    echo "STALE: mutant $name: native/src/$file does not exist"
    stale=$((stale + 1)); return
  fi
  sed -i "$expr" "$d/src/$file"
  if cmp -s "$ROOT/native/src/$file" "$d/src/$file"; then
    echo "STALE: mutant $name: its pattern no longer matches native/src/$file"
    stale=$((stale + 1)); return
  fi
  # the C test-support library, compiled in (as tests/native/CMakeLists.txt builds it on Linux)
  local testutil=("$ROOT/tests/native/testutil.c" "$ROOT/tests/native/testutil_linux.c")
  # every POSIX source of the library (the list once named four files and went stale when
  # wait.c and fdinfo.c came: every mutant then failed to compile, i.e. was SKIPPED)
  local srcs=() f
  # (the Windows sources live in src/win32/, which this glob leaves out)
  for f in "$d"/src/*.c; do srcs+=("$f"); done
  local prog="$1"; shift
  local compiler=cc san=""
  if [ "$prog" = stress-tsan ]; then
    prog=stress; compiler=clang-14; san=-fsanitize=thread
    command -v clang-14 >/dev/null || { echo "SKIPPED: mutant $name: clang-14 is not installed"; skipped=$((skipped + 1)); return; }
  fi
  if ! $compiler -std=c11 -O1 -g $san -D_GNU_SOURCE -DFDSEND_BUILDING -I"$ROOT/native/include" -I"$cfg" -I"$d/src" \
      -I"$ROOT/tests/native" -o "$d/$prog" "$ROOT/tests/torture/$prog.c" "${testutil[@]}" "${srcs[@]}" \
      -lpthread 2>"$d/build.log"; then
    echo "STALE: mutant $name does not compile ($d/build.log)"; stale=$((stale + 1)); return
  fi
  local norand=(); [ -n "$san" ] && setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
  TSAN_OPTIONS="halt_on_error=1 exitcode=66" timeout 120 "${norand[@]}" "$d/$prog" "$@" >"$d/run.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "SURVIVED: mutant $name ($prog $*): the tests did not notice the bug"
    survived=$((survived + 1))
  else
    local why; why="$(grep -m1 -E 'WARNING: ThreadSanitizer|FAIL|not ok' "$d/run.log" | cut -c1-150)"
    [ $rc -gt 128 ] && why="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null)) ${why}"
    echo "killed: mutant $name by $prog (exit $rc): ${why:-exit status $rc}"
    killed=$((killed + 1))
  fi
}

T=(--messages 30000 --phase-size 3000 --seed 7)
mutant excess-fds-leak fdsend_posix.c 's/^    close(fd);$/    (void)fd;/' torture "${T[@]}"
mutant no-fds-truncated-flag fdsend_posix.c 's/if (pc.ctrunc || pc.excess > 0 || pc.malformed)/if (pc.ctrunc || pc.malformed)/' torture "${T[@]}"
mutant cmsg-len-aligned fdsend_posix.c 's/cmsg->cmsg_len = CMSG_LEN(/cmsg->cmsg_len = CMSG_SPACE(/' torture "${T[@]}"
mutant no-carrier-byte fdsend_posix.c 's/if (type == SOCK_STREAM) {/if (type == -1) {/' torture "${T[@]}"
# fdsend_sendmsg_fds() is the one sendmsg of fdsend_send and the channels: this mutant
# breaks both, and peer_gone_no_sigpipe sends through both.
mutant no-msg-nosignal fdsend_posix.c 's/sendflags |= MSG_NOSIGNAL;/(void)0;/' faults peer_gone_no_sigpipe
mutant no-cloexec fdsend_posix.c 's/recvflags |= MSG_CMSG_CLOEXEC;/(void)0;/' torture "${T[@]}"
mutant parser-drops-last-fd cmsg_parse.c 's|size_t n = (len - data_off) / sizeof(int);|size_t n = (len - data_off) / sizeof(int); if (n > 1) n--;|' torture "${T[@]}"
# fdsend_io (fdsend_posix.h): the first attempt's EINTR returned as a failure.
mutant no-eintr-retry fdsend_posix.h 's/if (n >= 0 || errno != EINTR)/if (1)/' faults
mutant eagain-drops-nothing-check fdsend_posix.c 's/sendflags |= MSG_DONTWAIT;/(void)0;/' faults
# The channel codec (codec.c): descriptors on a payload read, the header's descriptor count,
# the receiver's maxfds.
mutant chan-accepts-fds-mid-frame codec.c '/^static int32_t feed_part/,/^}/ s/if (nfds > 0 || (flags & FDSEND_FRAME_IN_CTRUNC))/if (0)/' hostile malformed_frames
mutant chan-ignores-fd-count codec.c 's/return ctrunc ? (uint32_t)arrived <= announced : (uint32_t)arrived == announced;/return 1;/' hostile channel_fd_limits
mutant chan-ignores-maxfds codec.c 's/if ((int64_t)fds > (int64_t)maxfds)/if (0)/' torture "${T[@]}"
# A channel direction's lock released without its mutex: a data race ThreadSanitizer must
# report (and frames may interleave).
mutant chan-unlocked-release channel.c '/^static void lock_release/,/^}/ s/pthread_mutex_\(un\)\{0,1\}lock(&l->mutex);/(void)0;/' stress-tsan 3000
echo "mutants: $killed killed, $survived survived, $stale stale, $skipped skipped"
[ $survived -eq 0 ] && [ $stale -eq 0 ]
