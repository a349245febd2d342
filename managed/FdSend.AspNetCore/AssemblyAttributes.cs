// SPDX-License-Identifier: MIT
// The handoff runs over Unix domain sockets with Unix file modes on its control socket.
[assembly: System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
