#!/usr/bin/env python3
"""Draws eng/icon.png, the NuGet package icon (128x128): two sockets joined by a channel,
an open file (a page with a folded corner) travelling from one to the other. Standard
library only; run it again after changing the drawing and commit the PNG.
SPDX-License-Identifier: MIT"""
import math, os, struct, zlib

N, SS = 128, 4  # size, supersampling per axis

def rounded_rect(x, y, cx, cy, hw, hh, r):
    qx, qy = abs(x - cx) - hw + r, abs(y - cy) - hh + r
    return math.hypot(max(qx, 0), max(qy, 0)) + min(max(qx, qy), 0) - r

def ring(x, y, cx, cy, r, w):
    return abs(math.hypot(x - cx, y - cy) - r) - w / 2

def page(x, y):
    # a page 30x38 centred at (64, 58), its top-right corner cut along x - y = 30
    return max(rounded_rect(x, y, 64, 58, 15, 19, 3), (x - y) - 30)

def fold(x, y):
    # the folded-over corner: the triangle (69,39) (69,49) (79,49)
    return max(69 - x, y - 49, (x - y) - 30)

def colour(x, y):
    bg = (36, 52, 99)
    if rounded_rect(x, y, 64, 64, 63, 63, 22) > 0:
        return None
    c = bg
    # the channel between the sockets
    if abs(y - 84) < 5 and 30 < x < 98:
        c = (120, 140, 190)
    # the two sockets
    for cx in (24, 104):
        if ring(x, y, cx, 84, 13, 7) < 0:
            c = (235, 240, 250)
        elif math.hypot(x - cx, y - 84) < 9.5:
            c = (120, 140, 190)
    # the passed file, with an arrow under it
    if page(x, y) < 0:
        c = (255, 176, 59)
        if fold(x, y) < 0:
            c = (214, 128, 20)
        for ly in (56, 64, 72):
            if abs(y - ly) < 1.6 and 54 < x < 74:
                c = (150, 88, 10)
    return c

def main():
    rows = []
    for py in range(N):
        row = bytearray([0])
        for px in range(N):
            acc, hits = [0, 0, 0], 0
            for sy in range(SS):
                for sx in range(SS):
                    c = colour(px + (sx + 0.5) / SS, py + (sy + 0.5) / SS)
                    if c:
                        hits += 1
                        for i in range(3):
                            acc[i] += c[i]
            if hits:
                row += bytes(round(a / hits) for a in acc) + bytes([round(255 * hits / SS / SS)])
            else:
                row += bytes(4)
        rows.append(bytes(row))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", N, N, 8, 6, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icon.png")
    open(out, "wb").write(png)
    print(f"{out}: {len(png)} bytes")

main()
