#!/usr/bin/env python3
"""Reads a VSTest .trx results file for eng/managed.sh and eng/reliability.sh.

  trx.py skipped FILE   every skipped test with its reason, one line each
  trx.py failed FILE    every failed test: its name, message and the top of its stack
  trx.py rerun FILE [MAX]
                        a `dotnet test --filter` expression selecting the methods of the
                        failed tests; prints nothing when none failed, and exits 3 when
                        more than MAX methods (default 3) failed
A missing or unreadable file prints nothing and exits 0.
SPDX-License-Identifier: MIT
"""
import sys
import xml.etree.ElementTree as ET

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}


def load(path):
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None


def results(root, outcome):
    for r in root.iterfind(".//t:UnitTestResult", NS):
        if r.get("outcome") == outcome:
            yield r


def text_of(result, tag):
    node = result.find(f".//t:{tag}", NS)
    return (node.text or "").strip() if node is not None else ""


def method_names(root):
    """testId -> 'Namespace.Class.Method' (without the parameters of a test case)."""
    names = {}
    for t in root.iterfind(".//t:UnitTest", NS):
        m = t.find("t:TestMethod", NS)
        if m is not None:
            names[t.get("id")] = f"{m.get('className')}.{m.get('name').split('(')[0]}"
    return names


def skipped(root):
    for r in results(root, "NotExecuted"):
        msg = text_of(r, "Message")
        if not msg.startswith("SKIPPED"):
            msg = "SKIPPED: " + msg
        print(f"{msg} [{r.get('testName')}]")


def failed(root):
    names = method_names(root)
    for r in results(root, "Failed"):
        name, case = names.get(r.get("testId"), ""), r.get("testName", "")
        if "(" in case:
            name += case[case.index("("):]
        print(f"FAILED {name or case} ({r.get('duration')})")
        for line in text_of(r, "Message").splitlines()[:8]:
            print(f"    {line}")
        stack = [line.strip() for line in text_of(r, "StackTrace").splitlines() if line.strip()]
        for line in stack[:4]:
            print(f"    {line}")


def rerun(root, most):
    names = method_names(root)
    methods = sorted({names.get(r.get("testId"), "") for r in results(root, "Failed")})
    if len(methods) > most or "" in methods:
        sys.exit(3)
    if methods:
        print("|".join(f"FullyQualifiedName~{m}" for m in methods))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("skipped", "failed", "rerun"):
        sys.exit(__doc__)
    root = load(argv[2])
    if root is None:
        return
    if argv[1] == "skipped":
        skipped(root)
    elif argv[1] == "failed":
        failed(root)
    else:
        rerun(root, int(argv[3]) if len(argv) > 3 else 3)


if __name__ == "__main__":
    main(sys.argv)
