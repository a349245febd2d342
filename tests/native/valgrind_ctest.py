#!/usr/bin/env python3
"""Run a build tree's CTest tests under valgrind memcheck, failing on memory errors, heap
leaks AND descriptor leaks.

valgrind --track-fds=yes only reports the descriptors still open at exit; its
--error-exitcode does not count them. So each test runs as
    valgrind --track-fds=yes --leak-check=full --error-exitcode=1 --log-file=<dir>/%p.log
and this script reads the logs: any descriptor the test process itself opened and left
open at exit is a failure (descriptors "inherited from parent" are not), and so is any
definitely, indirectly or possibly lost heap block of the test process.

fork()ed children get their own log. Their memory errors (invalid reads, writes, frees,
uninitialised values) fail the run, and also make the child exit 1, which the test sees.
Their heap leaks and open descriptors do not count: a child forked from a multithreaded
test exits holding memory that only the parent's other threads could reach, and
descriptors it inherited; that is what fork() does, not a bug. Hence
--errors-for-leak-kinds=none, with the leak summary of the test process read here.
exec()ed programs are not traced (--trace-children=no).

The test list, commands, working directories, SKIP_RETURN_CODE and
PASS_REGULAR_EXPRESSION come from `ctest --show-only=json-v1`, so this runs exactly what
CTest runs. Tests labelled `novalgrind` are skipped (say why in their CMakeLists), as
are tests whose command is not a native executable.

Usage: valgrind_ctest.py BUILD_DIR [-j JOBS] [-R REGEX] [-L LABEL]
Prints one line per test and "N passed, N failed, N skipped"; exits 1 on any failure.
SPDX-License-Identifier: MIT
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

VALGRIND_ARGS = [
    "--tool=memcheck",
    "--track-fds=yes",
    "--leak-check=full",
    "--show-leak-kinds=definite,indirect,possible",
    "--errors-for-leak-kinds=none",  # leaks: judged below, for the test process only
    "--error-exitcode=1",
    "--trace-children=no",
    "--child-silent-after-fork=no",
    "--num-callers=30",
]


def ctest_tests(build_dir):
    out = subprocess.run(
        ["ctest", "--test-dir", build_dir, "--show-only=json-v1"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tests"]


def props(test):
    return {p["name"]: p["value"] for p in test.get("properties", [])}


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def fd_leaks(log_text):
    """The 'Open ...' entries of a valgrind log not inherited from the parent."""
    lines = [re.sub(r"^==\d+==\s?", "", l) for l in log_text.splitlines()]
    leaks = []
    for i, line in enumerate(lines):
        if re.match(r"Open (file descriptor|AF_\w+ socket) \d+", line):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if nxt != "<inherited from parent>":
                end = i + 1
                while end < len(lines) and lines[end].strip():
                    end += 1
                leaks.append("\n".join(lines[i:end]))
    return leaks


def leaked_bytes(log_text):
    """Bytes definitely, indirectly or possibly lost, from valgrind's LEAK SUMMARY."""
    return sum(int(n.replace(",", "")) for n in re.findall(
        r"(?:definitely|indirectly|possibly) lost: ([\d,]+) bytes", log_text))


def error_count(log_text):
    m = re.search(r"ERROR SUMMARY: (\d+) errors", log_text)
    return int(m.group(1)) if m else 0


def run_one(test, logroot):
    name = test["name"]
    p = props(test)
    cmd = test.get("command") or []
    labels = p.get("LABELS", [])
    if "novalgrind" in labels:
        return name, "skip", "labelled novalgrind", 0.0
    if not cmd or not is_elf(cmd[0]):
        return name, "skip", "not a native executable", 0.0
    logdir = os.path.join(logroot, re.sub(r"[^\w.-]", "_", name))
    os.makedirs(logdir)
    env = dict(os.environ)
    for kv in p.get("ENVIRONMENT", []):
        k, _, v = kv.partition("=")
        env[k] = v
    timeout = max(180, float(p.get("TIMEOUT", 60)) * 5)
    start = time.monotonic()
    proc = subprocess.Popen(
        ["valgrind", *VALGRIND_ARGS, "--log-file=" + os.path.join(logdir, "%p.log"), *cmd],
        cwd=p.get("WORKING_DIRECTORY") or None, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        return name, "fail", "timed out after %ds\n%s" % (timeout, output), timeout
    secs = time.monotonic() - start
    problems = []
    for log in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, log), errors="replace") as f:
            text = f.read()
        is_main = log == "%d.log" % proc.pid
        if error_count(text):
            problems.append("valgrind errors in %s:\n%s" % (
                "the test" if is_main else "a forked child", text))
        if is_main:
            leaks = fd_leaks(text)
            if leaks:
                problems.append("descriptors left open at exit:\n" + "\n".join(leaks))
            if leaked_bytes(text):
                problems.append("heap leaked by the test:\n" + text)
    skip_code = p.get("SKIP_RETURN_CODE")
    if skip_code is not None and proc.returncode == int(skip_code) and not problems:
        reason = next((l for l in output.splitlines() if l.startswith("SKIPPED")), "")
        return name, "skip", reason, secs
    pass_re = p.get("PASS_REGULAR_EXPRESSION")
    if pass_re:
        if not any(re.search(r, output) for r in pass_re):
            problems.append("output does not match PASS_REGULAR_EXPRESSION")
    elif proc.returncode != 0:
        problems.append("exit status %d" % proc.returncode)
    if problems:
        return name, "fail", output + "\n" + "\n".join(problems), secs
    return name, "pass", "", secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build_dir")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("-R", "--regex", default="")
    ap.add_argument("-L", "--label", default="")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("SKIPPED: valgrind is not installed")
        return 0
    tests = [t for t in ctest_tests(args.build_dir)
             if re.search(args.regex, t["name"])
             and (not args.label or args.label in props(t).get("LABELS", []))]
    logroot = tempfile.mkdtemp(prefix="fdsend-valgrind-")
    counts = {"pass": 0, "fail": 0, "skip": 0}
    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for name, status, detail, secs in pool.map(lambda t: run_one(t, logroot), tests):
                counts[status] += 1
                print("%-4s %-60s %6.1fs %s" % (status.upper(), name, secs,
                                                 detail if status == "skip" else ""))
                if status == "fail":
                    print(detail)
                sys.stdout.flush()
    finally:
        shutil.rmtree(logroot, ignore_errors=True)
    print("valgrind: %d passed, %d failed, %d skipped" % (
        counts["pass"], counts["fail"], counts["skip"]))
    return 1 if counts["fail"] or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
