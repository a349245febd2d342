// SPDX-License-Identifier: MIT
// FdSend.Handoff is Unix only (Unix sockets and file modes), and so are its tests.
[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
