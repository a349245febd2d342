// SPDX-License-Identifier: MIT
// FdSend.AspNetCore runs on Unix (Linux, macOS): without this, CA1416 warns at each use.
[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
