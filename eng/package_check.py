# What the nupkg must hold (eng/package.sh, package_check_contents): usage
#   package_check.py <nupkg> <staged runtimes dir> <symbols dir>
# SPDX-License-Identifier: MIT
import os, re, subprocess, sys, tempfile, zipfile
nupkg, staged, symbols = sys.argv[1:4]
z = zipfile.ZipFile(nupkg)
names = set(z.namelist())
tfms = ["net8.0", "net10.0"]
want = {"README.md", "icon.png"} | {f"lib/{t}/FdSend.{e}" for t in tfms for e in ("dll", "xml")}
built = sorted(os.listdir(staged))
for rid in built:
    want |= {f"runtimes/{rid}/native/{f}" for f in os.listdir(os.path.join(staged, rid, "native"))}
problems = [f"missing {m}" for m in sorted(want - names)]
carried = sorted({n.split("/")[1] for n in names if n.startswith("runtimes/")})
if carried != built: problems.append(f"runtimes {carried}, but the RIDs built are {built}")
libs = sorted({n.split("/")[1] for n in names if n.startswith("lib/")})
if libs != sorted(tfms): problems.append(f"lib/ folders {libs}, expected {tfms}")
nuspec = z.read("FdSend.nuspec").decode()
if not re.search(r'<license type="expression">MIT</license>', nuspec): problems.append("no MIT license expression")
if "<repository " not in nuspec: problems.append("no repository metadata")
if "<readme>README.md</readme>" not in nuspec: problems.append("no readme")
if "<icon>icon.png</icon>" not in nuspec: problems.append("no icon")
if not re.search(r"<releaseNotes>.+</releaseNotes>", nuspec, re.S): problems.append("no release notes")
m = re.search(r"<tags>(.*?)</tags>", nuspec)
tags = set(m.group(1).split()) if m else set()
for t in ["fd-passing", "scm-rights", "unix-socket", "zero-downtime", "socket-handoff", "systemd", "kestrel"]:
    if t not in tags: problems.append(f"no tag {t}")
for t in tfms:
    if not re.search(r'<group targetFramework="(net|\.NETCoreApp)' + re.escape(t[3:]) + '"', nuspec):
        problems.append(f"no dependency group for {t}")
stray = [n for n in names if n.startswith(("contentFiles/", "content/")) or n.endswith(".debug")]
if stray: problems.append(f"content or debug files in the package: {stray[:3]}")
# Each assembly says which RIDs it carries (NativeLibraryResolver's error message).
key = b"FdSend.NativeRuntimeIdentifiers"
for t in tfms:
    dll = z.read(f"lib/{t}/FdSend.dll") if f"lib/{t}/FdSend.dll" in names else b""
    k = dll.find(key)
    if k < 0: problems.append(f"lib/{t}/FdSend.dll has no {key.decode()}"); continue
    k += len(key); n = dll[k]; value = dll[k + 1:k + 1 + n].decode()
    if sorted(value.split(";")) != built: problems.append(f"lib/{t}/FdSend.dll names RIDs '{value}', the package carries {built}")
# Stripped, with a debug link, and the debug information kept outside the package.
sizes = []
with tempfile.TemporaryDirectory() as tmp:
    for n in sorted(x for x in names if x.startswith("runtimes/") and not x.endswith("/")):
        rid, f = n.split("/")[1], n.split("/")[-1]
        p = os.path.join(tmp, rid + "-" + f); open(p, "wb").write(z.read(n))
        sizes.append(f"{rid} {os.path.getsize(p) / 1024:.0f} KiB")
        if f.endswith(".dylib"): continue
        tool = "x86_64-w64-mingw32-objdump" if rid.startswith("win-") else "objdump"
        try: out = subprocess.run([tool, "-h", p], capture_output=True, text=True).stdout
        except FileNotFoundError: out = ""
        if not out: problems.append(f"{n}: {tool} cannot read it"); continue
        if ".debug_info" in out or ".symtab" in out: problems.append(f"{n} is not stripped")
        if ".gnu_debuglink" not in out: problems.append(f"{n} has no .gnu_debuglink")
        if not os.path.exists(os.path.join(symbols, rid, f + ".debug")): problems.append(f"no artifacts/symbols/{rid}/{f}.debug")
for p in problems: print("package check:", p)
print(f"package check: {len(names)} entries; lib: {', '.join(tfms)}; runtimes: {', '.join(sizes)}; nupkg {os.path.getsize(nupkg) // 1024} KiB")
sys.exit(1 if problems else 0)
