// SPDX-License-Identifier: MIT
// FdSend.Handoff is Unix-only (UnsupportedOSPlatform("windows")); this package is not
// annotated so that a cross-platform ASP.NET Core app calling UseFdSendHandoff gets no CA1416
// warning at each use: UseFdSendHandoff checks the platform at run time instead
// (PlatformNotSupportedException on Windows), and the code here only runs after that check.
[module: System.Diagnostics.CodeAnalysis.SuppressMessage("Interoperability", "CA1416:Validate platform compatibility",
    Justification = "UseFdSendHandoff throws PlatformNotSupportedException on Windows before anything here runs.")]
