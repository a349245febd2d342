// SPDX-License-Identifier: MIT
// Raw frames for the channel fixtures: written with the plain FdSend calls, as a peer that
// implements docs/wire-format.md by hand (or breaks it on purpose) would.
using System.Buffers.Binary;

namespace FdSend.Tests.Channel;

public static class Frames
{
    /// <summary>A frame's bytes: the 8-byte header (fields as given, valid or not) and the payload.</summary>
    public static byte[] Make(ReadOnlySpan<byte> payload, int fdCount, byte version = 1, byte flags = 0, uint? length = null)
    {
        var frame = new byte[8 + payload.Length];
        frame[0] = version;
        frame[1] = flags;
        BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(2), (ushort)fdCount);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), length ?? (uint)payload.Length);
        payload.CopyTo(frame.AsSpan(8));
        return frame;
    }

    /// <summary>Writes bytes [from, to) of a frame, attaching <paramref name="fds"/> to byte
    /// <paramref name="fdByte"/> (one sendmsg for that byte) and sending the others one at a
    /// time with a pause, so that the receiver sees the frame in many pieces.</summary>
    /// <remarks>Before the byte that carries descriptors, waits until the reader has consumed
    /// everything sent so far (<paramref name="reader"/>.Available == 0): Linux hands queued
    /// bytes and a later descriptor-carrying byte to one read, which would make late
    /// descriptors look like the first byte's.</remarks>
    public static async Task WriteByteByByte(Socket socket, byte[] frame, Descriptor[] fds, int fdByte = 0,
                                             int from = 0, int? to = null, int pauseEvery = 1, Socket? reader = null)
    {
        int end = to ?? frame.Length;
        for (int i = from; i < end; i++)
        {
            if (i == fdByte && fds.Length > 0 && reader is not null)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                while (reader.Available > 0 && sw.ElapsedMilliseconds < 10_000)
                    await Task.Delay(1);
            }
            if (i == fdByte && fds.Length > 0)
                socket.SendFds(frame.AsSpan(i, 1), fds);
            else
                socket.SendFds(frame.AsSpan(i, 1), ReadOnlySpan<Descriptor>.Empty);
            if ((i - from) % pauseEvery == 0)
                await Task.Delay(1);
        }
    }
}
