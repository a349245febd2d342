# Documentation checks (sourced by build.sh): the README's C quick start is the example
# program that CTest builds and runs, and every relative link in the docs points somewhere.
# SPDX-License-Identifier: MIT

docs_test() {
  python3 - "$ROOT" <<'PY'
import os, re, sys
root = sys.argv[1]
readme = open(os.path.join(root, "README.md")).read()
fails = []
m = re.search(r"<!-- quickstart.c begins -->\n```c\n(.*?)```\n<!-- quickstart.c ends -->", readme, re.S)
example = open(os.path.join(root, "native/examples/quickstart.c")).read()
if not m:
    fails.append("README.md has no C quick start block")
elif m.group(1) != example:
    fails.append("README.md's C quick start differs from native/examples/quickstart.c")
if "PLACEHOLDER" in readme:
    fails.append("README.md still has a PLACEHOLDER")
docs = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(root, "docs")))
                        if f.endswith(".md")] if os.path.isdir(os.path.join(root, "docs")) else ["README.md"]
links = 0
for doc in docs:
    text = open(os.path.join(root, doc)).read()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        links += 1
        if not os.path.exists(os.path.normpath(os.path.join(root, os.path.dirname(doc), target))):
            fails.append(f"{doc}: broken link {target}")
for f in fails:
    print("docs check:", f)
print(f"{2 + links - len(fails)} passed, {len(fails)} failed: docs checks ({links} relative links)")
sys.exit(1 if fails else 0)
PY
}
