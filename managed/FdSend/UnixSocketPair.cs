// SPDX-License-Identifier: MIT
using System.Net.Sockets;

namespace FdSend;

/// <summary>
/// A connected pair of Unix domain sockets (socketpair(2)), which .NET itself does not
/// offer: the simplest way to get two ends that can pass descriptors, within a process or,
/// with <see cref="FdChildProcess"/>, to a child process.
/// </summary>
public static class UnixSocketPair
{
    /// <summary>
    /// Creates two connected Unix domain sockets of <paramref name="socketType"/>. Both are
    /// close-on-exec (a child process does not inherit them unless you start it with
    /// <see cref="FdChildProcess.Start"/>), blocking, and owned by the caller: dispose both.
    /// </summary>
    /// <param name="socketType"><see cref="SocketType.Stream"/> (the default),
    /// <see cref="SocketType.Seqpacket"/> or <see cref="SocketType.Dgram"/>.</param>
    /// <returns>The two ends; what one sends, the other receives.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="socketType"/> is another type.</exception>
    /// <exception cref="PlatformNotSupportedException">The OS has no Unix socket pair of that
    /// type (macOS has no Seqpacket; Windows has no socketpair).</exception>
    /// <exception cref="SocketException">The OS refused, e.g. <see cref="SocketError.TooManyOpenSockets"/>.</exception>
    public static (Socket First, Socket Second) Create(SocketType socketType = SocketType.Stream) =>
        FdSendCore.CreateSocketPair(socketType);
}
