#!/usr/bin/env python3
"""Real processes of native/examples/handoff.c handing their listeners over, under load.

Usage: handoff_test.py HANDOFF_BINARY CASE

  chain      a stale control socket file (nobody listening) at the control path: the first
             process binds fresh; then three successors in a row, each taking over from
             the last, while a client opens a new connection per request on two loopback
             listeners: 0 refused, 0 failed, at least two pids answered, a request in
             flight on the replaced process during each handoff is answered by it, every
             replaced process exits 0, every successor took (did not bind) its
             listeners, and the last one still serves
  between    an incumbent released by a (fake) successor that has not yet put its own
             socket at the control path: a new process is refused shutting-down and
             retries; once the fake's socket replaces the path, the old process exits 0
             and the new one gets the listeners from the fake
  failures   an incumbent under the same load meets a successor that sends unframed
             garbage, one with a malformed hello, one asking for version 2 only, one that
             says hello and exits before ready, and two at once (the second, a real
             handoff process, is refused reason=busy): after each, 0 failed, still
             serving, and the incumbent's descriptor count is what it was before
  deadline   the same with --ready-timeout 500: a successor that says hello and hangs
             past the deadline, and a connection that never says hello, are cut off
  batches    302 listeners (2 TCP, 300 Unix) handed over: more than one "fds" message
  validation a fake incumbent hands a C successor a UDP socket and a listener on another
             port under the right names, plus descriptors it did not ask for: the two
             are bound fresh, the others closed; then an "fds" message whose lines and
             descriptors differ, and an inventory whose last line has no newline: abort
             reason=protocol, exit 1; a SIGTERM in the middle of the inventory: abort
             reason=shutting-down, not ready; a refusal sent before the hello is read
             (as FdSend.Handoff does today): reported, exit 1
  directory  a control path in a directory others can write: refused, exit status 2

Everything runs on 127.0.0.1 and in a private temporary directory, with bounded loops and
timeouts. Prints one line per check; exits 0 on success, 1 on failure.
SPDX-License-Identifier: MIT
"""
import array
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HEADER = struct.Struct("<BBHI")  # the channel's frame header (docs/wire-format.md)


class Fail(Exception):
    pass



# Under an emulator (a cross build's qemu-user: FDSEND_TEST_EMULATOR) every process runs
# several times slower: the waits below are bounds on a hang, not speed checks, so they
# stretch with it.
SLOW = 4 if os.environ.get("FDSEND_TEST_EMULATOR") else 1

def check(cond, what):
    if not cond:
        raise Fail(what)
    print("ok: " + what, flush=True)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise Fail("timed out after %.1fs waiting for %s" % (timeout, what))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def read_to_end(s):
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def request(port=None, path=None, timeout=10.0 * SLOW):
    """One HTTP request on a new connection; the pid that served it."""
    if path is not None:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(path)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        data = read_to_end(s)
    m = re.match(rb"HTTP/1\.1 200 OK\r\n.*\r\n\r\nserved-by=(\d+)\n$", data, re.S)
    if not m:
        raise Fail("bad response %r" % data)
    return int(m.group(1))


class Load(threading.Thread):
    """A new connection per request, alternating between the ports, until stop() (at
    least min_requests, at most max_requests). pause() waits until no request is open."""

    def __init__(self, ports, min_requests=300, max_requests=3000, interval=0.01):
        super().__init__(daemon=True)
        self.ports, self.min, self.max, self.interval = ports, min_requests, max_requests, interval
        self.done = self.refused = self.failed = 0
        self.pids, self.errors = {}, []
        self.stopping, self.running = threading.Event(), threading.Event()
        self.idle = threading.Event()
        self.running.set()

    def run(self):
        while self.done < self.max and not (self.stopping.is_set() and self.done >= self.min):
            if not self.running.is_set():
                self.idle.set()
                self.running.wait()
                continue
            self.idle.clear()
            port = self.ports[self.done % len(self.ports)]
            try:
                pid = request(port)
                self.pids[pid] = self.pids.get(pid, 0) + 1
            except ConnectionRefusedError:
                self.refused += 1
            except (OSError, Fail) as e:
                self.failed += 1
                self.errors.append("port %d: %r" % (port, e))
            self.done += 1
            time.sleep(self.interval)
        self.idle.set()

    def pause(self):
        self.running.clear()
        if not self.idle.wait(20):
            raise Fail("the client did not pause")

    def resume(self):
        self.idle.clear()
        self.running.set()

    def finish(self):
        self.stopping.set()
        self.running.set()
        self.join(60)
        if self.is_alive():
            raise Fail("the client did not finish")
        print("client: %d requests, %d refused, %d failed, served by %s" % (
            self.done, self.refused, self.failed, self.pids), flush=True)
        for e in self.errors[:5]:
            print("  " + e)
        check(self.refused == 0, "0 refused connections")
        check(self.failed == 0, "0 failed requests")


