// The surroundings of the README fragments marked <!-- snippet: wrap pair -->: the docs
// check (eng/docs_check.py) puts the fragment in place of the line "// <snippet>" below,
// its `using` lines at the top, and builds and runs the program against the packed FdSend.
// In scope: `sock` and `peer`, the two ends of a connected Unix stream socket, and
// `file1`, `file2`, two open temporary files.
using System.Net.Sockets;
using FdSend;

string dir = Directory.CreateTempSubdirectory("fdsend-doc-").FullName;
(Socket pairEnd1, Socket pairEnd2) = UnixSocketPair.Create();
using Socket sock = pairEnd1;
using Socket peer = pairEnd2;
using FileStream file1 = File.Create(Path.Combine(dir, "1")), file2 = File.Create(Path.Combine(dir, "2"));
file1.Write("first file\n"u8);
file1.Flush();

// <snippet>
