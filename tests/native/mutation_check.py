#!/usr/bin/env python3
"""Prove that the C tests can fail: break the library one behaviour at a time (in a
scratch copy of the sources) and check that the tests pinning that behaviour fail.

Not part of ./build.sh test (it rebuilds once per mutation); run it by hand after
changing the library or the tests:  python3 tests/native/mutation_check.py [-k NAME]
Prints one line per mutation and "N passed, N failed" (a mutation "passes" when at
least one of its expected tests fails and the unmutated suite passed).
SPDX-License-Identifier: MIT
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POSIX = "native/src/fdsend_posix.c"
PARSE = "native/src/cmsg_parse.c"
ERRORS = "native/src/errors.c"
ERRORS_POSIX = "native/src/errors_posix.c"

# name, file, exact text, replacement, tests of which at least one must fail
MUTATIONS = [
    ("cmsg_len is CMSG_SPACE", POSIX,
     "cmsg->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));",
     "cmsg->cmsg_len = CMSG_SPACE((size_t)nfds * sizeof(int));",
     ["native.transfer.zero_data_stream", "native.transfer.cmsg_space_two_for_one"]),
    ("no MSG_NOSIGNAL", POSIX,
     "sendflags |= MSG_NOSIGNAL;", "sendflags |= 0;",
     ["native.signals.epipe_without_sigpipe"]),
    ("no MSG_CMSG_CLOEXEC", POSIX,
     "recvflags |= MSG_CMSG_CLOEXEC;", "recvflags |= 0;",
     ["native.recv_safety.received_fds_are_cloexec"]),
    ("EINTR not retried in recv", POSIX,
     "        n = recvmsg((int)sock, &msg, recvflags);\n    } while (n < 0 && errno == EINTR);",
     "        n = recvmsg((int)sock, &msg, recvflags);\n    } while (0);",
     ["native.signals.eintr_during_blocking_recv"]),
    ("no carrier byte on stream send", POSIX,
     "        if (type == SOCK_STREAM) {\n            iov.iov_base = &carrier;\n"
     "            iov.iov_len = 1;\n            carrier_byte = 1;\n        }\n    }\n\n    memset(&msg, 0, sizeof msg);\n    msg.msg_name",
     "        if (0) {\n            iov.iov_base = &carrier;\n"
     "            iov.iov_len = 1;\n            carrier_byte = 1;\n        }\n    }\n\n    memset(&msg, 0, sizeof msg);\n    msg.msg_name",
     ["native.transfer.zero_data_stream", "native.transfer.zero_data_stream_wire_byte"]),
    ("len 0 recv on stream does not take the carrier byte", POSIX,
     "        if (type == SOCK_STREAM) {\n            iov.iov_base = &carrier;\n"
     "            iov.iov_len = 1;\n            carrier_byte = 1;\n        }\n    }\n\n    memset(&msg, 0, sizeof msg);\n    msg.msg_iov",
     "        if (0) {\n            iov.iov_base = &carrier;\n"
     "            iov.iov_len = 1;\n            carrier_byte = 1;\n        }\n    }\n\n    memset(&msg, 0, sizeof msg);\n    msg.msg_iov",
     ["native.transfer.zero_data_stream"]),
    ("excess fds not closed", POSIX,
     "    (void)ctx;\n    close(fd);", "    (void)ctx;\n    (void)fd;",
     ["native.transfer.truncation_send5_ask1", "native.transfer.cmsg_space_two_for_one"]),
    ("no fdsend_max_fds check", POSIX,
     "    if (nfds > FDSEND_MAX_FDS)\n        return fdsend_fail(FDSEND_ETOOMANYFDS, EINVAL);",
     "", ["native.transfer.too_many_fds_254_refused"]),
    ("MSG_CTRUNC ignored", POSIX,
     "if ((msg.msg_flags & MSG_CTRUNC) || pr.excess > 0", "if (pr.excess > 0",
     ["native.recv_safety.rlimit_nofile_truncates"]),
    ("MSG_TRUNC ignored", POSIX,
     "    if (msg.msg_flags & MSG_TRUNC)\n        out_flags |= FDSEND_RECV_DATA_TRUNCATED;",
     "", ["native.transfer.message_boundaries"]),
    ("SCM_PIDFD not closed", PARSE,
     "h.cmsg_type == SCM_PIDFD", "h.cmsg_type == 0x7fff",
     ["native.recv_safety.passpidfd_not_leaked", "native.parse.pidfd_goes_to_excess"]),
    ("fds over TCP not refused", POSIX,
     "    if (nfds > 0) {\n        int32_t rc = check_unix_socket(sock);",
     "    if (0) {\n        int32_t rc = check_unix_socket(sock);",
     ["native.api.tcp_socket_with_fds"]),
    ("cmsg_len not clamped to the buffer", PARSE,
     "        if (len > controllen - off) {", "        if (0) {",
     ["native.parse.huge_cmsg_len"]),
    ("cmsg_len below CMSG_LEN(0) accepted", PARSE,
     "        if (len < data_off) {", "        if (0) {",
     ["native.parse.cmsg_len_too_small"]),
    ("made-up peer credentials", POSIX,
     "if (cred.pid == 0 && cred.uid == (uid_t)-1 && cred.gid == (gid_t)-1)", "if (0)",
     ["native.creds.no_peer"]),
    ("recv ignores FDSEND_DONTWAIT", POSIX,
     "        recvflags |= MSG_DONTWAIT;", "        recvflags |= 0;",
     ["native.nonblock.recv_eagain_nothing_consumed"]),
    ("send ignores FDSEND_DONTWAIT", POSIX,
     "        sendflags |= MSG_DONTWAIT;", "        sendflags |= 0;",
     ["native.nonblock.send_eagain_seqpacket_dontwait"]),
    ("negative nfds accepted", POSIX,
     "(buf == NULL && len > 0) || len > (size_t)SSIZE_MAX || nfds < 0 ||",
     "(buf == NULL && len > 0) || len > (size_t)SSIZE_MAX ||",
     ["native.api.bad_send_arguments"]),
    ("EPIPE mapped to FDSEND_EOTHER", ERRORS_POSIX,
     "    case EPIPE:\n        return FDSEND_EPIPE;", "    case EPIPE:\n        return FDSEND_EOTHER;",
     ["native.signals.epipe_without_sigpipe"]),
    ("last OS error not cleared on success", ERRORS,
     "    last_os_error = 0;", "    (void)0;",
     ["native.api.last_os_error"]),
]


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kw)


def failed_tests(build):
    r = run(["ctest", "--test-dir", build, "-L", "native", "-j2", "--timeout", "15"])
    return set(re.findall(r"^\s*\d+ - (\S+) \(", r.stdout, re.M)), r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="", help="only mutations whose name contains this")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="fdsend-mutation-")
    src, build = os.path.join(work, "src"), os.path.join(work, "build")
    try:
        os.makedirs(src)
        for item in ["CMakeLists.txt", "native", os.path.join("tests", "native")]:
            s, d = os.path.join(ROOT, item), os.path.join(src, item)
            if os.path.isdir(s):
                shutil.copytree(s, d)
            else:
                shutil.copy(s, d)
        r = run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Debug"])
        if r.returncode:
            print(r.stdout)
            return 1
        r = run(["cmake", "--build", build, "-j2"])
        if r.returncode:
            print(r.stdout)
            return 1
        base, out = failed_tests(build)
        if base:
            print(out)
            print("the unmutated suite fails: %s" % ", ".join(sorted(base)))
            return 1
        passed = failed = 0
        for name, rel, old, new, expect in MUTATIONS:
            if args.k not in name:
                continue
            path = os.path.join(src, rel)
            with open(path) as f:
                orig = f.read()
            if orig.count(old) != 1:
                print("FAIL %-50s the text to mutate is not found exactly once" % name)
                failed += 1
                continue
            with open(path, "w") as f:
                f.write(orig.replace(old, new))
            try:
                r = run(["cmake", "--build", build, "-j2"])
                if r.returncode:
                    print("FAIL %-50s does not build:\n%s" % (name, r.stdout[-2000:]))
                    failed += 1
                    continue
                got, _ = failed_tests(build)
                caught = [t for t in expect if t in got]
                ok = bool(caught)
                passed += ok
                failed += not ok
                print("%s %-50s caught by: %s" % ("ok  " if ok else "FAIL", name,
                                                  ", ".join(sorted(got)) or "nothing"))
            finally:
                with open(path, "w") as f:
                    f.write(orig)
        print("mutations: %d passed, %d failed" % (passed, failed))
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
