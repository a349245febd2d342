# The NuGet package and the package test (sourced by build.sh).
# SPDX-License-Identifier: MIT

PACKAGE_DIR="$ROOT/artifacts/packages"
PACKAGE_VERSION="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$ROOT/Directory.Build.props")"

PACKAGE_NATIVE_DIR="$ROOT/artifacts/native/runtimes"
PACKAGE_SYMBOLS_DIR="$ROOT/artifacts/symbols"

# The binutils prefix that can strip RID's binaries ("" for the host's own tools).
_package_binutils() {
  case "$1" in
    linux-x64|linux-musl-x64|freebsd-x64|illumos-x64) echo "" ;;
    linux-arm64|linux-musl-arm64) echo "aarch64-linux-gnu-" ;;
    win-x64) echo "x86_64-w64-mingw32-" ;;
    *) return 1 ;;
  esac
}

# Copy one RID's library into the package's staging folder, stripped, with its debug
# information kept in artifacts/symbols/<rid>/<file>.debug (the stripped file's
# .gnu_debuglink names it, so gdb finds it when both are side by side or in a debug dir).
_package_stage_rid() {
  local rid="$1" src dst pfx f
  mkdir -p "$PACKAGE_NATIVE_DIR/$rid/native"
  for src in "$ROOT/runtimes/$rid/native/"*; do
    [ -f "$src" ] || continue
    f="$(basename "$src")"; dst="$PACKAGE_NATIVE_DIR/$rid/native/$f"
    if ! pfx="$(_package_binutils "$rid")"; then
      # osx-*: GNU binutils cannot strip Mach-O; the macOS CI job's build goes in as built.
      cp "$src" "$dst"; echo "  $rid/$f: copied as built (no stripping tool for $rid here)"; continue
    fi
    if ! command -v "${pfx}strip" >/dev/null 2>&1 || ! command -v "${pfx}objcopy" >/dev/null 2>&1; then
      echo "  SKIPPED $rid: ${pfx}strip/${pfx}objcopy are not installed (Debian: eng/apt/cross.txt)"
      rm -rf "$PACKAGE_NATIVE_DIR/$rid"; return 1
    fi
    mkdir -p "$PACKAGE_SYMBOLS_DIR/$rid"
    "${pfx}objcopy" --only-keep-debug "$src" "$PACKAGE_SYMBOLS_DIR/$rid/$f.debug" &&
      "${pfx}strip" --strip-unneeded -o "$dst" "$src" &&
      ( cd "$PACKAGE_SYMBOLS_DIR/$rid" && "${pfx}objcopy" --add-gnu-debuglink="$f.debug" "$dst" ) \
      || { echo "  FAILED to strip $rid/$f"; return 1; }
    echo "  $rid/$f: $(stat -c %s "$src") bytes built, $(stat -c %s "$dst") stripped (debug info: artifacts/symbols/$rid/$f.debug)"
  done
}

# The package's repository URL: git remote 'origin' as an https URL, or nothing.
package_repository_url() {
  local url
  url="$(git -C "$ROOT" remote get-url origin 2>/dev/null)" || return 0
  # git@host:o/r.git, ssh://git@host/o/r.git, https://user:token@host/o/r.git -> https://host/o/r
  url="$(sed -E 's#^git@([^:]+):#https://\1/#; s#^ssh://([^@/]*@)?#https://#; s#^(https?://)[^/@]*@#\1#; s#\.git$##' <<<"$url")"
  case "$url" in http://*|https://*) echo "$url" ;; esac   # a local path has no web URL
}

