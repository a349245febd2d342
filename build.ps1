<#
.SYNOPSIS
  FdSend build entry point on Windows (the same verbs as build.sh).
.EXAMPLE
  ./build.ps1            # build native (CMake) + managed, and pack
  ./build.ps1 test       # build everything; CTest (tests/native-win) and FdSend.WinTests
  ./build.ps1 demo       # the demo is Unix-only (it passes Unix fds between processes)
  ./build.ps1 pack
#>
param(
  [ValidateSet('build', 'all', 'test', 'demo', 'pack')]
  [string]$Command = 'all'
)
$ErrorActionPreference = 'Stop'
$Root = $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

function Get-HostRid {
  $arch = switch ([System.Runtime.InteropServices.RuntimeInformation]::OSArchitecture) {
    'X64' { 'x64' } 'Arm64' { 'arm64' } default { throw "unsupported architecture $_" }
  }
  "win-$arch"
}

function Invoke-Checked([string]$What, [scriptblock]$Block) {
  Write-Host "`n==> $What"
  & $Block
  if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

$Rid = Get-HostRid
$NativeDir = Join-Path $Root "build/native-$Rid"
$RuntimesDir = Join-Path $Root "runtimes/$Rid/native"

function Build-All {
  Invoke-Checked "configure native ($Rid)" {
    cmake -S $Root -B $NativeDir "-DFDSEND_RUNTIMES_DIR=$RuntimesDir"
  }
  Invoke-Checked "build native" { cmake --build $NativeDir --config RelWithDebInfo --parallel }
  Invoke-Checked "build managed" { dotnet build (Join-Path $Root 'managed/FdSend/FdSend.csproj') -c Release }
}

function Invoke-Pack {
  $out = Join-Path $Root 'artifacts/packages'
  if (Test-Path $out) { Remove-Item -Recurse -Force $out }
  Invoke-Checked 'pack' { dotnet pack (Join-Path $Root 'managed/FdSend/FdSend.csproj') -c Release -o $out }
}

switch ($Command) {
  { $_ -in 'build', 'all' } { Build-All; Invoke-Pack }
  'pack' { Build-All; Invoke-Pack }
  'test' {
    Build-All
    # The C suite for Windows (tests/native-win) and the managed tests that apply here.
    Invoke-Checked 'test: native (CTest)' { ctest --test-dir $NativeDir -C RelWithDebInfo --output-on-failure }
    # The NUnit suite is written for Unix domain sockets and /proc: on Windows the managed
    # API is tested by FdSend.WinTests (two processes over TCP loopback, with test_win.exe
    # as the C peer), the same program ./build.sh test runs under wine.
    $cPeer = Get-ChildItem (Join-Path $NativeDir 'tests/native-win') -Recurse -Filter test_win.exe | Select-Object -First 1
    Invoke-Checked 'test: managed (FdSend.WinTests)' {
      $peerArgs = if ($cPeer) { @('--c-peer', $cPeer.FullName) } else { @() }
      dotnet run --project (Join-Path $Root 'tests/FdSend.WinTests/FdSend.WinTests.csproj') -c Release -- @peerArgs
    }
    Write-Host "`nAll test steps passed."
  }
  'demo' {
    Write-Host 'The demo passes Unix file descriptors between processes: run ./build.sh demo on Linux or macOS.'
    exit 2
  }
}
