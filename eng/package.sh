# The NuGet package, the demo, the package test and the NativeAOT check (sourced by build.sh).
# SPDX-License-Identifier: MIT

PACKAGE_DIR="$ROOT/artifacts/packages"
PACKAGE_VERSION="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$ROOT/Directory.Build.props")"

# ./build.sh pack: FdSend.<version>.nupkg + .snupkg with every runtimes/<rid>/native built.
managed_pack() {
  log "pack FdSend $PACKAGE_VERSION ($(ls "$ROOT/runtimes" | grep -v '^\.' | tr '\n' ' '))"
  rm -rf "$PACKAGE_DIR" && mkdir -p "$PACKAGE_DIR"
  dotnet pack "$ROOT/managed/FdSend/FdSend.csproj" -c Release -o "$PACKAGE_DIR" --nologo -v quiet \
    -p:ContinuousIntegrationBuild=true
  ls -l "$PACKAGE_DIR"
}

# ./build.sh demo
managed_demo() {
  log "demo"
  dotnet build "$ROOT/managed/FdSend.Demo/FdSend.Demo.csproj" -c Release --nologo -v quiet
  dotnet "$ROOT/managed/FdSend.Demo/bin/Release/net10.0/FdSend.Demo.dll" "$@"
}

# What the nupkg must hold, checked on the archive itself.
package_check_contents() {
  python3 - "$PACKAGE_DIR/FdSend.$PACKAGE_VERSION.nupkg" "$ROOT/runtimes" <<'PY'
import os, re, sys, zipfile
nupkg, runtimes = sys.argv[1], sys.argv[2]
names = set(zipfile.ZipFile(nupkg).namelist())
want = {"lib/net10.0/FdSend.dll", "lib/net10.0/FdSend.xml", "README.md"}
for rid in sorted(os.listdir(runtimes)):
    d = os.path.join(runtimes, rid, "native")
    if os.path.isdir(d):
        want |= {f"runtimes/{rid}/native/{f}" for f in os.listdir(d)}
missing = sorted(want - names)
nuspec = zipfile.ZipFile(nupkg).read("FdSend.nuspec").decode()
problems = [f"missing {m}" for m in missing]
if not re.search(r'<license type="expression">MIT</license>', nuspec): problems.append("no MIT license expression")
if "<repository " not in nuspec: problems.append("no repository metadata")
if "<readme>README.md</readme>" not in nuspec: problems.append("no readme")
stray = [n for n in names if n.startswith("contentFiles/") or n.startswith("content/")]
if stray: problems.append(f"content files in the package: {stray[:3]}")
for p in problems: print("package check:", p)
print(f"package check: {len(names)} entries, runtimes: " + ", ".join(sorted({n.split('/')[1] for n in names if n.startswith('runtimes/')})))
sys.exit(1 if problems else 0)
PY
  [ $? -eq 0 ] || return 1
  [ -f "$PACKAGE_DIR/FdSend.$PACKAGE_VERSION.snupkg" ] || { echo "package check: no symbols package"; return 1; }
}

# Pack, then use the package from a brand-new console project, as a user would: a local
# feed, a fresh package cache (never a stale FdSend from ~/.nuget), a two-process program.
package_test() {
  managed_pack >/dev/null || return 1
  package_check_contents || return 1
  local tmp; tmp="$(mktemp -d /tmp/fdsend-package-test.XXXXXX)"
  (
    set -e
    cd "$tmp"
    dotnet new console -o app --framework net10.0 >/dev/null
    cp "$ROOT/tests/FdSend.PackageTest/Program.cs" app/Program.cs
    export NUGET_PACKAGES="$tmp/packages"
    dotnet add app package FdSend --version "$PACKAGE_VERSION" --source "$PACKAGE_DIR" >/dev/null
    dotnet build app -c Release --nologo -v quiet >/dev/null
    dotnet run --project app -c Release --no-build
  )
  local rc=$?
  rm -rf "$tmp"
  [ $rc -eq 0 ] && echo "1 passed, 0 failed: package test" || echo "0 passed, 1 failed: package test"
  return $rc
}

# NativeAOT: publish the demo (FdSend's and the demo's sources) and run it. .NET 10's
# NativeAOT runtime pack is tried first; where the registry does not serve it, the same
# sources are compiled for net9.0, whose NativeAOT runtime ships in the ILCompiler package.
aot_test() {
  local rid tfm out log
  rid="$(host_rid)"; out="$ROOT/build/aot-$rid"; log="$ROOT/build/aot-$rid.log"
  rm -rf "$out"
  tfm=net10.0
  if ! dotnet restore "$ROOT/tests/FdSend.AotCheck" -r "$rid" -p:AotTargetFramework=net10.0 >"$log" 2>&1; then
    if grep -q 'Microsoft.NETCore.App.Runtime.NativeAOT' "$log"; then
      echo "NOTE: Microsoft.NETCore.App.Runtime.NativeAOT.$rid (.NET 10's NativeAOT runtime) cannot be restored here; checking NativeAOT with net9.0 instead"
      tfm=net9.0
    else
      cat "$log"; return 1
    fi
  fi
  dotnet publish "$ROOT/tests/FdSend.AotCheck" -c Release -r "$rid" -p:AotTargetFramework=$tfm \
    -o "$out" --nologo -v quiet >"$log" 2>&1 || { cat "$log"; echo "0 passed, 1 failed: NativeAOT publish"; return 1; }
  if "$out/FdSend.Demo" >"$log" 2>&1 && grep -q "no connection was lost" "$log" \
     && grep -q "read every file through its descriptor" "$log"; then
    echo "NativeAOT ($tfm, $rid): demo ran correctly as a native binary ($(du -h "$out/FdSend.Demo" | cut -f1))"
    echo "1 passed, 0 failed: NativeAOT demo"
  else
    cat "$log"; echo "0 passed, 1 failed: NativeAOT demo"; return 1
  fi
}
