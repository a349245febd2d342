<#
.SYNOPSIS
  FdSend build entry point on Windows (the verbs of build.sh that apply to Windows).
.EXAMPLE
  ./build.ps1                # build native (CMake) + managed, and pack
  ./build.ps1 test           # build everything and run every Windows test step ($TestSteps)
  ./build.ps1 test ctest     # build everything and run only the named steps, in that order
  ./build.ps1 steps          # list the Windows test steps
  ./build.ps1 demo           # the demo is Unix-only (it passes Unix fds between processes)
  ./build.ps1 pack
#>
param(
  [ValidateSet('build', 'all', 'test', 'steps', 'demo', 'pack')]
  [string]$Command = 'all',
  # ./build.ps1 test <step> [<step>...]: only these test steps
  [Parameter(ValueFromRemainingArguments = $true)]
  [string[]]$Steps = @()
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
$Config = 'Release'

# The library as the package ships it: the static CRT (the DLL imports only system DLLs).
# Only the Windows targets: the POSIX test areas (tests/native, ...) do not build with MSVC.
function Build-All {
  $platform = if ($Rid -eq 'win-arm64') { 'ARM64' } else { 'x64' }
  Invoke-Checked "configure native ($Rid)" {
    cmake -S $Root -B $NativeDir -A $platform -DCMAKE_MSVC_RUNTIME_LIBRARY=MultiThreaded "-DFDSEND_RUNTIMES_DIR=$RuntimesDir"
  }
  Invoke-Checked "build native" {
    cmake --build $NativeDir --config $Config --parallel --target fdsend fdsend_static test_win
  }
  Invoke-Checked "build managed" { dotnet build (Join-Path $Root 'managed/FdSend/FdSend.csproj') -c Release }
}

function Invoke-Pack {
  $out = Join-Path $Root 'artifacts/packages'
  if (Test-Path $out) { Remove-Item -Recurse -Force $out }
  Invoke-Checked 'pack' { dotnet pack (Join-Path $Root 'managed/FdSend/FdSend.csproj') -c Release -o $out }
}

# ---- Test steps ------------------------------------------------------------------------
# The test steps of ./build.ps1 test, in the order it runs them (name -> function), as
# TEST_STEPS in build.sh; the Windows ones only. The NUnit suite is written for Unix domain
# sockets and /proc: on Windows the managed API is tested by FdSend.WinTests (two processes
# over TCP loopback, with test_win.exe as the C peer), which ./build.sh test also runs
# under wine (its cross step).
function Test-Ctest {
  # The C suite for Windows (tests/native-win).
  Invoke-Checked 'CTest (tests/native-win)' { ctest --test-dir $NativeDir -C $Config -L win --output-on-failure }
}

function Test-WinTests {
  $cPeer = Get-ChildItem (Join-Path $NativeDir 'tests/native-win') -Recurse -Filter test_win.exe | Select-Object -First 1
  Invoke-Checked 'FdSend.WinTests' {
    $peerArgs = if ($cPeer) { @('--c-peer', $cPeer.FullName) } else { @() }
    dotnet run --project (Join-Path $Root 'tests/FdSend.WinTests/FdSend.WinTests.csproj') -c Release -- @peerArgs
  }
}

$TestSteps = [ordered]@{
  'ctest'    = 'Test-Ctest'      # tests/native-win (CTest, label win)
  'wintests' = 'Test-WinTests'   # tests/FdSend.WinTests with test_win.exe as the C peer
}

switch ($Command) {
  { $_ -in 'build', 'all' } { Build-All; Invoke-Pack }
  'pack' { Build-All; Invoke-Pack }
  'steps' {
    foreach ($name in $TestSteps.Keys) { Write-Host ('{0,-20} {1}' -f $name, $TestSteps[$name]) }
  }
  'test' {
    $selected = if ($Steps.Count -eq 0) { @($TestSteps.Keys) } else { $Steps }
    foreach ($name in $selected) {
      if (-not $TestSteps.Contains($name)) {
        Write-Host "unknown test step: $name (./build.ps1 steps lists them)"
        exit 2
      }
    }
    Build-All
    # Every selected step runs even after one fails; the end names the failed ones.
    $failures = @()
    foreach ($name in $selected) {
      Write-Host "`n==> test: $name"
      try { & $TestSteps[$name] } catch { Write-Host "$_"; $failures += $name }
    }
    if ($failures.Count -gt 0) {
      Write-Host "`nFAILED test steps: $($failures -join ' ')"
      exit 1
    }
    Write-Host "`nAll test steps passed."
  }
  'demo' {
    Write-Host 'The demo passes Unix file descriptors between processes: run ./build.sh demo on Linux or macOS.'
    exit 2
  }
}
