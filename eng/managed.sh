# The FdSend .NET assembly and its NUnit tests (sourced by build.sh).
#   managed_build   build managed/FdSend, tests/FdSend.TestPeer and tests/FdSend.Tests (Release)
#   managed_test    run the NUnit suite; prints NUnit's totals and every skip with its reason
# The native library must be built first (native_build, which build.sh runs before these):
# the projects copy runtimes/<rid>/native/* into their output as a NuGet consumer gets it.
# SPDX-License-Identifier: MIT

MANAGED_TESTS_PROJECT="$ROOT/tests/FdSend.Tests/FdSend.Tests.csproj"
MANAGED_TEST_RESULTS="$ROOT/build/managed-test-results"

managed_build() {
  if ! compgen -G "$ROOT/runtimes/*/native/*" >/dev/null; then
    echo "managed_build: no native library under runtimes/*/native/: run native_build (./build.sh) first"
    return 1
  fi
  log "managed: FdSend and its tests (Release)"
  dotnet build "$ROOT/managed/FdSend/FdSend.csproj" -c Release --nologo -v quiet -clp:NoSummary &&
    dotnet build "$MANAGED_TESTS_PROJECT" -c Release --nologo -v quiet -clp:NoSummary
}

managed_test() {
  rm -rf "$MANAGED_TEST_RESULTS"
  local rc=0
  # --blame-hang-timeout: a hung test fails the run (with a dump) instead of stalling CI.
  dotnet test "$MANAGED_TESTS_PROJECT" -c Release --nologo \
    --results-directory "$MANAGED_TEST_RESULTS" --logger "trx;LogFileName=managed.trx" \
    --blame-hang-timeout 120s || rc=$?
  # Skipped tests with their reasons (NUnit's Assert.Ignore messages start with "SKIPPED:").
  python3 - "$MANAGED_TEST_RESULTS/managed.trx" <<'PY' || true
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    sys.exit(0)
for r in root.iterfind(".//t:UnitTestResult", ns):
    if r.get("outcome") == "NotExecuted":
        msg = r.find(".//t:Message", ns)
        text = (msg.text or "").strip() if msg is not None else ""
        if not text.startswith("SKIPPED"):
            text = "SKIPPED: " + text
        print(f"{text} [{r.get('testName')}]")
PY
  return $rc
}
