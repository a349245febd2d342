// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>
/// The process at the other end of a connected Unix domain socket, as the kernel recorded it
/// when the connection was made (connect/accept or socketpair): not forgeable by the peer.
/// Use it to decide whether to trust what a peer sends.
/// </summary>
/// <param name="Pid">The peer's process id, or <see langword="null"/> where the OS does not
/// report it (getpeereid-only systems) or the peer is in a process-id namespace this process
/// cannot see (Linux containers).</param>
/// <param name="Uid">The peer's effective user id.</param>
/// <param name="Gid">The peer's effective (primary) group id;
/// <see cref="uint.MaxValue"/> if the OS reported none.</param>
public readonly record struct PeerCredentials(int? Pid, uint Uid, uint Gid);