class Server:
    """One `handoff serve` process with its own log file."""

    def __init__(self, env, name, args, control=None):
        self.log = os.path.join(env.dir, name + ".log")
        self.name = name
        self.errfile = open(os.path.join(env.dir, name + ".stderr"), "w")
        self.proc = subprocess.Popen(env.emulator + [env.binary, "serve", "--control", control or env.control,
                                      "--log", self.log] + args,
                                     stdin=subprocess.DEVNULL, stdout=self.errfile,
                                     stderr=self.errfile)
        self.pid = self.proc.pid
        env.servers.append(self)

    def text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=15 * SLOW):
        wait_for(lambda: re.search(pattern, self.text()) or self.proc.poll() is not None,
                 timeout, "%s to log %r" % (self.name, pattern))
        if not re.search(pattern, self.text()):
            raise Fail("%s exited (%s) before logging %r" % (self.name, self.proc.returncode, pattern))

    def wait_exit(self, timeout=15 * SLOW):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Fail("%s (pid %d) did not exit within %ds" % (self.name, self.pid, timeout))

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit()
        self.errfile.close()
        return rc


class Env:
    def __init__(self, binary):
        self.binary = binary
        # A cross build runs the program under its emulator (qemu-user), as CTest does.
        self.emulator = [a for a in os.environ.get("FDSEND_TEST_EMULATOR", "").split(";") if a]
        self.dir = tempfile.mkdtemp(prefix="fdsend-handoff-")  # 0700, ours
        self.control = os.path.join(self.dir, "control.sock")
        self.servers = []

    def control_unlink(self):
        os.unlink(self.control)

    def cleanup(self, failed):
        for s in self.servers:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        if failed:
            for s in self.servers:
                print("---- %s (pid %d, exit %s) log:\n%s" % (s.name, s.pid, s.proc.returncode, s.text()))
                with open(os.path.join(self.dir, s.name + ".stderr")) as f:
                    err = f.read()
                if err:
                    print("---- %s stderr:\n%s" % (s.name, err))
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- A successor written from the protocol document, to misbehave on purpose ----------

def send_frame(sock, payload, fds=()):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    frame = HEADER.pack(1, 0, len(fds), len(payload)) + payload
    if sock.sendmsg([frame], anc) != len(frame):
        raise Fail("short send of a %d-byte frame" % len(frame))


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise Fail("end of stream inside a frame")
        out += chunk
    return out


def recv_frame(sock):
    """(payload, fds) of the next frame, or None at the end of the stream."""
    data, anc, _, _ = sock.recvmsg(8, socket.CMSG_SPACE(253 * 4))
    fds = []
    for level, kind, blob in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(blob[: len(blob) - len(blob) % a.itemsize])
            fds.extend(a)
    if not data:
        return None
    data += recv_exact(sock, 8 - len(data))
    version, flags, count, length = HEADER.unpack(data)
    if version != 1 or flags != 0 or count != len(fds):
        raise Fail("bad frame header %r with %d fds" % (data, len(fds)))
    return recv_exact(sock, length), fds


def fake_connect(env):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10 * SLOW)
    s.connect(env.control)
    return s


def fake_take_inventory(env, hello=b"hello\nversions=1\npid=1\n"):
    """Connect, say hello, read the whole inventory (closing its descriptors)."""
    s = fake_connect(env)
    send_frame(s, hello)
    types, nfds = [], 0
    while not types or types[-1] != b"end":
        frame = recv_frame(s)
        if frame is None:
            raise Fail("the incumbent closed during the inventory")
        payload, fds = frame
        for fd in fds:
            os.close(fd)
        nfds += len(fds)
        types.append(payload.split(b"\n", 1)[0])
    check(types[0] == b"inventory" and nfds > 0, "fake successor got an inventory of %d fds" % nfds)
    return s