# ./build.sh pack: FdSend.<version>.nupkg + .snupkg (lib/net8.0, lib/net10.0) with every
# RID built: the host's (native_build) and, after cross_build_all, the cross builds of this
# run (CROSS_BUILT_RIDS); otherwise every runtimes/<rid>/native there is (./build.sh test,
# whose cross_test has just rebuilt them). Each library is stripped into
# artifacts/native/runtimes/, which the package is built from (-p:FdSendNativeDir).
managed_pack() {
  local rids rid packed=() skipped=() url
  if [ -n "${CROSS_BUILT_RIDS+set}" ]; then rids="$(host_rid) $CROSS_BUILT_RIDS"
  else rids="$(cd "$ROOT/runtimes" && for d in */native; do compgen -G "$d/*" >/dev/null && echo "${d%/native}"; done)"; fi
  rm -rf "$ROOT/artifacts/native" "$PACKAGE_SYMBOLS_DIR" "$PACKAGE_DIR" && mkdir -p "$PACKAGE_NATIVE_DIR" "$PACKAGE_DIR"
  log "pack FdSend $PACKAGE_VERSION: stripping the native libraries"
  for rid in $rids; do
    if _package_stage_rid "$rid"; then packed+=("$rid"); else skipped+=("$rid"); fi
  done
  url="$(package_repository_url)"
  if [ -z "$url" ]; then
    echo "NOTE: this clone has no git remote 'origin' with a web URL: the package's RepositoryUrl is the placeholder in FdSend.csproj"
  fi
  echo "the package carries: ${packed[*]}${skipped[*]:+ (skipped: ${skipped[*]})}"
  dotnet pack "$ROOT/managed/FdSend/FdSend.csproj" -c Release -o "$PACKAGE_DIR" --nologo -v quiet \
    -p:ContinuousIntegrationBuild=true -p:FdSendNativeDir="$PACKAGE_NATIVE_DIR/" ${url:+-p:RepositoryUrl="$url"} || return 1
  PACKAGE_RIDS="${packed[*]}"
  # The handoff packages (managed only; net10.0), beside FdSend, which they depend on.
  local p
  for p in FdSend.Handoff FdSend.AspNetCore; do
    dotnet pack "$ROOT/managed/$p/$p.csproj" -c Release -o "$PACKAGE_DIR" --nologo -v quiet \
      -p:ContinuousIntegrationBuild=true ${url:+-p:RepositoryUrl="$url"} || return 1
  done
  ls -l "$PACKAGE_DIR"
}

# What the nupkg must hold, checked on the archive itself (eng/package_check.py): lib/net8.0
# and lib/net10.0, exactly the RIDs managed_pack staged, each stripped with a debug link and
# its debug file in artifacts/symbols, the RID list written into both assemblies equal to
# the package's, and the metadata (MIT, repository, readme, icon, release notes, tags).
package_check_contents() {
  python3 "$ROOT/eng/package_check.py" "$PACKAGE_DIR/FdSend.$PACKAGE_VERSION.nupkg" \
    "$PACKAGE_NATIVE_DIR" "$PACKAGE_SYMBOLS_DIR" || return 1
  [ -f "$PACKAGE_DIR/FdSend.$PACKAGE_VERSION.snupkg" ] || { echo "package check: no symbols package"; return 1; }
}

# Pack (unless this run packed already), then use the package from brand-new console
# projects, as a user would: a local feed, a fresh package cache (never a stale FdSend from
# ~/.nuget), a two-process program. Also: a net8.0 app builds against it (and runs, where a
# .NET 8 runtime is installed), and an app whose RID's native library is missing gets
# PlatformNotSupportedException naming its RID and the RIDs the package carries.
package_test() {
  [ -n "${PACKAGE_RIDS:-}" ] || managed_pack >/dev/null || return 1
  package_check_contents || return 1
  local tmp rid; tmp="$(mktemp -d /tmp/fdsend-package-test.XXXXXX)"; rid="$(host_rid)"
  (
    set -e
    cd "$tmp"
    export NUGET_PACKAGES="$tmp/packages"
    for tfm in net10.0 net8.0; do
      dotnet new console -o app-$tfm --framework net10.0 >/dev/null
      sed -i "s|<TargetFramework>net10.0</TargetFramework>|<TargetFramework>$tfm</TargetFramework>|" app-$tfm/app-$tfm.csproj
      cp "$ROOT/tests/FdSend.PackageTest/Program.cs" app-$tfm/Program.cs
      dotnet add app-$tfm package FdSend --version "$PACKAGE_VERSION" --source "$PACKAGE_DIR" >/dev/null
      dotnet build app-$tfm -c Release --nologo -v quiet -clp:NoSummary >/dev/null
      echo "a $tfm app builds against the package"
    done
    dotnet run --project app-net10.0 -c Release --no-build
    if dotnet --list-runtimes | grep -q '^Microsoft.NETCore.App 8\.'; then
      dotnet run --project app-net8.0 -c Release --no-build
    else
      echo "NOTE: no .NET 8 runtime here: the net8.0 app was built, not run"
    fi
    # The running RID's native library missing, as on a platform the package does not carry.
    out=app-net10.0/bin/Release/net10.0
    rm "$out/runtimes/$rid/native/"libfdsend.*
    msg="$(dotnet "$out/app-net10.0.dll" expect-no-native)"
    echo "$msg"
    for r in $rid $PACKAGE_RIDS; do
      grep -q -- "$r" <<<"$msg" || { echo "the message does not name $r"; exit 1; }
    done
  )
  local rc=$?
  rm -rf "$tmp"
  [ $rc -eq 0 ] && echo "1 passed, 0 failed: package test" || echo "0 passed, 1 failed: package test"
  return $rc
}
