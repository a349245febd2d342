// SPDX-License-Identifier: MIT
// The test peer is Unix only (Unix sockets, descriptor tables, FdSend.Handoff's file modes).
[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
