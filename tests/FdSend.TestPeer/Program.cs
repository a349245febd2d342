// SPDX-License-Identifier: MIT
// FdSend.TestPeer <verb> args...
//
// The one child process of the .NET tests: a second real process that speaks FdSend. The verb
// picks the scenario; each group of verbs lives in its own file, which documents them:
//   SyncVerbs.cs     report, send-files, creds, pipe-write, accept, echo, map-naive,
//                    map-checked, list-fds, rlimit-recv (tests/FdSend.Tests, through Peer)
//   AsyncVerbs.cs    raw-echo, channel-echo, slow-reader, channel-rlimit (tests/FdSend.Tests,
//                    the Async and Channel fixtures, through AsyncPeerProcess)
//   HandoffVerbs.cs  serve, raw (tests/FdSend.Handoff.Tests, through HandoffPeerProcess)
// Exit code 2 for an unknown verb or bad usage; the other codes are each group's.

if (args.Length > 0)
{
    if (SyncVerbs.Names.Contains(args[0]))
        return SyncVerbs.Run(args);
    if (AsyncVerbs.Names.Contains(args[0]))
        return await AsyncVerbs.RunAsync(args);
    if (HandoffVerbs.Names.Contains(args[0]))
        return await HandoffVerbs.RunAsync(args);
}
Console.Error.WriteLine("usage: FdSend.TestPeer <verb> args... (verbs: " +
                        string.Join(' ', [.. SyncVerbs.Names, .. AsyncVerbs.Names, .. HandoffVerbs.Names]) + ")");
return 2;
