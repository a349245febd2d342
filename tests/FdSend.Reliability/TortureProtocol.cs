// SPDX-License-Identifier: MIT
// The torture protocol of tests/torture/torture.c, in C#: the same generator, the same
// schedule, the same bytes, so that a .NET process can be either side of a torture phase
// against the C program (torture --peer send|recv). Keep in step with torture.c.
using System.Buffers.Binary;

namespace FdSend.Reliability;

/// <summary>xorshift64* seeded through splitmix64, as rel_rng in relutil.h.</summary>
internal struct Rng
{
    private ulong _s;

    public Rng(ulong seed)
    {
        ulong z = seed + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        _s = z != 0 ? z : 0x1234567UL;
    }

    public ulong Next()
    {
        ulong x = _s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        _s = x;
        return x * 0x2545F4914F6CDD1DUL;
    }

    public uint Below(uint n) => (uint)(((Next() >> 32) * n) >> 32);
}

/// <summary>One message of the schedule (struct sched in torture.c).</summary>
internal sealed class Sched
{
    public bool Bare;
    public int NFds;
    public readonly byte[] Idx = new byte[Torture.MaxFds];
    public uint BodyLen;
    public int FdCap;
    public uint DataCap;
    public bool RecvLen0;
}

internal static class Torture
{
    public const int MaxFds = 253;
    public const int PoolFiles = 24, PoolPipes = 12, PoolSockPairs = 8;
    public const int PoolSize = PoolFiles + 2 * PoolPipes + 2 * PoolSockPairs;
    public const int HdrLen = 16, MaxBody = 65536, MaxMsg = HdrLen + MaxBody;
    public const uint MagicPool = 0xFD5E0000u, MagicMsg = 0xFD5E0001u;
    public const int IdentLen = 24, RecvFdRoom = 300;
    public const int PoolMsgLen = HdrLen + PoolSize * IdentLen;

    public static ulong MsgSeed(ulong seed, uint seq, ulong salt) =>
        unchecked(seed * 0x100000001B3UL + seq * 0x9E3779B97F4A7C15UL + salt);

    public static void MakeSched(ulong seed, uint seq, Sched s)
    {
        var r = new Rng(MsgSeed(seed, seq, 1));
        s.Bare = r.Below(100) < 6;
        uint t = r.Below(100);
        if (s.Bare) s.NFds = 1 + (int)r.Below(8);
        else if (t < 35) s.NFds = 0;
        else if (t < 75) s.NFds = 1 + (int)r.Below(4);
        else if (t < 93) s.NFds = 5 + (int)r.Below(28);
        else if (t < 98) s.NFds = 33 + (int)r.Below(MaxFds - 33);
        else s.NFds = MaxFds;
        for (int i = 0; i < s.NFds; i++)
            s.Idx[i] = (byte)r.Below(PoolSize);
        t = r.Below(100);
        if (s.Bare) s.BodyLen = 0;
        else if (t < 60) s.BodyLen = r.Below(65);
        else if (t < 85) s.BodyLen = r.Below(1025);
        else if (t < 97) s.BodyLen = r.Below(8193);
        else s.BodyLen = r.Below(MaxBody + 1);
        t = r.Below(100);
        if (s.NFds > 0 && t < 25) s.FdCap = (int)r.Below((uint)s.NFds);
        else if (t < 60) s.FdCap = s.NFds;
        else s.FdCap = RecvFdRoom;
        uint msglen = s.Bare ? 0 : HdrLen + s.BodyLen;
        t = r.Below(100);
        s.DataCap = t < 20 && msglen > 0 ? r.Below(msglen) : msglen + r.Below(64);
        s.RecvLen0 = s.Bare && r.Below(2) != 0;
    }

    /// <summary>Bytes on the wire (raw mode): the one-byte carrier for a bare message on a
    /// stream, nothing for one on a seqpacket socket.</summary>
    public static int WireLen(bool stream, Sched s) => s.Bare ? (stream ? 1 : 0) : HdrLen + (int)s.BodyLen;

    /// <summary>Payload length of message s as a channel frame (a bare message is an empty
    /// frame with descriptors).</summary>
    public static int FrameLen(Sched s) => s.Bare ? 0 : HdrLen + (int)s.BodyLen;

    public static void MakeBytes(ulong seed, uint seq, Sched s, Span<byte> o)
    {
        if (s.Bare)
        {
            o[0] = 0;
            return;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(o, MagicMsg);
        BinaryPrimitives.WriteUInt32LittleEndian(o[4..], seq);
        BinaryPrimitives.WriteUInt32LittleEndian(o[8..], s.BodyLen);
        BinaryPrimitives.WriteUInt32LittleEndian(o[12..], (uint)s.NFds);
        var r = new Rng(MsgSeed(seed, seq, 2));
        Span<byte> v = stackalloc byte[8];
        for (uint i = 0; i < s.BodyLen; i += 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(v, r.Next());
            int n = (int)Math.Min(8, s.BodyLen - i);
            v[..n].CopyTo(o[(HdrLen + (int)i)..]);
        }
    }

    public static void WritePool(Span<byte> o, IReadOnlyList<FdIdentity> pool)
    {
        o[..PoolMsgLen].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(o, MagicPool);
        BinaryPrimitives.WriteUInt32LittleEndian(o[8..], (uint)(PoolSize * IdentLen));
        for (int i = 0; i < PoolSize; i++)
        {
            Span<byte> r = o[(HdrLen + i * IdentLen)..];
            BinaryPrimitives.WriteUInt64LittleEndian(r, pool[i].Device);
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], pool[i].Inode);
            BinaryPrimitives.WriteUInt32LittleEndian(r[16..], (uint)pool[i].AccessMode);
        }
    }

    public static FdIdentity[] ReadPool(ReadOnlySpan<byte> b)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != MagicPool)
            throw new InvalidDataException("pool announcement: bad magic");
        var pool = new FdIdentity[PoolSize];
        for (int i = 0; i < PoolSize; i++)
        {
            ReadOnlySpan<byte> r = b[(HdrLen + i * IdentLen)..];
            pool[i] = new FdIdentity(BinaryPrimitives.ReadUInt64LittleEndian(r),
                                     BinaryPrimitives.ReadUInt64LittleEndian(r[8..]),
                                     (int)BinaryPrimitives.ReadUInt32LittleEndian(r[16..]));
        }
        return pool;
    }
}
