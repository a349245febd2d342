#!/usr/bin/env python3
"""The comparison workloads through CPython's socket.send_fds / socket.recv_fds.

Usage: bench_cpython.py WORKLOAD SECONDS [WARMUP_SECONDS]
Same workloads, payload and output line as compare/c/harness.h:
  inproc1, inproc64, stream1, pingpong1 -> "ops_per_sec=<float> ops=<int> seconds=<float>"
SPDX-License-Identifier: MIT
"""
import os
import socket
import sys
import time

PAYLOAD = b"fdsend-benchmark"  # 16 bytes
BATCH = 64


def die(what):
    sys.stderr.write(f"cpython: {what}\n")
    sys.exit(1)


def recv_op(sock):
    """One 16-byte + 1-fd message: the fd, or None at end of stream."""
    data, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    if not data and not fds:
        return None
    if len(data) != 16 or len(fds) != 1:
        die("receive")
    return fds[0]


def stream_child(sock):
    while True:
        fd = recv_op(sock)
        if fd is None:
            break
        os.close(fd)
    sock.sendall(b"A")
    os._exit(0)


def pingpong_child(sock):
    while True:
        fd = recv_op(sock)
        if fd is None:
            break
        socket.send_fds(sock, [PAYLOAD], [fd])
        os.close(fd)
    os._exit(0)


def make_loop(workload, a, b, fds):
    send_fds, recv_fds, close = socket.send_fds, socket.recv_fds, os.close
    nfds = len(fds)
    payload = [PAYLOAD]

    if workload.startswith("inproc"):
        def batch():
            for _ in range(BATCH):
                if send_fds(a, payload, fds) != 16:
                    die("send")
                data, got, _f, _a = recv_fds(b, 16, nfds)
                if len(data) != 16 or len(got) != nfds:
                    die("receive")
                for fd in got:
                    close(fd)
    elif workload == "stream1":
        def batch():
            for _ in range(BATCH):
                if send_fds(a, payload, fds) != 16:
                    die("send")
    else:
        def batch():
            for _ in range(BATCH):
                if send_fds(a, payload, fds) != 16:
                    die("send")
                fd = recv_op(a)
                if fd is None:
                    die("ping-pong peer closed")
                close(fd)
    return batch


def task_cpu(pid):
    """CPU seconds used so far by every thread of process pid (Linux /proc), or None."""
    try:
        base = f"/proc/{pid}/task"
        total = 0
        for tid in os.listdir(base):
            try:
                with open(f"{base}/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total / 1e9
    except OSError:
        return None


def run(batch, seconds):
    ops = 0
    now = time.monotonic
    end = now() + seconds
    while True:
        batch()
        ops += BATCH
        if now() >= end:
            return ops


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: bench_cpython.py inproc1|inproc64|stream1|pingpong1 SECONDS [WARMUP]\n")
        return 2
    workload, seconds = sys.argv[1], float(sys.argv[2])
    warmup = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    nfds = {"inproc1": 1, "inproc64": 64, "stream1": 1, "pingpong1": 1}.get(workload)
    if nfds is None:
        sys.stderr.write(f"cpython: unknown workload {workload}\n")
        return 2
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(nfds)]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = None
    if not workload.startswith("inproc"):
        child = os.fork()
        if child == 0:
            a.close()
            (stream_child if workload == "stream1" else pingpong_child)(b)
        b.close()
    batch = make_loop(workload, a, b, fds)
    if warmup > 0:
        run(batch, warmup)
    k0 = task_cpu(child) if child is not None else 0.0
    c0 = time.process_time()
    t0 = time.monotonic()
    ops = run(batch, seconds)
    if child is not None:
        a.shutdown(socket.SHUT_WR)
        if workload == "stream1" and a.recv(1) != b"A":
            die("read acknowledgement")
    t1 = time.monotonic()
    c1 = time.process_time()
    k1 = task_cpu(child) if child is not None else 0.0
    if child is not None:
        _pid, status = os.waitpid(child, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            die("child failed")
    cpu = f" cpu_seconds={(c1 - c0) + (k1 - k0):.4f}" if k0 is not None and k1 is not None else ""
    print(f"ops_per_sec={ops / (t1 - t0):.1f} ops={ops} seconds={t1 - t0:.4f}{cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
