# Benchmarks: the comparison programs and BenchmarkDotNet project in bench/.
#   bench_run   (./build.sh bench [compare.py options]): build every comparison program and
#               the BenchmarkDotNet project, run the interleaved comparison, write RESULTS.md;
#               then the handoff benchmark (handoff/HandoffBench), which writes HANDOFF-RESULTS.md
#   bench_test  (part of ./build.sh test): build the comparison programs and run each
#               workload of each program once, briefly; checks that each runs and reports a
#               sane number (never a timing judgement)
# Both are called after native_build (and managed_build, when it exists).
# SPDX-License-Identifier: MIT

BENCH_DIR() { echo "$ROOT/bench"; }
BENCH_BIN_DIR() { echo "$ROOT/build/bench"; }

# The C programs (raw sendmsg/recvmsg, libfdsend with its default flags and with
# FDSEND_UNIX_SOCKET, the message channel) are built by CMake with the library
# (bench/compare/c/CMakeLists.txt); they join the other implementations in BENCH_BIN_DIR.
_bench_build_c() {
  local p built="$(NATIVE_BUILD_DIR)/bench/compare/c"
  mkdir -p "$(BENCH_BIN_DIR)"
  for p in bench_raw bench_lib bench_lib_unix bench_msg; do
    [ -x "$built/$p" ] || { echo "ERROR: $built/$p was not built (CMake: bench/compare/c)" >&2; return 1; }
    cp -f "$built/$p" "$(BENCH_BIN_DIR)/$p"
  done
}

# The Go peer row: net.UnixConn on Go's netpoller, standard library only, built offline
# (GOFLAGS=-mod=mod, GOPROXY=off: no module is fetched). Skipped, visibly, without Go.
_bench_build_go() {
  local bin
  bin="$(BENCH_BIN_DIR)"
  mkdir -p "$bin"
  if ! command -v go >/dev/null; then
    skip "Go is not installed (Debian: golang-go): no Go comparison row"
    rm -f "$bin/bench_go" "$bin/bench_go.version"
    return 0
  fi
  (cd "$(BENCH_DIR)/compare/go" && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
    go build -o "$bin/bench_go" .) || return 1
  go env GOVERSION >"$bin/bench_go.version"
}

_bench_dotnet_build() {
  local proj="$1" out
  out="$(BENCH_BIN_DIR)/dotnet-build-$(basename "$proj" .csproj).log"
  if ! dotnet build -c Release -nologo -v:q "$proj" >"$out" 2>&1; then
    cat "$out"
    echo "dotnet build $proj failed" >&2
    return 1
  fi
}

# The .NET comparison programs (Release, default TieredPGO): Mono.Posix, the .NET floor
# (PInvokeFloor: libc through P/Invoke, no FdSend), FdSend. FdSendCompare and the
# BenchmarkDotNet project need managed/FdSend; without it they are skipped, visibly.
_bench_build_dotnet() {
  local with_bdn="${1:-}" d
  d="$(BENCH_DIR)"
  mkdir -p "$(BENCH_BIN_DIR)"
  if ! command -v dotnet >/dev/null; then
    skip "the .NET SDK is not installed: no .NET comparison programs"
    return 0
  fi
  _bench_dotnet_build "$d/compare/dotnet/MonoPosixCompare/MonoPosixCompare.csproj" || return 1
  _bench_dotnet_build "$d/compare/dotnet/PInvokeFloor/PInvokeFloor.csproj" || return 1
  if [ -f "$ROOT/managed/FdSend/FdSend.csproj" ]; then
    _bench_dotnet_build "$d/compare/dotnet/FdSendCompare/FdSendCompare.csproj" || return 1
    if [ -n "$with_bdn" ]; then
      _bench_dotnet_build "$d/FdSend.Benchmarks.csproj" || return 1
    fi
  else
    skip "managed/FdSend/FdSend.csproj does not exist yet: FdSend's comparison rows and the BenchmarkDotNet project are not built"
  fi
}

bench_run() {
  log "benchmarks: building the comparison programs"
  _bench_build_c || return 1
  _bench_build_go || return 1
  _bench_build_dotnet with-bdn || return 1
  if ! command -v python3 >/dev/null; then
    echo "bench: python3 is needed to run bench/compare.py" >&2
    return 1
  fi
  log "benchmarks: interleaved comparison (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  python3 "$(BENCH_DIR)/compare.py" --bin-dir "$(BENCH_BIN_DIR)" "$@" || return 1
  # The same workloads with the two processes placed by the scheduler (issue 14 asks for
  # both): cross-CPU wake-ups dominate there, so 3 rounds, into a file of its own.
  log "benchmarks: unpinned comparison (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  python3 "$(BENCH_DIR)/compare.py" --bin-dir "$(BENCH_BIN_DIR)" --pin none --rounds 3 \
    --output "$(BENCH_DIR)/RESULTS-unpinned.md" || return 1
  bench_handoff --write "$(BENCH_DIR)/HANDOFF-RESULTS.md"
}

# The handoff benchmark (README.md: "Handoff"): handoff latency with 1, 100 and 1,000
# listeners, and what a client of samples/HandoffWeb sees during handoffs.
bench_handoff() {
  local proj="$(BENCH_DIR)/handoff/HandoffBench/HandoffBench.csproj"
  mkdir -p "$(BENCH_BIN_DIR)"
  _bench_dotnet_build "$proj" || return 1
  log "benchmarks: handoff (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  dotnet "$(BENCH_DIR)/handoff/HandoffBench/bin/Release/net10.0/HandoffBench.dll" "$@"
}

bench_test() {
  if ! command -v python3 >/dev/null; then
    skip "python3 is not installed: the benchmark smoke test needs it"
    return 0
  fi
  _bench_build_c || return 1
  _bench_build_go || return 1
  _bench_build_dotnet || return 1
  python3 "$(BENCH_DIR)/compare.py" --bin-dir "$(BENCH_BIN_DIR)" --smoke || return 1
  # The handoff benchmark runs, briefly (no timing judgement): two handoffs of 10 listeners.
  if bench_handoff --listeners 10 --rounds 2 --no-kestrel >"$(BENCH_BIN_DIR)/handoff-smoke.log" 2>&1; then
    echo "1 passed, 0 failed: handoff benchmark smoke run"
  else
    cat "$(BENCH_BIN_DIR)/handoff-smoke.log"; echo "0 passed, 1 failed: handoff benchmark smoke run"; return 1
  fi
}
