// SPDX-License-Identifier: MIT
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>The file broker's protocol (native/src/broker.c, its one codec): the checks of a
/// request, the reply's encoding, and the reply's decoding with its checks. Pure: no I/O.</summary>
internal static unsafe partial class Interop
{
    /// <summary>FDSEND_BROKER_MAX_PATH: the longest path a request carries, in bytes.</summary>
    internal const int BrokerMaxPath = 4096;

    /// <summary>FDSEND_BROKER_REPLY_SIZE: a reply's payload, the little-endian int32 status.</summary>
    internal const int BrokerReplySize = 4;

    /// <summary>fdsend_broker_check_request: the status to reply to a request of
    /// <paramref name="length"/> bytes (as its sender gave it; <paramref name="path"/> is not
    /// read, and may be null, when that is over <see cref="BrokerMaxPath"/>) that came with
    /// <paramref name="fdCount"/> descriptors. Closes nothing.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_broker_check_request")]
    internal static partial int BrokerCheckRequest(byte* path, ulong length, int fdCount);

    /// <summary>fdsend_broker_reply_encode: <paramref name="status"/> into
    /// reply[0 .. <see cref="BrokerReplySize"/>), and how many descriptors the reply carries
    /// (1, the file, for FDSEND_OK; else 0). FDSEND_EINVAL for a status no reply may carry.</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_broker_reply_encode")]
    internal static partial int BrokerReplyEncode(int status, byte* reply, nuint capacity, int* fdCount);

    /// <summary>fdsend_broker_reply_decode: the status of a reply of <paramref name="length"/>
    /// bytes (as its sender gave it; <paramref name="reply"/> is read only when that is
    /// <see cref="BrokerReplySize"/>) with the descriptors fds[0 .. fdCount), which it owns
    /// from now on (-1 entries: already closed, counted). *status FDSEND_OK: *file is fds[0],
    /// the caller's; a refusal: no descriptor came; FDSEND_EPROTO: every descriptor closed,
    /// *violation says why (reason 0 and a message when the payload was wrong).</summary>
    [LibraryImport(Libraries.FdSend, EntryPoint = "fdsend_broker_reply_decode")]
    internal static partial int BrokerReplyDecode(byte* reply, ulong length, nint* fds, int fdCount,
                                                  int* status, nint* file, ViolationNative* violation);
}
