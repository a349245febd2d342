# Shared helpers for build.sh and the eng/*.sh scripts. Source it; do not run it.
# SPDX-License-Identifier: MIT
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# The .NET runtime identifier of this machine (linux-x64, linux-musl-arm64, osx-arm64...).
host_rid() {
  local os arch
  case "$(uname -s)" in
    Linux) if ldd --version 2>&1 | grep -qi musl; then os=linux-musl; else os=linux; fi ;;
    Darwin) os=osx ;;
    FreeBSD) os=freebsd ;;
    SunOS) os=illumos ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;;
  esac
  case "$(uname -m)" in
    x86_64|amd64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
  esac
  echo "$os-$arch"
}

log() { printf '\n==> %s\n' "$*"; }
skip() { printf 'SKIPPED: %s\n' "$*"; }

# Configure, build and copy the native library for the host into runtimes/<rid>/native.
# Extra arguments go to cmake's configure step.
native_build() {
  local dir="$ROOT/build/native-$(host_rid)"
  mkdir -p "$ROOT/build"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFDSEND_RUNTIMES_DIR="$ROOT/runtimes/$(host_rid)/native" "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j"$(nproc 2>/dev/null || echo 2)"
}
NATIVE_BUILD_DIR() { echo "$ROOT/build/native-$(host_rid)"; }
