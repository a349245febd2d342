#!/usr/bin/env python3
"""The documentation check (eng/docs.sh, docs_test): every relative link in README.md and
docs/*.md points somewhere, and every code block in them is compiled and run as pasted.

  usage: docs_check.py ROOT PACKAGE_DIR PACKAGE_VERSION PREFIX WORKDIR

How a block is taken, by its fence language and an optional marker, an HTML comment (which
GitHub does not show) on the line just above the fence:
  ```csharp   a whole program (top-level statements), built in a fresh console project
              (net10.0) that references the PACKED FdSend (PACKAGE_DIR, a local feed, restored
              once into WORKDIR/packages) and run: it must exit 0.
              <!-- snippet: wrap NAME --> a fragment: docs/snippets/NAME.cs is the program,
              with the block in place of its line `// <snippet>` (the block's own
              `using X;` lines go to the top of the file).
  ```c        a whole program, compiled against the INSTALLED libfdsend (PREFIX) with
              cc FILE $(pkg-config --cflags --libs fdsend) -Wl,-rpath,<libdir>, and run: exit 0.
              <!-- snippet: file PATH --> the block must also equal the file PATH.
  ```sh       <!-- snippet: run --> run with bash -e in a copy of the repository's working
              tree, HOME a fresh temporary folder: exit 0. Other shell blocks, and blocks
              without a language (diagrams, text), are listed as skipped.
              <!-- snippet: build REASON --> a whole program that is compiled but not run (a
              server that runs until it is stopped; the reason is printed), in a fresh web
              project (Microsoft.NET.Sdk.Web) that references the packed FdSend, FdSend.Handoff
              and FdSend.AspNetCore.
  any         <!-- snippet: skip REASON --> not run; the reason is printed.
              <!-- snippet: same-as PATH --> (e.g. CMake) its lines must appear, in order
              (other lines between them allowed), in the file PATH, which a test builds (tests/native/install).
A block that does not build or does not exit 0 fails the check, named by file and line.
SPDX-License-Identifier: MIT"""
import os, re, shutil, subprocess, sys

root, package_dir, version, prefix, work = sys.argv[1:6]
docs = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md"))
fails, skipped, ran = [], [], {"csharp": 0, "c": 0, "sh": 0}

# ---- relative links -----------------------------------------------------------------------
links = 0
for doc in docs:
    text = open(os.path.join(root, doc)).read()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        links += 1
        if not os.path.exists(os.path.normpath(os.path.join(root, os.path.dirname(doc), target))):
            fails.append(f"{doc}: broken link {target}")
    if "PLACEHOLDER" in text:
        fails.append(f"{doc} still has a PLACEHOLDER")

# ---- code blocks --------------------------------------------------------------------------
blocks = []
for doc in docs:
    lines = open(os.path.join(root, doc)).read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,})(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        code = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]) + "\n"
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mk = re.match(r"^\s*<!-- snippet: (\S+)\s*(.*?)\s*-->\s*$", lines[k]) if k >= 0 else None
        blocks.append({"doc": doc, "line": i + 1, "lang": {"cs": "csharp", "bash": "sh", "shell": "sh"}.get(lang, lang),
                       "mode": mk.group(1) if mk else "", "arg": mk.group(2) if mk else "", "code": code})
        i = j + 1

def where(b):
    return f"{b['doc']}:{b['line']}"

def run(cmd, cwd, env=None, timeout=120):
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout} s\n{(e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')}"

os.makedirs(work, exist_ok=True)
cs, c, sh = [], [], []
for b in blocks:
    if b["mode"] == "same-as":
        want = [l.strip() for l in b["code"].split("\n") if l.strip()]
        have = [l.strip() for l in open(os.path.join(root, b["arg"])).read().split("\n") if l.strip()]
        it = iter(have)
        if not all(any(w == h for h in it) for w in want):   # in order, others between allowed
            fails.append(f"{where(b)}: the block's lines are not in {b['arg']} (which a test builds)")
        else:
            ran["same"] = ran.get("same", 0) + 1
    elif b["mode"] == "skip":
        skipped.append(f"{where(b)} ({b['lang'] or 'text'}): {b['arg'] or 'marked skip'}")
    elif b["lang"] == "csharp":
        cs.append(b)
    elif b["lang"] == "c":
        c.append(b)
    elif b["lang"] == "sh" and b["mode"] == "run":
        sh.append(b)
    else:
        skipped.append(f"{where(b)} ({b['lang'] or 'text'}): {'commands, not marked to run' if b['lang'] == 'sh' else 'not code'}")

# C: against the installed library
env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
for n, b in enumerate(c):
    if b["mode"] == "file":
        if open(os.path.join(root, b["arg"])).read() != b["code"]:
            fails.append(f"{where(b)}: the block differs from {b['arg']}")
    d = os.path.join(work, f"c{n}")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "block.c"), "w").write(b["code"])
    rc, out = run(["sh", "-c", 'cc -Wall -Wextra -Werror block.c $(pkg-config --cflags --libs fdsend) '
                   '-Wl,-rpath,"$(pkg-config --variable=libdir fdsend)" -o block'], d, env)
    if rc != 0:
        fails.append(f"{where(b)}: the C block does not compile against the installed libfdsend:\n{out.strip()}")
        continue
    rc, out = run(["./block"], d, timeout=60)
    if rc != 0:
        fails.append(f"{where(b)}: the C block exited {rc}:\n{out.strip()[-2000:]}")
    else:
        ran["c"] += 1

