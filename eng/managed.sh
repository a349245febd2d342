# The FdSend .NET assembly and its NUnit tests (sourced by build.sh).
#   managed_build   build managed/FdSend, tests/FdSend.TestPeer, tests/FdSend.Tests and
#                   tests/FdSend.Handoff.Tests (FdSend.Handoff) (Release)
#   managed_test    run the NUnit suite (run_nunit in common.sh): NUnit's totals, every skip
#                   with its reason, failures again at the end of ./build.sh test
#   handoff_test    the same for tests/FdSend.Handoff.Tests (FdSend.Handoff: real processes,
#                   tests/FdSend.TestPeer serve, handing a TCP server over; about 20 s)
#   managed_aspnetcore_test   tests/FdSend.AspNetCore.Tests: samples/HandoffWeb handed from
#                   process to process under load (real Kestrel on 127.0.0.1; ~30 s)
# The native library must be built first (native_build, which build.sh runs before these):
# the projects copy runtimes/<rid>/native/* into their output as a NuGet consumer gets it.
# SPDX-License-Identifier: MIT

MANAGED_TESTS_PROJECT="$ROOT/tests/FdSend.Tests/FdSend.Tests.csproj"
MANAGED_TEST_RESULTS="$ROOT/build/managed-test-results"
HANDOFF_TESTS_PROJECT="$ROOT/tests/FdSend.Handoff.Tests/FdSend.Handoff.Tests.csproj"
HANDOFF_TEST_RESULTS="$ROOT/build/handoff-test-results"
ASPNETCORE_TESTS_PROJECT="$ROOT/tests/FdSend.AspNetCore.Tests/FdSend.AspNetCore.Tests.csproj"

managed_build() {
  if ! compgen -G "$ROOT/runtimes/*/native/*" >/dev/null; then
    echo "managed_build: no native library under runtimes/*/native/: run native_build (./build.sh) first"
    return 1
  fi
  log "managed: FdSend and its tests (Release)"
  dotnet build "$ROOT/managed/FdSend/FdSend.csproj" -c Release --nologo -v quiet -clp:NoSummary &&
    dotnet build "$MANAGED_TESTS_PROJECT" -c Release --nologo -v quiet -clp:NoSummary &&
    dotnet build "$HANDOFF_TESTS_PROJECT" -c Release --nologo -v quiet -clp:NoSummary
}

managed_test() {
  run_nunit "$MANAGED_TESTS_PROJECT" "$MANAGED_TEST_RESULTS" managed || return 1
  # The async engine's opt-in mode (a socket's registration kept, edge-triggered): the async
  # and channel tests again, with KeptRegistrationTests, which the first run skips.
  FDSEND_ASYNC_KEEP_REGISTRATION=1 run_nunit "$MANAGED_TESTS_PROJECT" "$MANAGED_TEST_RESULTS-kept" \
    managed-kept "FullyQualifiedName~FdSend.Tests.Async|FullyQualifiedName~FdSend.Tests.Channel"
}

handoff_test() {
  run_nunit "$HANDOFF_TESTS_PROJECT" "$HANDOFF_TEST_RESULTS" handoff
}

managed_aspnetcore_test() {
  run_nunit "$ASPNETCORE_TESTS_PROJECT" "$ROOT/build/aspnetcore-test-results" aspnetcore
}

# ./build.sh demo
managed_demo() {
  log "demo"
  dotnet build "$ROOT/managed/FdSend.Demo/FdSend.Demo.csproj" -c Release --nologo -v quiet
  dotnet "$ROOT/managed/FdSend.Demo/bin/Release/net10.0/FdSend.Demo.dll" "$@"
}
