#!/usr/bin/env python3
"""CPython side of the FdSend interop suite: socket.send_fds / socket.recv_fds.

    peer.py send|recv PATH NMSGS

Mode "rights" of the protocol in README.md: message i carries payload bytes
(i*31 + j*17 + 5) & 0xff, j < 1 + (i*7919) % 5000, and 1 + i % 4 descriptors in ONE
sendmsg; each descriptor is a temporary file whose content names it (message, index,
st_dev, st_ino). The receiver listens at PATH, the sender connects. Prints one PASS line
and exits 0, or FAIL: ... and exits 1.
SPDX-License-Identifier: MIT
"""
import os
import socket
import sys
import tempfile
import time


def fail(msg):
    print(f"FAIL: peer.py {ROLE}: {msg}", flush=True)
    sys.exit(1)


def fd_count():
    # os.listdir opens (and closes) one descriptor of its own, like the other peers.
    return len(os.listdir("/proc/self/fd")) - 1


def msg_nfds(i):
    return 1 + i % 4


def msg_len(i):
    return 1 + (i * 7919) % 5000


def msg_payload(i):
    return bytes(((i * 31 + j * 17 + 5) & 0xFF) for j in range(msg_len(i)))


def make_tagged_file(i, k):
    fd, path = tempfile.mkstemp(prefix="fdsend-interop-")
    os.unlink(path)
    st = os.fstat(fd)
    os.write(fd, f"FDSEND-INTEROP msg={i} fd={k} dev={st.st_dev} ino={st.st_ino}\n".encode())
    return fd


def verify_received(fd, i, k):
    # (No close-on-exec check here: CPython's recv_fds does not pass MSG_CMSG_CLOEXEC, so
    # its descriptors are inheritable; that is CPython's behaviour, not FdSend's.)
    st = os.fstat(fd)
    tag = os.pread(fd, 200, 0).decode()
    try:
        fields = dict(f.split("=") for f in tag.split()[1:])
        mi, mk, dev, ino = (int(fields[x]) for x in ("msg", "fd", "dev", "ino"))
    except (ValueError, KeyError):
        fail(f"message {i} fd {k}: bad tag {tag!r}")
    if (mi, mk) != (i, k):
        fail(f"message {i} fd {k}: got the file of message {mi} fd {mk} (wrong descriptor)")
    if (st.st_dev, st.st_ino) != (dev, ino):
        fail(f"message {i} fd {k}: inode {st.st_dev}:{st.st_ino}, sender announced {dev}:{ino}")


def connect(path):
    end = time.monotonic() + 20
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > end:
                fail(f"nobody listens at {path}")
            time.sleep(0.02)


def run_send(path, nmsgs):
    s = connect(path)
    nfds = nbytes = 0
    for i in range(nmsgs):
        payload = msg_payload(i)
        fds = [make_tagged_file(i, k) for k in range(msg_nfds(i))]
        sent = socket.send_fds(s, [payload], fds)
        if sent < len(payload):
            s.sendall(payload[sent:])  # the rest, without descriptors
        for fd in fds:
            os.close(fd)
        nfds += len(fds)
        nbytes += len(payload)
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":
        fail("expected end of stream from the receiver")
    s.close()
    return nfds, nbytes


def run_recv(path, nmsgs):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(1)
    s, _ = lst.accept()
    lst.close()
    os.unlink(path)
    nfds = nbytes = 0
    for i in range(nmsgs):
        want = msg_payload(i)
        n = msg_nfds(i)
        data, fds, flags, _ = socket.recv_fds(s, len(want), 8)
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            fail(f"message {i}: truncated (flags {flags:#x})")
        if not data:
            fail(f"message {i}: end of stream")
        while len(data) < len(want):
            more = s.recv(len(want) - len(data))
            if not more:
                fail(f"message {i}: end of stream inside the payload")
            data += more
        if data != want:
            bad = next(j for j in range(len(want)) if data[j] != want[j])
            fail(f"message {i}: payload differs at byte {bad}")
        if len(fds) != n:
            fail(f"message {i}: {len(fds)} descriptors arrived, {n} were sent")
        for k, fd in enumerate(fds):
            verify_received(fd, i, k)
            os.close(fd)
        nfds += n
        nbytes += len(want)
    data, fds, flags, _ = socket.recv_fds(s, 1, 8)
    for fd in fds:
        os.close(fd)
    if data or fds:
        fail(f"expected end of stream after {nmsgs} messages, got {len(data)} bytes, {len(fds)} fds")
    s.close()
    return nfds, nbytes


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("send", "recv"):
        print("usage: peer.py send|recv PATH NMSGS", file=sys.stderr)
        sys.exit(2)
    ROLE = sys.argv[1]
    before = fd_count()
    fn = run_send if ROLE == "send" else run_recv
    nfds, nbytes = fn(sys.argv[2], int(sys.argv[3]))
    after = fd_count()
    if before != after:
        fail(f"descriptor count {before} before, {after} after: leak "
             f"({sorted(os.listdir('/proc/self/fd'))})")
    print(f"PASS peer.py {ROLE} rights msgs={sys.argv[3]} fds={nfds} bytes={nbytes} "
          f"fdcount={before}->{after}", flush=True)
