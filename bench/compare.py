#!/usr/bin/env python3
"""Run the same fd-passing workloads through every implementation and compare them.

Each implementation is a small program (built beforehand by eng/bench.sh; this script
builds nothing) that takes `WORKLOAD SECONDS WARMUP` and prints one line
`ops_per_sec=<float> ops=<int> seconds=<float> [alloc_bytes_per_op=<float>]`.
One process per (implementation, workload) run; the runs are interleaved
(round 1: A B C ..., round 2: B C ... A, ...) so that a slow moment of a shared machine
hits every implementation alike. Per implementation and workload we report the median
of the rounds, its ratio to raw C's median in the same run, and min/max.

    compare.py                      full run, prints the table, writes RESULTS.md
    compare.py --rounds 7 --duration 1
    compare.py --smoke              every program once, briefly: does it run, is the number
                                    sane (no timing judgement); prints "N passed, N failed"
    compare.py --pending            only the 10,000-pending-receives measurement

Exit status: 0 if every run worked, 1 if any failed (the table is still printed).
SPDX-License-Identifier: MIT
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))

WORKLOADS = [
    ("inproc1", "in-process, 16 B + 1 fd", "one process, one socketpair: send 16 bytes + 1 fd, receive, close the fd (round trips/s)"),
    ("inproc64", "in-process, 16 B + 64 fds", "the same with 64 fds per message"),
    ("stream1", "two-process stream, 16 B + 1 fd", "the parent sends 16 bytes + 1 fd per message as fast as it can; a child process receives and closes; messages/s until the child acknowledges it has drained everything"),
    ("pingpong1", "two-process ping-pong, 16 B + 1 fd", "the parent sends 16 bytes + 1 fd; the child receives, sends 16 bytes + that fd back and closes it; the parent receives and closes (round trips/s)"),
]
WORKLOAD_NAMES = [w[0] for w in WORKLOADS]
FLOOR = "raw-c"
DOTNET_FLOOR = "dotnet-floor"  # libc's sendmsg/recvmsg/close through P/Invoke, no FdSend
UNSUPPORTED_EXIT = 3  # a program's way of saying "this workload cannot be expressed"


class Impl:
    def __init__(self, name, label, cmd, workloads=None, note=None, missing=None):
        self.name = name
        self.label = label
        self.cmd = cmd
        self.workloads = workloads or WORKLOAD_NAMES
        self.note = note
        self.missing = missing  # why it cannot run here, or None

    def argv(self, workload, seconds, warmup):
        return self.cmd + [workload, f"{seconds:g}", f"{warmup:g}"]


def dotnet_program(project_dir, name):
    """The apphost of a .NET comparison program built with `dotnet build -c Release`."""
    base = os.path.join(HERE, "compare", "dotnet", project_dir, "bin", "Release")
    if os.path.isdir(base):
        for tfm in sorted(os.listdir(base), reverse=True):
            exe = os.path.join(base, tfm, name)
            if os.access(exe, os.X_OK):
                return exe
    return None


def dotnet_impl(project_dir, name, label):
    """The row of a single-implementation .NET comparison program, or why it cannot run."""
    exe = dotnet_program(project_dir, project_dir)
    return Impl(name, label, [exe] if exe else [],
                missing=None if exe else f"{project_dir} is not built (run ./build.sh bench)")


def fdsend_impls():
    """FdSend's implementations are listed by the FdSendCompare program itself
    (`FdSendCompare --list` prints `name<TAB>label` lines): adding async or the channel
    there adds their rows here without touching this script."""
    exe = dotnet_program("FdSendCompare", "FdSendCompare")
    if exe is None:
        why = ("managed/FdSend does not exist yet" if not os.path.isdir(os.path.join(ROOT, "managed", "FdSend"))
               else "FdSendCompare is not built (run ./build.sh bench)")
        return [Impl("fdsend", "FdSend (.NET)", [], missing=why)]
    out = subprocess.run([exe, "--list"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return [Impl("fdsend", "FdSend (.NET)", [], missing=f"FdSendCompare --list failed: {out.stderr.strip()[:200]}")]
    impls = []
    for line in out.stdout.splitlines():
        if "\t" not in line:
            continue
        name, label = line.split("\t", 1)
        impls.append(Impl(f"fdsend-{name}", label, [exe, name]))
    return impls


def discover(bin_dir):
    def c_program(name, label, note=None):
        exe = os.path.join(bin_dir, name)
        if os.access(exe, os.X_OK):
            return Impl(label[0], label[1], [exe], note=note)
        return Impl(label[0], label[1], [], missing=f"{exe} is not built (run ./build.sh bench)")

    impls = [
        c_program("bench_raw", (FLOOR, "raw C sendmsg/recvmsg (the floor)")),
        c_program("bench_lib", ("libfdsend", "libfdsend (C: fdsend_send/fdsend_recv)")),
    ]
    if os.access(os.path.join(bin_dir, "bench_lib_unix"), os.X_OK):
        impls.append(c_program("bench_lib_unix", ("libfdsend-unix", "libfdsend with FDSEND_UNIX_SOCKET (caller vouches for AF_UNIX: no getsockname)")))
    if os.access(os.path.join(bin_dir, "bench_msg"), os.X_OK):
        impls.append(c_program("bench_msg", ("libfdsend-msg", "libfdsend message channel (C: fdsend_channel_*, one object per socket)")))
    # The .NET floor sits between the C rows and FdSend's .NET rows: what .NET costs
    # before FdSend adds anything.
    impls.append(dotnet_impl("PInvokeFloor", DOTNET_FLOOR,
                             ".NET floor: libc sendmsg/recvmsg/close via [LibraryImport] (no FdSend)"))
    impls += fdsend_impls()

    go_exe = os.path.join(bin_dir, "bench_go")
    go_label = "Go net.UnixConn WriteMsgUnix/ReadMsgUnix (netpoller)"
    go_version = os.path.join(bin_dir, "bench_go.version")
    if os.path.exists(go_version):
        with open(go_version) as f:
            go_label = f"Go {f.read().strip()} net.UnixConn WriteMsgUnix/ReadMsgUnix (netpoller)"
    impls.append(Impl("go", go_label, [go_exe] if os.access(go_exe, os.X_OK) else [],
                      missing=None if os.access(go_exe, os.X_OK)
                      else "bench_go is not built (Go is not installed? Debian: golang-go; run ./build.sh bench)"))

    py = shutil.which("python3") or sys.executable
    impls.append(Impl("cpython", f"CPython {platform.python_version()} socket.send_fds/recv_fds",
                      [py, os.path.join(HERE, "compare", "python", "bench_cpython.py")]))

    perl = shutil.which("perl")
    fdpass_cmd = [perl, os.path.join(HERE, "compare", "perl", "bench_fdpass.pl")] if perl else []
    fdpass_missing = None
    fdpass_label = "Perl IO::FDPass"
    if not perl:
        fdpass_missing = "perl is not installed"
    else:
        v = subprocess.run([perl, "-MIO::FDPass", "-e", "print $IO::FDPass::VERSION"], capture_output=True, text=True)
        if v.returncode != 0:
            fdpass_missing = "the Perl module IO::FDPass is not installed (Debian: libio-fdpass-perl)"
        else:
            fdpass_label = f"Perl IO::FDPass {v.stdout.strip()} (messages: 1 carrier byte + 1 fd)"
    impls.append(Impl("io-fdpass", fdpass_label, fdpass_cmd,
                      workloads=["inproc1", "stream1", "pingpong1"],
                      note="IO::FDPass sends exactly one fd per call on a 1-byte carrier with no caller data: "
                           "its messages are 1 byte + 1 fd where the others send 16 bytes + 1 fd; "
                           "it cannot run the 64-fd workload",
                      missing=fdpass_missing))

    impls.append(dotnet_impl("MonoPosixCompare", "mono-posix", "Mono.Posix.NETStandard 1.0.0 Syscall.sendmsg/recvmsg (.NET)"))
    return impls


LINE = re.compile(r"ops_per_sec=([0-9.]+)\s+ops=(\d+)\s+seconds=([0-9.]+)((?:\s+\w+=[0-9.]+)*)")


TWO_PROCESS = {"stream1", "pingpong1"}
PIN_CPU = None  # set by main(): the CPU two-process runs are pinned to, or None


def pin_to(cpu):
    return lambda: os.sched_setaffinity(0, {cpu})


# .NET compiles a method again, optimised (tier 1), only after it has been called 30 times
# *and* 100 ms have passed without new methods being compiled; pinned to one CPU, that
# background compiler shares the CPU with the loop. With the default the .NET rows were still
# tiering after a 1.5 s warm-up (FdSend async ping-pong pinned: 28-30k round trips per
# CPU-second, against 38-39k after 4 s); without the 100 ms delay they reach that same steady
# state within 1.5 s (PROFILE.md section 16). Other programs ignore the variable.
RUN_ENV = dict(os.environ, DOTNET_TC_CallCountingDelayMs="0")


def run_one(impl, workload, seconds, warmup, timeout):
    """Returns (result dict or None, error string or None, unsupported: bool)."""
    argv = impl.argv(workload, seconds, warmup)
    pre = pin_to(PIN_CPU) if PIN_CPU is not None and workload in TWO_PROCESS else None
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=pre,
                           env=RUN_ENV)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s: {' '.join(argv)}", False
    if p.returncode == UNSUPPORTED_EXIT:
        return None, p.stderr.strip(), True
    m = LINE.search(p.stdout)
    if p.returncode != 0 or not m:
        err = (p.stderr.strip() or p.stdout.strip())[-400:]
        return None, f"exit {p.returncode}: {' '.join(argv)}: {err}", False
    r = {"ops_per_sec": float(m.group(1)), "ops": int(m.group(2)), "seconds": float(m.group(3))}
    for kv in m.group(4).split():
        k, v = kv.split("=", 1)
        r[k] = float(v)  # alloc_bytes_per_op, cpu_seconds
    return r, None, False


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_description():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    runtimes = command_output(["dotnet", "--list-runtimes"])
    netcore = [l.split(" [")[0] for l in runtimes.splitlines() if l.startswith("Microsoft.NETCore.App")]
    gcc = command_output(["gcc", "--version"]).splitlines()
    distro = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return [
        ("CPU", cpu),
        ("cores (online)", str(os.cpu_count())),
        ("OS", distro or platform.system()),
        ("kernel", platform.release()),
        (".NET SDK", command_output(["dotnet", "--version"]) or "not found"),
        (".NET runtime", ", ".join(netcore) or "not found"),
        ("gcc", gcc[0] if gcc else "not found"),
        ("Python", platform.python_version()),
        ("Perl", command_output(["perl", "-e", "printf '%vd', $^V"]) or "not found"),
    ]


def fmt_ops(x):
    return f"{x:,.0f}"


def build_tables(impls, results, floor_medians):
    """Markdown: a summary matrix (median and ratio per cell) and one detail table per workload."""
    lines = []
    runnable = [i for i in impls if i.missing is None]
    head = "| implementation | " + " | ".join(w[1] for w in WORKLOADS) + " |"
    lines += [head, "|" + "---|" * (len(WORKLOADS) + 1)]
    for impl in runnable:
        cells = []
        for w in WORKLOAD_NAMES:
            cells.append(summary_cell(impl, w, results, floor_medians))
        lines.append(f"| {impl.label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Cells: median ops/s over the rounds, its ratio to raw C's median for the same workload in the same "
                 "run, and the ratio of operations per CPU-second.")
    lines.append("Operations per CPU-second count the CPU time used over the timed loop by the process and, in the "
                 "two-process workloads, its child (from /proc): on a shared machine it is disturbed much less than "
                 "the wall clock, so the two ratios together show whether a gap is the implementation's or the "
                 "machine's.")
    for w, title, desc in WORKLOADS:
        if not any(name == w for _, name in results):
            continue  # not run (--workloads)
        lines += ["", f"#### {title} (`{w}`)", "", desc + ".", "",
                  "| implementation | median ops/s | ratio to raw C | min | max | rounds | ops per CPU-second (ratio) | alloc B/op |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        floor_cpu = results.get((FLOOR, w), {}).get("cpu", [])
        floor_cpu = statistics.median(floor_cpu) if floor_cpu else None
        for impl in runnable:
            rs = results.get((impl.name, w), {})
            vals = rs.get("ops", [])
            if w not in impl.workloads or rs.get("unsupported"):
                lines.append(f"| {impl.label} | n/a | | | | | | |")
                continue
            if not vals:
                lines.append(f"| {impl.label} | failed | | | | {len(rs.get('errors', []))} errors | | |")
                continue
            med = statistics.median(vals)
            ratio = f"{med / floor_medians[w]:.3f}x" if floor_medians.get(w) else "-"
            allocs = rs.get("alloc", [])
            alloc = f"{statistics.median(allocs):.1f}" if allocs else ""
            cpus = rs.get("cpu", [])
            cpu = ""
            if cpus:
                c = statistics.median(cpus)
                cpu = fmt_ops(c) + (f" ({c / floor_cpu:.3f}x)" if floor_cpu else "")
            lines.append(f"| {impl.label} | {fmt_ops(med)} | {ratio} | {fmt_ops(min(vals))} | "
                         f"{fmt_ops(max(vals))} | {len(vals)} | {cpu} | {alloc} |")
    if any(results.get((i.name, "pingpong1"), {}).get("p50_us") for i in runnable):
        lines += ["", "#### ping-pong round-trip latency (`pingpong1`)", "",
                  "Each round trip of the timed loop is timed (one clock read per round trip); the medians over "
                  "the rounds of each run's 50th and 99th percentile, in microseconds (implementations without "
                  "a number do not time single round trips).", "",
                  "| implementation | p50 us | p99 us | p50 ratio to raw C |", "|---|---:|---:|---:|"]
        f50 = results.get((FLOOR, "pingpong1"), {}).get("p50_us")
        f50 = statistics.median(f50) if f50 else None
        for impl in runnable:
            rs = results.get((impl.name, "pingpong1"), {})
            if not rs.get("p50_us"):
                continue
            p50, p99 = statistics.median(rs["p50_us"]), statistics.median(rs["p99_us"])
            ratio = f"{p50 / f50:.2f}x" if f50 else ""
            lines.append(f"| {impl.label} | {p50:.1f} | {p99:.1f} | {ratio} |")
    notes = [i for i in runnable if i.note]
    if notes:
        lines += ["", "Notes:"]
        lines += [f"- {i.label}: {i.note}." for i in notes]
    missing = [i for i in impls if i.missing is not None]
    if missing:
        lines += ["", "Not measured in this run:"]
        lines += [f"- {i.label}: {i.missing}." for i in missing]
    return lines


def summary_cell(impl, w, results, floor_medians):
    rs = results.get((impl.name, w), {})
    if w not in impl.workloads or rs.get("unsupported"):
        return "n/a"
    if not rs:
        return "not run"
    vals = rs.get("ops", [])
    if not vals:
        return "failed"
    med = statistics.median(vals)
    cpu, floor_cpu = rs.get("cpu", []), results.get((FLOOR, w), {}).get("cpu", [])
    cpu_text = (f"; {statistics.median(cpu) / statistics.median(floor_cpu):.2f}x per CPU-s"
                if cpu and floor_cpu else "")
    if floor_medians.get(w):
        return f"{fmt_ops(med)} ({med / floor_medians[w]:.2f}x{cpu_text})"
    return fmt_ops(med)


def median_of(results, name, w):
    vals = results.get((name, w), {}).get("ops", [])
    return statistics.median(vals) if vals else None


def alloc_of(results, name, w):
    vals = results.get((name, w), {}).get("alloc", [])
    return statistics.median(vals) if vals else None


def target_lines(impls, results, floor_medians):
    """The targets of issue 5, each with its measured value from this run."""
    names = {i.name for i in impls if i.missing is None}
    out = ["Each ratio is judged on operations per CPU-second where the run measured CPU time (every workload "
           "on Linux), else on the wall clock. For these CPU-bound loops the two agree on an idle machine; on a "
           "shared one the wall-clock ratio swings with other processes (it is given too).", ""]

    def status(ok):
        return "met" if ok else "MISSED"

    def med(name, w, key):
        vals = results.get((name, w), {}).get(key, [])
        return statistics.median(vals) if vals else None

    def ratio(name, w, base):
        """(ratio judged, '0.912x per CPU-second (wall clock 0.870x)'), or None if not measured."""
        m, b = med(name, w, "ops"), med(base, w, "ops")
        if m is None or not b:
            return None
        wall = m / b
        c, cb = med(name, w, "cpu"), med(base, w, "cpu")
        if c is not None and cb:
            return c / cb, f"{c / cb:.3f}x per CPU-second (wall clock {wall:.3f}x)"
        return wall, f"{wall:.3f}x (wall clock)"

    def judge(name, w, base, goal):
        """'0.912x per CPU-second (wall clock 0.870x): MISSED', or None if not measured."""
        r = ratio(name, w, base)
        return f"{r[1]}: {status(r[0] >= goal)}" if r else None

    for name, label in (("fdsend-span", "FdSend sync, span overloads"), ("fdsend-owning", "FdSend sync, owning ReceivedFds")):
        for w in ("inproc1", "inproc64"):
            j = judge(name, w, FLOOR, 0.95) if name in names else None
            out.append(f"- {label}, `{w}`, >= 0.95x raw C: {j or 'not measured in this run'}")
    # How much of the gap to raw C is FdSend's and how much .NET's own (P/Invoke transitions):
    # the span row against the .NET floor, which calls libc directly. Not a target: no status.
    for w in ("inproc1", "inproc64"):
        r = ratio("fdsend-span", w, DOTNET_FLOOR) if {"fdsend-span", DOTNET_FLOOR} <= names else None
        f = ratio(DOTNET_FLOOR, w, FLOOR) if DOTNET_FLOOR in names else None
        out.append(f"- FdSend sync, span overloads, `{w}`, against the .NET floor (libc through P/Invoke, no FdSend): "
                   f"{r[1] if r else 'not measured in this run'}"
                   f" (the floor itself, against raw C: {f[1] if f else 'not measured'})")
    for name, label in (("libfdsend", "libfdsend (default flags)"), ("libfdsend-unix", "libfdsend with FDSEND_UNIX_SOCKET")):
        for w in WORKLOAD_NAMES:
            j = judge(name, w, FLOOR, 0.98)
            if j:
                out.append(f"- {label}, `{w}`, >= 0.98x raw C: {j}")
    for w in WORKLOAD_NAMES:
        a = alloc_of(results, "fdsend-span", w)
        if a is not None:
            out.append(f"- span overloads allocate 0 bytes per operation, `{w}`: {a:.1f} B/op (process-wide "
                       f"GC.GetTotalAllocatedBytes over the timed loop): {status(a < 0.5)}")
    for w, nfds in (("inproc1", 1), ("inproc64", 64)):
        a = alloc_of(results, "fdsend-owning", w)
        if a is not None:
            out.append(f"- owning result at most one small allocation per received fd, `{w}`: {a:.1f} B/op "
                       f"for {nfds} fd(s) (BenchmarkDotNet's SendReceive counts the objects)")
    if "fdsend-async" in names:
        for w, goal in (("inproc1", 0.85), ("inproc64", 0.85), ("pingpong1", 0.8)):
            j = judge("fdsend-async", w, "fdsend-span", goal)
            j2 = judge("fdsend-async", w, "fdsend-owning", goal)
            if j:
                out.append(f"- FdSend async, `{w}`, >= {goal}x FdSend sync (span overloads): {j}"
                           + (f"; against the sync owning receive (the same result type): {j2}" if j2 else ""))
    else:
        out.append("- FdSend async >= 0.85x sync in-process, >= 0.8x sync ping-pong: not measured (no async API)")
    if "go" in names:
        for name, label in (("fdsend-async", "FdSend async"), ("fdsend-channel", "FdChannel")):
            if name not in names:
                continue
            for w in ("stream1", "pingpong1"):
                j = judge(name, w, "go", 1.0)
                if j:
                    out.append(f"- issue 14: {label}, `{w}`, ratio to raw C >= Go's (measured against Go directly): {j}")
    if "fdsend-channel" in names and "fdsend-async" in names:
        for w in ("inproc1", "stream1", "pingpong1"):
            j = judge("fdsend-channel", w, "fdsend-async", 0.9)
            if j:
                out.append(f"- issue 14: FdChannel, `{w}`, >= 0.9x FdSend async: {j}")
    if "fdsend-span" in names:
        for peer in ("mono-posix", "cpython", "io-fdpass"):
            if peer not in names:
                continue
            for w in WORKLOAD_NAMES:
                j = judge("fdsend-span", w, peer, 1.0)
                if j:
                    out.append(f"- FdSend sync (span) ahead of {peer}, `{w}`: {j.replace(': met', ': ahead').replace(': MISSED', ': NOT ahead')}")
    return out


def smoke(impls, timeout):
    """Every workload of every program once, briefly, two at a time: each must run and
    print a plausible number. No timing judgement."""
    from concurrent.futures import ThreadPoolExecutor
    passed = failed = skipped = 0
    jobs = []
    for impl in impls:
        if impl.missing:
            print(f"SKIPPED: {impl.label}: {impl.missing}")
            skipped += 1
            continue
        jobs += [(impl, w) for w in WORKLOAD_NAMES if w in impl.workloads]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [(impl, w, pool.submit(run_one, impl, w, 0.05, 0.02, timeout)) for impl, w in jobs]
        pending = pool.submit(run_pending, timeout, 200)
        for impl, w, f in futures:
            r, err, unsupported = f.result()
            if unsupported:
                print(f"FAIL {impl.name} {w}: said unsupported: {err}")
                failed += 1
            elif r is None:
                print(f"FAIL {impl.name} {w}: {err}")
                failed += 1
            elif not (r["ops"] > 0 and 100 < r["ops_per_sec"] < 1e9 and 0.04 < r["seconds"] < 30):
                print(f"FAIL {impl.name} {w}: implausible result {r}")
                failed += 1
            else:
                print(f"ok   {impl.name} {w}: {fmt_ops(r['ops_per_sec'])} ops/s")
                passed += 1
        pending = pending.result()
    if pending is None:
        print("SKIPPED: pending receives: FdSendCompare is not built")
        skipped += 1
    elif pending.startswith("not_available="):
        print(f"SKIPPED: pending receives: {pending.split('=', 1)[1]}")
        skipped += 1
    elif pending.startswith("error"):
        print(f"FAIL pending receives: {pending}")
        failed += 1
    else:
        print(f"ok   pending receives (200): {pending}")
        passed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 else 1


PENDING_KEYS = [
    ("pending_receives", "receives pending at once, one per socket"),
    ("threads_idle", "process threads before (async path warmed up)"),
    ("threads_pending", "process threads with all of them pending"),
    ("threads_peak_completing", "most threads seen while they complete"),
    ("managed_bytes_per_pending", "managed heap per pending receive, first receive on each socket, bytes "
                                  "(GC.GetTotalMemory after full GCs; includes .NET's per-socket async state)"),
    ("rss_bytes_per_pending", "resident memory per pending receive, first receive on each socket, bytes (VmRSS)"),
    ("managed_bytes_per_pending_again", "managed heap per pending receive, second receive on the same sockets, bytes"),
    ("threads_pending_again", "process threads with the second round pending"),
    ("all_completed_ms", "time for all of them to complete once the peer sends, ms"),
]


def pending_lines(pending):
    """The FdSendCompare --pending line as a table (or its reason for having no number)."""
    if pending is None:
        return ["FdSendCompare is not built: not measured."]
    if pending.startswith("not_available="):
        return ["**Not available yet:** " + pending.split("=", 1)[1] + "."]
    if pending.startswith("error"):
        return [f"**Failed:** {pending}"]
    values = dict(kv.split("=", 1) for kv in pending.split() if "=" in kv)
    lines = ["The receiving process accepts the sockets (a peer process holds the other ends), starts one "
             "`ReceiveFdsAsync` per socket, measures, then the peer sends 16 bytes + 1 fd on every socket "
             "and every receive must complete with them; then a second round on the same sockets.",
             "", "| | |", "|---|---:|"]
    lines += [f"| {label} | {values[k]} |" for k, label in PENDING_KEYS if k in values]
    return lines


def run_pending(timeout, count=10000):
    """The 10,000-pending-receives measurement of issue 4, done by FdSendCompare."""
    exe = dotnet_program("FdSendCompare", "FdSendCompare")
    if exe is None:
        return None
    p = subprocess.run([exe, "--pending", str(count)], capture_output=True, text=True, timeout=timeout * 4)
    if p.returncode != 0:
        return f"error: exit {p.returncode}: {(p.stderr.strip() or p.stdout.strip())[-400:]}"
    return p.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=0.4, help="measured seconds per run (default 0.4)")
    # 2 s: .NET's tiered compilation recompiles the hot loop during the first second or so
    # (with 0.3 s every .NET row came out 30-40% low: bench/PROFILE.md section 10; with 1.5 s and
    # the default 100 ms call-counting delay, pinned rows still a quarter low: section 16).
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run, not measured (default 2)")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bench"), help="where eng/bench.sh put the C programs")
    ap.add_argument("--only", default="", help="comma-separated implementation names to run (plus raw-c)")
    ap.add_argument("--workloads", default="", help="comma-separated workloads (default: all)")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--smoke", action="store_true", help="run every program briefly; no timing judgement")
    ap.add_argument("--pending", action="store_true", help="only the pending-receives measurement")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--pin", choices=["same-cpu", "none"], default="same-cpu",
                    help="two-process workloads: run both processes on one CPU (default; the hand-off is then "
                         "a context switch and the result measures CPU cost), or let the scheduler place them "
                         "(the result is then dominated by cross-CPU wake-up latency)")
    args = ap.parse_args()
    global PIN_CPU
    if args.pin == "same-cpu" and hasattr(os, "sched_getaffinity"):
        PIN_CPU = max(os.sched_getaffinity(0))

    impls = discover(args.bin_dir)
    if args.only:
        keep = set(args.only.split(",")) | {FLOOR}
        impls = [i for i in impls if i.name in keep]
    if args.smoke:
        return smoke(impls, min(args.timeout, 20))
    if args.pending:
        print(run_pending(args.timeout) or "FdSendCompare is not built")
        return 0
    workloads = args.workloads.split(",") if args.workloads else WORKLOAD_NAMES
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    floor = next((i for i in impls if i.name == FLOOR), None)
    if floor is None or floor.missing:
        print(f"raw C (the floor) is not available: {floor.missing if floor else 'unknown'}", file=sys.stderr)
        return 1

    runnable = [i for i in impls if i.missing is None]
    for i in impls:
        if i.missing:
            print(f"SKIPPED: {i.label}: {i.missing}")
    load_before = loadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    results = {}
    failures = 0
    total = sum(1 for i in runnable for w in workloads if w in i.workloads) * args.rounds
    done = 0
    print(f"{total} runs: {args.rounds} rounds x {len(runnable)} implementations x {len(workloads)} workloads, "
          f"{args.warmup:g} s warm-up + {args.duration:g} s each; load average {load_before}", flush=True)
    for rnd in range(args.rounds):
        order = runnable[rnd % len(runnable):] + runnable[:rnd % len(runnable)]
        for w in workloads:
            for impl in order:
                if w not in impl.workloads:
                    continue
                r, err, unsupported = run_one(impl, w, args.duration, args.warmup, args.timeout)
                slot = results.setdefault((impl.name, w), {"ops": [], "alloc": [], "cpu": [], "errors": []})
                done += 1
                if unsupported:
                    slot["unsupported"] = True
                elif r is None:
                    failures += 1
                    slot["errors"].append(err)
                    print(f"  FAILED {impl.name} {w}: {err}", file=sys.stderr, flush=True)
                else:
                    slot["ops"].append(r["ops_per_sec"])
                    if "alloc_bytes_per_op" in r:
                        slot["alloc"].append(r["alloc_bytes_per_op"])
                    if r.get("cpu_seconds", 0) > 0:
                        slot.setdefault("cpu", []).append(r["ops"] / r["cpu_seconds"])
                    for key in ("p50_us", "p99_us"):
                        if key in r:
                            slot.setdefault(key, []).append(r[key])
        print(f"  round {rnd + 1}/{args.rounds} done ({done}/{total} runs, {time.monotonic() - t_start:.0f} s, "
              f"load {loadavg()})", flush=True)
    load_after = loadavg()
    elapsed = time.monotonic() - t_start

    floor_medians = {w: median_of(results, FLOOR, w) for w in WORKLOAD_NAMES}
    table = build_tables(impls, results, floor_medians)
    targets = target_lines(impls, results, floor_medians)
    pending = run_pending(args.timeout)

    out = ["# FdSend benchmark results", "",
           "Written by `./build.sh bench` (`bench/compare.py`) from a real run; "
           "do not edit by hand. Every implementation runs the same workloads, one process per "
           "(implementation, workload) run, rounds interleaved; medians over the rounds, ratios "
           "to raw C (`sendmsg`/`recvmsg` called directly) from the same run.", "",
           "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in machine_description()]
    out += [f"| date (UTC) | {started:%Y-%m-%d %H:%M} |",
            f"| load average (1/5/15 min) | {load_before} before, {load_after} after |",
            f"| run | {args.rounds} rounds, {args.warmup:g} s warm-up + {args.duration:g} s measured per run "
            f"(.NET with DOTNET_TC_CallCountingDelayMs=0: tiered to steady state within the warm-up), "
            f"{total} runs in {elapsed:.0f} s |",
            "| two-process workloads | " + (f"both processes pinned to CPU {PIN_CPU} (`--pin same-cpu`): each "
                                          "hand-off is a context switch, so the numbers compare CPU cost, not "
                                          "the machine's cross-CPU wake-up latency" if PIN_CPU is not None
                                          else "not pinned (`--pin none`): dominated by cross-CPU wake-up latency") + " |",
            "",
            "## Results", ""]
    out += table
    out += ["", "## Targets (issues 5 and 14)", ""] + targets
    out += ["", "## 10,000 receives pending at once (issue 4)", ""] + pending_lines(pending) + [""]
    if failures:
        out += [f"{failures} runs FAILED; first errors:", ""]
        for (name, w), slot in results.items():
            for e in slot["errors"][:1]:
                out.append(f"- {name} {w}: {e}")
        out.append("")
    text = "\n".join(out)
    print()
    print(text)
    if not args.no_write:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(args.output, ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