# sh: in a copy of the working tree, with a fresh HOME
for n, b in enumerate(sh):
    d = os.path.join(work, f"sh{n}")
    shutil.rmtree(d, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                           capture_output=True, text=True).stdout.split("\0")
    for f in filter(None, files):
        src = os.path.join(root, f)
        if os.path.isfile(src):
            os.makedirs(os.path.join(d, "repo", os.path.dirname(f)), exist_ok=True)
            shutil.copy2(src, os.path.join(d, "repo", f))
    os.makedirs(os.path.join(d, "home"))
    shenv = {k: v for k, v in os.environ.items() if not k.startswith(("PKG_CONFIG", "CMAKE_", "LD_LIBRARY"))}
    shenv["HOME"] = os.path.join(d, "home")
    rc, out = run(["bash", "-e", "-c", b["code"]], os.path.join(d, "repo"), shenv, timeout=300)
    if rc != 0:
        fails.append(f"{where(b)}: the shell block exited {rc}:\n{out.strip()[-2500:]}")
    else:
        ran["sh"] += 1
        print(f"{where(b)}: shell block ran; its last lines:\n  " + "\n  ".join(out.strip().split("\n")[-3:]))

# C#: one console project per block, built together against the packed package
if cs:
    d = os.path.join(work, "cs")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    open(os.path.join(d, "nuget.config"), "w").write(f"""<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources><clear /><add key="local" value="{package_dir}" /><add key="nuget.org" value="https://api.nuget.org/v3/index.json" /></packageSources>
  <packageSourceMapping>
    <packageSource key="local"><package pattern="FdSend" /><package pattern="FdSend.*" /></packageSource>
    <packageSource key="nuget.org"><package pattern="*" /></packageSource>
  </packageSourceMapping>
</configuration>
""")
    open(os.path.join(d, "Directory.Build.props"), "w").write("<Project />\n")   # nothing from the repository
    projs = []
    for n, b in enumerate(cs):
        name = f"snippet{n:02d}"
        os.makedirs(os.path.join(d, name))
        code = b["code"]
        if b["mode"] == "wrap":
            wrapper = open(os.path.join(root, "docs", "snippets", b["arg"] + ".cs")).read()
            usings = [l for l in code.split("\n") if re.match(r"^using [\w.]+;\s*$", l)]
            body = "\n".join(l for l in code.split("\n") if l not in usings)
            wl = wrapper.split("\n")
            if "// <snippet>" not in wl:
                fails.append(f"{where(b)}: docs/snippets/{b['arg']}.cs has no '// <snippet>' line")
                continue
            wl[wl.index("// <snippet>")] = body
            code = "\n".join(usings) + "\n" + "\n".join(wl)
        open(os.path.join(d, name, "Program.cs"), "w").write(f"// {where(b)}\n" + code)
        web = b["mode"] == "build"
        refs = ["FdSend", "FdSend.Handoff", "FdSend.AspNetCore"] if web else ["FdSend"]
        open(os.path.join(d, name, name + ".csproj"), "w").write(f"""<Project Sdk="Microsoft.NET.Sdk{'.Web' if web else ''}">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
  </PropertyGroup>
  <ItemGroup>{''.join(f'<PackageReference Include="{r}" Version="{version}" />' for r in refs)}</ItemGroup>
</Project>
""")
        projs.append((name, b))
    denv = dict(os.environ, NUGET_PACKAGES=os.path.join(work, "packages"), DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1")
    for stale in ("fdsend", "fdsend.handoff", "fdsend.aspnetcore"):   # never a stale package
        shutil.rmtree(os.path.join(work, "packages", stale), ignore_errors=True)
    run(["dotnet", "new", "sln", "-n", "snippets", "--format", "sln"], d, denv)
    run(["dotnet", "sln", "snippets.sln", "add"] + [f"{p}/{p}.csproj" for p, _ in projs], d, denv)
    rc, out = run(["dotnet", "build", "snippets.sln", "-c", "Release", "-v", "quiet", "-nologo", "-clp:NoSummary"], d, denv, timeout=600)
    broken = set()
    for p, b in projs:
        errs = sorted(set(l.strip() for l in out.split("\n") if f"/{p}/" in l and ": error " in l))
        if errs:
            broken.add(p)
            fails.append(f"{where(b)}: the C# block does not compile ({p}):\n    " + "\n    ".join(
                re.sub(r"\s*\[[^\]]*\.csproj\]$", "", re.sub(r"^.*?/" + p + "/", "", e)) for e in errs))
    if rc != 0 and not broken:
        fails.append("C# blocks: dotnet build failed:\n" + out.strip()[-3000:])
    for p, b in projs:
        if p in broken or rc != 0 and not os.path.exists(os.path.join(d, p, "bin", "Release", "net10.0", p + ".dll")):
            continue
        if b["mode"] == "build":
            ran["built"] = ran.get("built", 0) + 1
            print(f"{where(b)}: C# block compiled, not run: {b['arg'] or 'a server'}")
            continue
        rc2, out2 = run(["dotnet", os.path.join(d, p, "bin", "Release", "net10.0", p + ".dll")], os.path.join(d, p), denv, timeout=60)
        if rc2 != 0:
            fails.append(f"{where(b)}: the C# block exited {rc2} ({p}):\n{out2.strip()[-2000:]}")
        else:
            ran["csharp"] += 1

for s in skipped:
    print("skipped:", s)
for f in fails:
    print("docs check FAILED:", f)
total = len(blocks)
print(f"docs check: {total} code blocks: {ran['csharp']} C# and {ran['c']} C compiled and run, "
      f"{ran.get('built', 0)} C# compiled only, {ran['sh']} shell run, "
      f"{ran.get('same', 0)} found in a tested file, {len(skipped)} skipped; {links} relative links; {len(fails)} failures")
sys.exit(1 if fails else 0)
