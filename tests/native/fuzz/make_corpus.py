#!/usr/bin/env python3
"""Write the seed corpus of fuzz_parse_rights into corpus/ (next to this script).

Each seed is one byte of maxout followed by a control buffer laid out like Linux's on
64-bit machines (struct cmsghdr: size_t cmsg_len, int cmsg_level, int cmsg_type; data and
headers aligned to 8 bytes). The seeds cover well-formed kernel output and the malformed
shapes the parser must survive. Run it again after changing it; commit the seeds.
SPDX-License-Identifier: MIT
"""
import os
import struct

SOL_SOCKET, SCM_RIGHTS, SCM_CREDENTIALS, SCM_PIDFD = 1, 1, 2, 4
HDR = 16  # CMSG_LEN(0)


def align(n):
    return (n + 7) & ~7


def cmsg(level, ctype, data, length=None, pad=True):
    """One header + data; length overrides cmsg_len; pad adds CMSG_SPACE padding."""
    n = HDR + len(data) if length is None else length
    b = struct.pack("<QiI", n & 0xFFFFFFFFFFFFFFFF, level, ctype) + data
    return b + b"\0" * (align(len(b)) - len(b)) if pad else b


def fds(*nums):
    return struct.pack("<%di" % len(nums), *nums)


def rights(*nums, **kw):
    return cmsg(SOL_SOCKET, SCM_RIGHTS, fds(*nums), **kw)


def creds(pid=1234, uid=1000, gid=1000):
    return cmsg(SOL_SOCKET, SCM_CREDENTIALS, struct.pack("<iII", pid, uid, gid))


seeds = {
    "empty": (4, b""),
    "one_fd": (4, rights(3)),
    "one_fd_unpadded": (4, rights(3, pad=False)),
    "two_fds": (4, rights(3, 4)),
    "three_fds_ask_one": (1, rights(5, 6, 7)),
    "five_fds_ask_none": (0, rights(5, 6, 7, 8, 9)),
    "max_fds_253": (31, rights(*range(3, 256))),
    "two_headers": (8, rights(3, 4) + rights(5, 6, 7)),
    "creds_then_rights": (4, creds() + rights(3, 4)),
    "rights_then_creds": (4, rights(3, 4) + creds()),
    "pidfd_then_rights": (4, cmsg(SOL_SOCKET, SCM_PIDFD, fds(9)) + rights(3)),
    "creds_pidfd_rights": (2, creds() + cmsg(SOL_SOCKET, SCM_PIDFD, fds(9)) + rights(3, 4, 5)),
    "unknown_level": (4, cmsg(0, SCM_RIGHTS, fds(3, 4)) + rights(5)),
    "unknown_type": (4, cmsg(SOL_SOCKET, 0x7777, b"abc") + rights(5)),
    "timestamp_then_rights": (4, cmsg(SOL_SOCKET, 29, struct.pack("<qq", 1, 2)) + rights(6)),
    "empty_rights_header": (4, rights() + rights(3)),
    "len_zero": (4, rights(3, length=0) + rights(4)),
    "len_one": (4, rights(3, length=1)),
    "len_below_header": (4, rights(3, length=HDR - 1)),
    "len_exactly_header": (4, rights(3, length=HDR)),
    "len_huge": (4, rights(3, 4, length=2**64 - 1)),
    "len_huge_minus_7": (4, rights(3, 4, length=2**64 - 8)),
    "len_int_max": (4, rights(3, 4, length=2**31 - 1)),
    "len_past_end": (4, rights(3, 4, length=HDR + 64)),
    "second_len_huge": (4, rights(3) + rights(4, length=2**64 - 1)),
    "second_len_zero": (4, rights(3) + rights(4, length=0)),
    "partial_int": (4, rights(3, 4, length=HDR + 6)),
    "buffer_ends_mid_int": (4, rights(3, 4, 5, pad=False)[:-2]),
    "buffer_ends_mid_header": (4, rights(3) + rights(4)[:10]),
    "header_only": (4, rights(3)[:HDR]),
    "short_header": (4, rights(3)[:HDR - 1]),
    "odd_len_unknown_then_rights": (4, cmsg(SOL_SOCKET, 0x1234, b"x" * 5) + rights(7, 8)),
    "many_small_headers": (31, b"".join(rights(i) for i in range(3, 40))),
    "negative_fds": (4, rights(-1, -2147483648, 2147483647)),
    "garbage": (7, bytes(range(256))),
    "all_ff": (3, b"\xff" * 64),
    "all_zero": (3, b"\0" * 64),
    "misaligned_next": (4, rights(3, pad=False) + b"\0\0\0" + rights(4)),
}

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus")
os.makedirs(out, exist_ok=True)
for name in os.listdir(out):
    os.unlink(os.path.join(out, name))
for name, (maxout, buf) in sorted(seeds.items()):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([maxout]) + buf)
print("%d seeds in %s" % (len(seeds), out))
