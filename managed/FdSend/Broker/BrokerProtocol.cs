// SPDX-License-Identifier: MIT
using Microsoft.Win32.SafeHandles;

namespace FdSend;

/// <summary>
/// The file broker's protocol as <see cref="FileBroker"/> and <see cref="FileBrokerClient"/>
/// use it: every rule is libfdsend's (fdsend_broker_check_request, fdsend_broker_reply_encode,
/// fdsend_broker_reply_decode, which fdsend_broker_serve_one and fdsend_broker_open use too);
/// here they are called and their verdicts turned into statuses and exceptions.
/// </summary>
internal static class BrokerProtocol
{
    /// <summary>The status to reply to a request of <paramref name="length"/> bytes (as its
    /// sender gave it) whose payload is <paramref name="path"/> (empty when the payload was
    /// not kept) and which came with <paramref name="fdCount"/> descriptors.</summary>
    internal static unsafe int CheckRequest(ReadOnlySpan<byte> path, long length, int fdCount)
    {
        fixed (byte* p = path)
            return Interop.BrokerCheckRequest(p, (ulong)length, fdCount);
    }

    /// <summary>Encodes the reply to a request into <paramref name="reply"/>
    /// (<see cref="Interop.BrokerReplySize"/> bytes). A negative status that is not one of the
    /// broker refusals (fdsend_broker_reply_encode's list) goes as FDSEND_EOTHER.</summary>
    /// <returns>How many descriptors the reply carries: 1 (the file) for status 0, else 0.</returns>
    internal static unsafe int EncodeReply(int status, Span<byte> reply)
    {
        int fdCount;
        int rc;
        fixed (byte* p = reply)
            rc = Interop.BrokerReplyEncode(status, p, (nuint)reply.Length, &fdCount);
        if (rc != 0) // a positive status or a short buffer: a bug on this side, never a peer's doing
            throw new InvalidOperationException($"A broker cannot reply with status {status}.");
        return fdCount;
    }

    /// <summary>Decodes and checks a reply of <paramref name="length"/> bytes (as its sender
    /// gave it) whose payload is <paramref name="payload"/>; <paramref name="fds"/> are its
    /// descriptors, owned by this call from now on (-1 entries: already closed).</summary>
    /// <returns>The file (read-only, regular), owned by the caller.</returns>
    /// <exception cref="FileBrokerException">The broker refused (no descriptor came).</exception>
    /// <exception cref="FdPolicyViolationException">The reply's descriptors were not one
    /// read-only regular file on success, none on a refusal (all closed).</exception>
    /// <exception cref="FdChannelProtocolException">The reply's payload was not a status a
    /// broker may send (its descriptors closed).</exception>
    internal static unsafe SafeFileHandle DecodeReply(string path, ReadOnlySpan<byte> payload, long length, Span<nint> fds)
    {
        int status;
        nint file;
        Interop.ViolationNative v;
        int rc;
        fixed (byte* p = payload)
        fixed (nint* f = fds)
        {
            rc = Interop.BrokerReplyDecode(p, (ulong)length, f, fds.Length, &status, &file, &v);
            if (rc != 0) // unusable arguments (never, with a span): nothing was closed
                Interop.CloseAll(f, fds.Length);
        }
        if (rc != 0)
            throw new InvalidOperationException($"fdsend_broker_reply_decode: {Interop.StrError(rc)}.");
        if (status == 0)
            return new SafeFileHandle(file, ownsHandle: true);
        if ((Interop.Status)status != Interop.Status.EPROTO)
            throw new FileBrokerException(FileBrokerException.FromStatus(status), path,
                $"The broker refused '{path}': {Interop.StrError(status)}.");
        // The verdict reads as a receive policy's: the descriptors' reason, or (reason 0) the
        // payload's, in its message.
        FdPolicyViolationException verdict = FdPolicyViolationException.FromNative(&v, fds.Length, (int)Math.Min(length, int.MaxValue));
        if (v.Reason != 0)
            throw verdict;
        throw new FdChannelProtocolException($"The broker's reply to '{path}' broke the protocol: {verdict.Message}.");
    }
}
