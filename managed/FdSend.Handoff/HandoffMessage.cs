// SPDX-License-Identifier: MIT
using System.Text;

namespace FdSend.Handoff;

/// <summary>
/// One message of the handoff protocol (docs/handoff-protocol.md): a type line, then
/// <c>key=value</c> lines; the <c>state</c> message carries opaque bytes after its type line.
/// The one codec both roles use: parsing checks everything a peer could get wrong.
/// </summary>
internal sealed class HandoffMessage
{
    internal const int Version = 1;

    internal const string Hello = "hello", Refused = "refused", Inventory = "inventory", Fds = "fds",
        State = "state", End = "end", Ready = "ready", Abort = "abort", Released = "released";

    private static readonly HashSet<string> KnownTypes =
        [Hello, Refused, Inventory, Fds, State, End, Ready, Abort, Released];

    private readonly Dictionary<string, string> _fields = new(StringComparer.Ordinal);
    private readonly List<string> _fdLines = [];

    internal HandoffMessage(string type) => Type = type;

    internal string Type { get; }

    /// <summary>The <c>fd=</c> lines of an <c>fds</c> message, in order.</summary>
    internal IReadOnlyList<string> FdLines => _fdLines;

    /// <summary>The opaque bytes of a <c>state</c> message.</summary>
    internal ReadOnlyMemory<byte> Body { get; private set; }

    internal HandoffMessage With(string key, string value)
    {
        CheckValue(value);
        if (key == "fd")
            _fdLines.Add(value);
        else
            _fields[key] = value;
        return this;
    }

    internal HandoffMessage WithBody(ReadOnlyMemory<byte> body)
    {
        Body = body;
        return this;
    }

    internal string? Get(string key) => _fields.TryGetValue(key, out string? v) ? v : null;

    internal string Require(string key) =>
        Get(key) ?? throw new HandoffProtocolException($"The '{Type}' message has no '{key}' field.");

    internal long RequireNumber(string key, long max)
    {
        string text = Require(key);
        if (!long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) || n > max)
            throw new HandoffProtocolException($"The '{Type}' message's '{key}' is '{Limit(text)}', not a number from 0 to {max}.");
        return n;
    }

    internal byte[] Encode()
    {
        var sb = new StringBuilder(Type).Append('\n');
        if (Type == State)
        {
            byte[] head = Encoding.UTF8.GetBytes(sb.ToString());
            byte[] all = new byte[head.Length + Body.Length];
            head.CopyTo(all, 0);
            Body.Span.CopyTo(all.AsSpan(head.Length));
            return all;
        }
        foreach (KeyValuePair<string, string> f in _fields)
            sb.Append(f.Key).Append('=').Append(f.Value).Append('\n');
        foreach (string line in _fdLines)
            sb.Append("fd=").Append(line).Append('\n');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    /// <summary>Parses a payload; <see cref="HandoffProtocolException"/> for anything that is
    /// not a well-formed message of a known type.</summary>
    internal static HandoffMessage Parse(ReadOnlySpan<byte> payload)
    {
        int nl = payload.IndexOf((byte)'\n');
        if (nl <= 0)
            throw new HandoffProtocolException("The message has no type line.");
        string type = Decode(payload[..nl]);
        if (!KnownTypes.Contains(type))
            throw new HandoffProtocolException($"Unknown message type '{Limit(type)}'.");
        var m = new HandoffMessage(type);
        ReadOnlySpan<byte> rest = payload[(nl + 1)..];
        if (type == State)
            return m.WithBody(rest.ToArray());
        while (!rest.IsEmpty)
        {
            nl = rest.IndexOf((byte)'\n');
            if (nl < 0)
                throw new HandoffProtocolException($"The '{type}' message's last line has no newline.");
            string line = Decode(rest[..nl]);
            rest = rest[(nl + 1)..];
            int eq = line.IndexOf('=');
            if (eq <= 0 || !IsKey(line.AsSpan(0, eq)))
                throw new HandoffProtocolException($"The '{type}' message has a malformed line '{Limit(line)}'.");
            string key = line[..eq];
            if (key != "fd" && m._fields.ContainsKey(key))
                throw new HandoffProtocolException($"The '{type}' message repeats '{key}'.");
            m.With(key, line[(eq + 1)..]);
        }
        return m;
    }

    /// <summary>Whether <paramref name="name"/> is a valid descriptor name: 1 to 200 bytes of
    /// printable ASCII without spaces.</summary>
    internal static bool IsValidName(string name) =>
        name.Length is > 0 and <= 200 && name.All(c => c is > ' ' and <= '~');

    private static bool IsKey(ReadOnlySpan<char> key)
    {
        foreach (char c in key)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
                return false;
        }
        return true;
    }

    private static string Decode(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new HandoffProtocolException("The message is not valid UTF-8.");
        }
    }

    private static void CheckValue(string value)
    {
        if (value.Contains('\n'))
            throw new ArgumentException("A handoff field value cannot contain a newline.", nameof(value));
    }

    /// <summary>At most 80 characters of peer-supplied text, for messages and logs.</summary>
    internal static string Limit(string s) => s.Length <= 80 ? s : s[..80] + "...";
}

/// <summary>The peer broke the handoff protocol (a malformed or unexpected message).</summary>
public sealed class HandoffProtocolException : IOException
{
    /// <summary>Creates the exception with a message saying what was wrong.</summary>
    public HandoffProtocolException(string message) : base(message)
    {
    }
}

/// <summary>The incumbent refused the handoff (another one in progress, credentials refused,
/// no common version...): the successor got nothing and the incumbent goes on serving.</summary>
public sealed class HandoffRefusedException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="reason">The protocol's reason token (<c>busy</c>, <c>unauthorized</c>,
    /// <c>unsupported-version</c>, <c>shutting-down</c>, <c>protocol</c>).</param>
    /// <param name="message">What the incumbent said.</param>
    public HandoffRefusedException(string reason, string message)
        : base($"The running instance refused the handoff ({reason}): {message}")
    {
        Reason = reason;
    }

    /// <summary>The protocol's reason token.</summary>
    public string Reason { get; }
}
