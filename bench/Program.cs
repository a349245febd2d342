// SPDX-License-Identifier: MIT
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(FdSend.Benchmarks.SendReceive).Assembly).Run(args);