def expect_closed(sock, timeout):
    sock.settimeout(timeout)
    try:
        frame = recv_frame(sock)
    except ConnectionResetError:
        frame = None
    if frame is not None:
        raise Fail("expected the incumbent to close, got %r" % (frame[0],))


# ---- Cases -------------------------------------------------------------------------------

def listen_args(ports):
    return ["--listen", "a=127.0.0.1:%d" % ports[0], "--listen", "b=127.0.0.1:%d" % ports[1]]


def slow_request(load, server, port):
    """A connection the server has accepted, whose request head is not finished yet."""
    load.pause()
    try:
        base = server.fd_count()
        s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
        s.sendall(b"GET / HTTP/1.0\r\n")
        wait_for(lambda: server.fd_count() == base + 1, 5, "the incumbent to accept")
    finally:
        load.resume()
    return s


def finish_request(s):
    with s:
        s.sendall(b"\r\n")
        data = read_to_end(s)
    m = re.search(rb"\r\n\r\nserved-by=(\d+)\n$", data)
    return int(m.group(1)) if m else data


def case_chain(env):
    ports = free_ports(2)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(env.control)
    stale.close()  # the file stays; nobody listens there
    first = Server(env, "p0", listen_args(ports))
    first.wait_log(r"control socket ready")
    check("(Connection refused)" in first.text() and "bound fresh" in first.text(),
          "a stale control socket file: the first process binds fresh")
    load = Load(ports)
    load.start()
    current = first
    for k in range(1, 4):
        time.sleep(0.5)
        slow = slow_request(load, current, ports[0])
        t0 = time.monotonic()
        nxt = Server(env, "p%d" % k, listen_args(ports))
        nxt.wait_log(r"control socket ready")
        check(current.proc.poll() is None, "p%d still runs with a request in flight" % (k - 1))
        check(finish_request(slow) == current.pid,
              "the request in flight during the handoff is answered by p%d" % (k - 1))
        rc = current.wait_exit()
        text = nxt.text()
        check(rc == 0, "p%d exited 0 after handing over to p%d (%.2fs)" % (
            k - 1, k, time.monotonic() - t0))
        check("took a=" in text and "took b=" in text and "bound fresh" not in text,
              "p%d took both listeners from p%d" % (k, k - 1))
        check("released the listeners to pid=%d" % nxt.pid in current.text(),
              "p%d logged released" % (k - 1))
        current = nxt
    time.sleep(0.3)
    load.finish()
    check(len(load.pids) >= 2, "responses came from %d different pids" % len(load.pids))
    check(request(ports[0]) == current.pid and request(ports[1]) == current.pid,
          "the last process still serves on both listeners")
    check(current.stop() == 0, "the last process stops on SIGTERM with status 0")


class UnderLoad:
    """An incumbent serving a client's load, and its descriptor count while idle."""

    def __init__(self, env, extra_args=()):
        self.ports = free_ports(2)
        self.inc = Server(env, "incumbent", listen_args(self.ports) + list(extra_args))
        self.inc.wait_log(r"control socket ready")
        self.load = Load(self.ports, min_requests=100)
        self.load.start()
        self.load.pause()
        self.base = self.inc.fd_count()
        self.load.resume()

    def settled(self, what):
        """After a failed handoff: the same descriptor count as before, and still serving."""
        inc, base = self.inc, self.base
        self.load.pause()
        try:
            wait_for(lambda: inc.fd_count() == base, 3, "the incumbent's fd count to return to %d" % base)
            check(True, "%s: incumbent fd count back to %d" % (what, base))
        finally:
            self.load.resume()
        check(inc.proc.poll() is None and request(self.ports[0]) == inc.pid, "%s: still serving" % what)

    def finish(self):
        self.load.finish()
        check(list(self.load.pids) == [self.inc.pid], "every request answered by the incumbent")
        check(self.inc.stop() == 0, "the incumbent stops on SIGTERM with status 0")


