// SPDX-License-Identifier: MIT

// Every stackalloc buffer in this assembly (descriptor arrays of up to 253 entries, 2 KiB)
// is written before it is read: skip the zeroing the runtime would otherwise do per call.
[module: System.Runtime.CompilerServices.SkipLocalsInit]
