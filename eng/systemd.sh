# systemd socket activation and sd_notify for FdSend.Handoff (sourced by build.sh).
#   systemd_test   build and run tests/FdSend.Systemd.Tests (run_nunit in common.sh); the
#                  socket activation tests skip, saying so, without systemd-socket-activate
#                  (eng/apt/systemd.txt)
# Its own file rather than lines in eng/managed.sh, which other work edits at the same time.
# SPDX-License-Identifier: MIT

SYSTEMD_TESTS_PROJECT="$ROOT/tests/FdSend.Systemd.Tests/FdSend.Systemd.Tests.csproj"

systemd_test() {
  command -v systemd-socket-activate >/dev/null ||
    skip "systemd-socket-activate not found (apt-get install systemd): the socket activation tests will be skipped"
  dotnet build "$SYSTEMD_TESTS_PROJECT" -c Release --nologo -v quiet -clp:NoSummary &&
    run_nunit "$SYSTEMD_TESTS_PROJECT" "$ROOT/build/systemd-test-results" systemd
}