def case_failures(env):
    t = UnderLoad(env)
    inc, ports, settled = t.inc, t.ports, t.settled

    s = fake_connect(env)  # not the channel at all
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    expect_closed(s, 5)
    s.close()
    inc.wait_log(r"control connection of pid=\d+ closed: .*fram")
    settled("unframed garbage")

    s = fake_connect(env)  # a frame, but not a hello
    send_frame(s, b"hullo\nversions=1\n")
    payload, _ = recv_frame(s)
    check(payload.startswith(b"refused\nreason=protocol\n"), "malformed hello: refused reason=protocol")
    s.close()
    settled("malformed hello")

    s = fake_connect(env)
    send_frame(s, b"hello\nversions=2,3\npid=1\n")
    payload, _ = recv_frame(s)
    check(payload.startswith(b"refused\nreason=unsupported-version\n"),
          "versions=2,3: refused reason=unsupported-version")
    s.close()
    settled("unsupported version")

    s = fake_take_inventory(env)  # then exits before ready
    s.close()
    inc.wait_log(r"handoff to pid=\d+ failed: the successor closed the connection; still serving")
    settled("successor gone before ready")

    s = fake_take_inventory(env)  # holds the handoff while a real successor tries
    second = Server(env, "second", listen_args(ports))
    rc = second.wait_exit()
    check(rc == 1 and "refused reason=busy" in second.text(),
          "a second successor during a handoff is refused reason=busy and exits 1")
    send_frame(s, b"abort\nreason=test\n")
    expect_closed(s, 5)
    s.close()
    inc.wait_log(r"aborts: reason=test")
    settled("two successors at once")
    t.finish()


def case_deadline(env):
    t = UnderLoad(env, ["--ready-timeout", "500"])
    s = fake_take_inventory(env)  # then hangs past --ready-timeout 500
    t0 = time.monotonic()
    expect_closed(s, 5)
    waited = time.monotonic() - t0
    s.close()
    check(0.4 <= waited < 4, "hung successor cut off after %.2fs (ready timeout 0.5s)" % waited)
    t.inc.wait_log(r"failed: no ready before the deadline; still serving")
    t.settled("successor past the ready deadline")

    s = fake_connect(env)  # never says hello: bounded the same way
    t0 = time.monotonic()
    expect_closed(s, 5)
    waited = time.monotonic() - t0
    s.close()
    check(0.4 <= waited < 4, "a connection without hello cut off after %.2fs" % waited)
    t.settled("no hello")
    t.finish()


def case_batches(env):
    ports = free_ports(2)
    args = listen_args(ports)
    for i in range(300):
        args += ["--unix", "u%d=%s" % (i, os.path.join(env.dir, "u%d.sock" % i))]
    old = Server(env, "old", args)
    old.wait_log(r"control socket ready")
    new = Server(env, "new", args)
    new.wait_log(r"control socket ready")
    check(old.wait_exit() == 0, "the old process exits 0")
    text = new.text()
    check("received 302 descriptors" in text and text.count("took ") == 302 and
          "bound fresh" not in text, "302 listeners taken (more than the 253 of one fds message)")
    check(request(ports[1]) == new.pid and
          request(path=os.path.join(env.dir, "u299.sock")) == new.pid,
          "the successor serves on TCP and on the last Unix listener")
    check(new.stop() == 0, "the successor stops on SIGTERM with status 0")


def case_directory(env):
    os.chmod(env.dir, 0o777)
    try:
        srv = Server(env, "p", listen_args(free_ports(2)))
        rc = srv.wait_exit()
    finally:
        os.chmod(env.dir, 0o700)
    check(rc == 2 and "refusing control directory" in srv.text(),
          "a group/other-writable control directory is refused (exit 2)")


