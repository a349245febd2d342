#!/usr/bin/env python3
"""A hostile sender for the FdSend .NET reliability tests, in its own process.

    hostile_peer.py PATH

Connects to the Unix stream socket at PATH and sends, in this order:
  1. 5 messages "cred": SCM_CREDENTIALS and SCM_RIGHTS (3 fds) in one sendmsg;
  2. 5 messages "two!": two SCM_RIGHTS headers (2 + 3 fds) in one sendmsg;
  3. 50 messages "wave": 253 fds each (a flood for a receiver that asks for few or none);
  4. 1 message "last" with 1 fd, then exits at once (its fds are still in flight).
Every fd is a temporary file whose content is "HOSTILE dev=<st_dev> ino=<st_ino>".
Exit 0 when everything was sent.
SPDX-License-Identifier: MIT
"""
import array
import os
import socket
import struct
import sys
import tempfile
import time

path = sys.argv[1]
fd, name = tempfile.mkstemp(prefix="fdsend-hostile-")
os.unlink(name)
st = os.fstat(fd)
os.write(fd, f"HOSTILE dev={st.st_dev} ino={st.st_ino}\n".encode())

end = time.monotonic() + 20
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        break
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        if time.monotonic() > end:
            sys.exit("nobody listens at " + path)
        time.sleep(0.02)


def rights(n):
    return (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd] * n).tobytes())


creds = (socket.SOL_SOCKET, socket.SCM_CREDENTIALS,
         struct.pack("3i", os.getpid(), os.getuid(), os.getgid()))
for _ in range(5):
    s.sendmsg([b"cred"], [creds, rights(3)])
for _ in range(5):
    s.sendmsg([b"two!"], [rights(2), rights(3)])
for _ in range(50):
    s.sendmsg([b"wave"], [rights(253)])
s.sendmsg([b"last"], [rights(1)])
os._exit(0)  # no orderly close of anything: the fds in flight outlive this process
