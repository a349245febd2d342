#!/usr/bin/env python3
"""An independent implementation of the FdSend message channel (docs/wire-format.md),
written from the document alone, used by `test_msg_process python_peer` (CTest:
msg.python_peer) to check that libfdsend and another implementation agree byte for byte.

Usage: msg_peer.py FD   (FD: a connected AF_UNIX stream socket inherited from the parent)

Echo loop: every message received is answered with its payload reversed and its
descriptors in reverse order. The first answer is written one byte at a time (the
descriptors on the first byte). A message whose payload is b"bad" is answered with a
frame whose flags byte is not zero. At the end of the stream (at a frame boundary) the
peer exits 0; any protocol error exits 1.

SPDX-License-Identifier: MIT
"""
import array
import os
import socket
import struct
import sys

HEADER = struct.Struct("<BBHI")  # version, flags, fd count, payload length
VERSION = 1
MAX_FDS = 253
ANC_SPACE = socket.CMSG_SPACE(MAX_FDS * 4) + socket.CMSG_SPACE(256)


class ProtocolError(Exception):
    pass


def fds_of(ancdata):
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % a.itemsize])
            fds.extend(a)
    return fds


def close_all(fds):
    for fd in fds:
        os.close(fd)


def recv_exact_no_fds(sock, n):
    """The rest of a started frame: exactly n bytes; descriptors here break the format."""
    out = b""
    while len(out) < n:
        data, anc, flags, _ = sock.recvmsg(n - len(out), ANC_SPACE)
        stray = fds_of(anc)
        if stray or flags & socket.MSG_CTRUNC:
            close_all(stray)
            raise ProtocolError("descriptors after the header's first byte")
        if not data:
            raise ProtocolError("end of stream inside a frame")
        out += data
    return out


def recv_frame(sock, cap=1 << 24, maxfds=MAX_FDS):
    """Returns (payload, fds), or None at the end of the stream (a frame boundary)."""
    data, anc, flags, _ = sock.recvmsg(HEADER.size, ANC_SPACE)  # never more than a header
    fds = fds_of(anc)
    if not data:
        close_all(fds)
        return None
    try:
        header = data + recv_exact_no_fds(sock, HEADER.size - len(data))
        version, hflags, nfds, length = HEADER.unpack(header)
        if version != VERSION or hflags != 0 or nfds > MAX_FDS:
            raise ProtocolError("bad header %r" % header)
        truncated = bool(flags & socket.MSG_CTRUNC)
        if not truncated and len(fds) != nfds:
            raise ProtocolError("header says %d fds, %d arrived" % (nfds, len(fds)))
        payload = recv_exact_no_fds(sock, length)  # read whole even when over cap
        if truncated:
            raise OSError("kernel dropped descriptors (MSG_CTRUNC)")
        if length > cap or nfds > maxfds:
            raise OSError("message over the receiver's limits")
        return payload, fds
    except BaseException:
        close_all(fds)
        raise


def send_frame(sock, payload, fds, fragment=False, flags=0):
    frame = HEADER.pack(VERSION, flags, len(fds), len(payload)) + payload
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    first = 1 if fragment else len(frame)
    sent = sock.sendmsg([frame[:first]], anc)  # the descriptors go with the first byte
    while sent < len(frame):
        step = 1 if fragment else len(frame) - sent
        sent += sock.send(frame[sent : sent + step])


def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    answered = 0
    try:
        while True:
            got = recv_frame(sock)
            if got is None:
                return 0
            payload, fds = got
            try:
                if payload == b"bad":
                    send_frame(sock, b"", [], flags=0x01)
                else:
                    send_frame(sock, payload[::-1], fds[::-1], fragment=answered == 0)
            finally:
                close_all(fds)
            answered += 1
    except ProtocolError as e:
        print("msg_peer.py: protocol error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