def control_listener(path):
    """A listening Unix socket at `path`, as an incumbent's control socket (accepts time out)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10 * SLOW)
    return srv


def fake_incumbent(env, frames, take):
    """Listen at the control path as an incumbent would, let `take` connect, send it
    `frames` [(payload, fds)] after its hello, and return (hello, connection)."""
    srv = control_listener(env.control)
    succ = take()
    with srv:
        conn, _ = srv.accept()
    conn.settimeout(10 * SLOW)
    hello, fds = recv_frame(conn)
    check(hello == b"hello\nversions=1\npid=%d\n" % succ.pid and not fds,
          "the successor's hello is exactly hello/versions=1/pid=<its pid>")
    for payload, fds in frames:
        send_frame(conn, payload, fds)
    return succ, conn


def case_validation(env):
    ports = free_ports(3)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the right port, but UDP
    udp.bind(("127.0.0.1", ports[0]))
    wrong = socket.socket()  # a listener, on another port than b's
    wrong.bind(("127.0.0.1", ports[2]))
    wrong.listen(8)
    r, w = os.pipe()
    inventory = [(b"inventory\nversion=1\npid=1\nfds=4\nstate-length=5\nnew-key=ignored\n", []),
                 (b"fds\nfd=listener a\nfd=listener b\n", [udp.fileno(), wrong.fileno()]),
                 (b"fds\nfd=fd x\nfd=socket unknown-name\n", [r, w]),
                 (b"state\n\x00\x01\n\xff!", []), (b"end\n", [])]
    succ, conn = fake_incumbent(env, inventory, lambda: Server(env, "succ", listen_args(ports)))
    for f in (udp, wrong):
        f.close()
    os.close(r)
    os.close(w)
    payload, _ = recv_frame(conn)
    check(payload == b"ready\n", "the successor sends ready")
    send_frame(conn, b"released\n")
    succ.wait_log(r"control socket ready")
    conn.close()
    text = succ.text()
    check("received a is unusable (not a stream socket" in text and
          "received b is unusable (bound to another address)" in text and
          text.count("bound fresh") == 2, "a UDP socket and a listener elsewhere: both bound fresh")
    check("closing unused fd x" in text and "closing unused socket unknown-name" in text,
          "descriptors it does not use are closed")
    check(request(ports[0]) == succ.pid and request(ports[1]) == succ.pid,
          "the successor serves on both addresses")
    fresh = Server(env, "fresh", listen_args(free_ports(2)), os.path.join(env.dir, "other.sock"))
    fresh.wait_log(r"control socket ready")
    check(succ.fd_count() == fresh.fd_count(), "it holds as many descriptors (%d) as a process "
          "that bound everything itself" % fresh.fd_count())
    check(succ.stop() == 0, "the successor stops on SIGTERM with status 0")
    fresh.proc.kill()

    env.control_unlink()
    bad = [(b"inventory\nversion=1\npid=1\nfds=2\nstate-length=0\n", []),
           (b"fds\nfd=listener a\n", [0, 1])]  # two descriptors, one line
    succ, conn = fake_incumbent(env, bad, lambda: Server(env, "succ2", listen_args(ports)))
    payload, _ = recv_frame(conn)
    check(payload.startswith(b"abort\nreason=protocol\n"), "an fds message whose lines and "
          "descriptors differ: abort reason=protocol")
    check(succ.wait_exit() == 1, "... and the successor exits 1")
    conn.close()

    env.control_unlink()  # SIGTERM in the middle of the inventory
    head = [(b"inventory\nversion=1\npid=1\nfds=2\nstate-length=0\n", [])]
    succ, conn = fake_incumbent(env, head, lambda: Server(env, "succ3", listen_args(ports)))
    mine = [socket.socket() for _ in ports[:2]]
    for m, port in zip(mine, ports[:2]):
        m.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        m.bind(("127.0.0.1", port))
        m.listen(8)
    succ.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    send_frame(conn, b"fds\nfd=listener a\nfd=listener b\n", [m.fileno() for m in mine])
    send_frame(conn, b"end\n")
    payload, _ = recv_frame(conn)
    check(payload.startswith(b"abort\nreason=shutting-down\n"),
          "SIGTERM before ready: abort reason=shutting-down instead of ready")
    check(succ.wait_exit() == 1, "... and the successor exits 1")
    conn.close()
    check(socket.create_connection(("127.0.0.1", ports[0]), timeout=5 * SLOW).close() is None and
          mine[0].accept()[0].close() is None, "the incumbent's listener still takes connections")
    for m in mine:
        m.close()

    env.control_unlink()  # a last line without its newline is malformed
    bad = [(b"inventory\nversion=1\npid=1\nfds=0\nstate-length=0", [])]
    succ, conn = fake_incumbent(env, bad, lambda: Server(env, "succ4", listen_args(ports)))
    payload, _ = recv_frame(conn)
    check(payload.startswith(b"abort\nreason=protocol\n") and succ.wait_exit() == 1,
          "an inventory whose last line has no newline: abort reason=protocol, exit 1")
    conn.close()

    env.control_unlink()  # refused at once, without reading the hello
    srv = control_listener(env.control)
    succ = Server(env, "succ5", listen_args(ports))
    with srv:
        conn, _ = srv.accept()
    with conn:
        send_frame(conn, b"refused\nreason=busy\nmessage=another handoff is in progress\n")
    check(succ.wait_exit() == 1 and "refused reason=busy" in succ.text(),
          "refused before the hello was read: the successor still learns why, exits 1")

    env.control_unlink()  # gone before answering (an incumbent exiting as its path is replaced)
    srv = control_listener(env.control)
    succ = Server(env, "succ6", listen_args(ports))
    with srv:
        srv.accept()[0].close()
        conn, _ = srv.accept()
    with conn:
        conn.settimeout(10 * SLOW)
        check(recv_frame(conn)[0].startswith(b"hello\n"), "the successor connects again")
        send_frame(conn, b"refused\nreason=busy\nmessage=another handoff is in progress\n")
    check(succ.wait_exit() == 1 and "closed the connection before answering" in succ.text()
          and "refused reason=busy" in succ.text(),
          "an incumbent that closes before answering is asked again, not taken as a failure")


def case_between(env):
    ports = free_ports(2)
    old = Server(env, "old", listen_args(ports))
    old.wait_log(r"control socket ready")
    # A fake successor takes the listeners and gets "released", but has not yet put its
    # own control socket at the path.
    s = fake_connect(env)
    send_frame(s, b"hello\nversions=1\npid=1\n")
    frames = []
    while not frames or frames[-1][0] != b"end\n":
        frames.append(recv_frame(s))
    kept = [fd for _, fds in frames for fd in fds]
    send_frame(s, b"ready\n")
    check(recv_frame(s)[0] == b"released\n", "the fake successor is released")
    s.close()
    old.wait_log(r"handed over")
    new = Server(env, "new", listen_args(ports))
    new.wait_log(r"refused reason=shutting-down")
    time.sleep(0.3)
    check(old.proc.poll() is None and new.proc.poll() is None,
          "the released incumbent answers shutting-down while the path is its own; "
          "the new process keeps asking")
    # Now the fake becomes the incumbent: its socket replaces the path, and it hands the
    # listeners it took on to the waiting process.
    tmp = env.control + ".fake"
    srv = control_listener(tmp)
    os.rename(tmp, env.control)
    with srv:
        conn, _ = srv.accept()
    with conn:
        conn.settimeout(10 * SLOW)
        check(recv_frame(conn)[0].startswith(b"hello\n"), "the new process reaches the fake")
        for payload, _ in frames:
            send_frame(conn, payload, kept if payload.startswith(b"fds\n") else [])
        for fd in kept:
            os.close(fd)
        check(recv_frame(conn)[0] == b"ready\n", "the new process took the listeners: ready")
        send_frame(conn, b"released\n")
        new.wait_log(r"control socket ready")
    check(old.wait_exit(5) == 0, "the old incumbent exits 0 once the path is no longer its own")
    check(request(ports[0]) == new.pid and request(ports[1]) == new.pid and
          "bound fresh" not in new.text(), "the new process serves on the listeners it took")
    check(new.stop() == 0, "the new process stops on SIGTERM with status 0")


CASES = {"chain": case_chain, "between": case_between, "failures": case_failures,
         "deadline": case_deadline, "batches": case_batches,
         "validation": case_validation, "directory": case_directory}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print(__doc__)
        return 2
    if not os.path.isdir("/proc/self/fd"):
        print("SKIPPED: needs /proc/<pid>/fd")
        return 77
    env = Env(sys.argv[1])
    failed = True
    t0 = time.monotonic()
    try:
        CASES[sys.argv[2]](env)
        failed = False
    except Fail as e:
        print("FAIL: %s" % e, flush=True)
    except Exception:  # a timeout or an error of the test itself: a failure too
        traceback.print_exc()
        print("FAIL: unexpected exception", flush=True)
    finally:
        env.cleanup(failed)
    print("%s: %s in %.1fs" % (sys.argv[2], "FAILED" if failed else "passed", time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
