// SPDX-License-Identifier: MIT
using System.IO.Pipes;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace FdSend;

/// <summary>
/// Waits until sockets are writable, for every async send of the process that met a full
/// socket buffer, on ONE dedicated thread that poll(2)s all of them at once.
/// </summary>
/// <remarks>
/// <para>Why a thread of our own: .NET's socket engine has no "wait until writable" (a
/// zero-byte <see cref="Socket.SendAsync(ReadOnlyMemory{byte}, SocketFlags, CancellationToken)"/>
/// completes at once on a full Unix stream socket, and on a datagram socket it would send an
/// empty datagram), and the first chunk of a send must go through sendmsg(2) with the
/// descriptors attached, so .NET's own SendAsync cannot carry it. A Socket.Poll timer loop
/// would pin nothing but adds up to its period to every wait and burns wake-ups while sends
/// are blocked; a poll(2) per pending send would pin a thread each. One poller thread serves
/// any number of pending sends with the kernel's own wake-up latency. (The rest of a partly
/// sent buffer, which carries no descriptors, goes through .NET's own SendAsync and its
/// event loop.)</para>
/// <para>This is the one piece of process-wide state besides the native-library resolver,
/// for the same reason .NET's own socket engine is process-wide. The thread starts on the
/// first wait, and ends after <see cref="IdleExitMs"/> without any.</para>
/// <para>Registrations do not hold a reference on the socket's handle (that would make
/// Socket.Dispose spin until the wait ends); a socket closed during a wait is noticed by
/// POLLNVAL or by the periodic <see cref="SafeHandle.IsClosed"/> check, and the retried send
/// then throws <see cref="ObjectDisposedException"/>. poll(2) keeps a closed socket's file
/// alive until it returns, so the check runs every <see cref="ClosedCheckMs"/> while sends
/// are waiting.</para>
/// </remarks>
internal sealed class WritableWaiter
{
    internal const int IdleExitMs = 10_000;
    internal const int ClosedCheckMs = 250;

    private static WritableWaiter? s_instance;

    private readonly object _gate = new();
    private readonly List<Registration> _pending = new();
    private readonly AnonymousPipeServerStream _wakeWriter;
    private readonly AnonymousPipeClientStream _wakeReader;
    private readonly int _wakeFd;
    private int _wakeRequested; // 1 while a wake-up byte is (about to be) in the pipe
    private bool _running;

    private WritableWaiter()
    {
        // Both ends are close-on-exec (HandleInheritability.None).
        _wakeWriter = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.None);
        _wakeReader = new AnonymousPipeClientStream(PipeDirection.In, _wakeWriter.ClientSafePipeHandle);
        _wakeFd = (int)_wakeWriter.ClientSafePipeHandle.DangerousGetHandle();
    }

    /// <summary>Completes when <paramref name="socket"/> is writable (see <see cref="WaitAsync"/>).</summary>
    internal static Task WaitWritableAsync(Socket socket, CancellationToken cancellationToken)
    {
        if (OperatingSystem.IsWindows())
        {
            FdSendCore.GetHandle(socket);
            return cancellationToken.IsCancellationRequested
                ? Task.FromCanceled(cancellationToken)
                : PollLoopAsync(socket, cancellationToken);
        }
        return Instance.WaitAsync(socket, cancellationToken);
    }

    internal static WritableWaiter Instance =>
        Volatile.Read(ref s_instance) ?? CreateInstance();

    private static WritableWaiter CreateInstance()
    {
        var created = new WritableWaiter();
        WritableWaiter? existing = Interlocked.CompareExchange(ref s_instance, created, null);
        if (existing is null)
            return created;
        created._wakeReader.Dispose();
        created._wakeWriter.Dispose();
        return existing;
    }

    /// <summary>Whether the poller thread is running (for tests and diagnostics).</summary>
    internal bool IsRunning
    {
        get
        {
            lock (_gate)
                return _running;
        }
    }

    /// <summary>
    /// Completes when <paramref name="socket"/> is writable, has an error or hang-up pending
    /// (the next send reports it), or has been closed; cancelled by
    /// <paramref name="cancellationToken"/> (<see cref="OperationCanceledException"/>).
    /// </summary>
    internal Task WaitAsync(Socket socket, CancellationToken cancellationToken)
    {
        SafeSocketHandle handle = FdSendCore.GetHandle(socket);
        if (cancellationToken.IsCancellationRequested)
            return Task.FromCanceled(cancellationToken);

        var registration = new Registration(this, handle, (int)handle.DangerousGetHandle());
        if (cancellationToken.CanBeCanceled)
        {
            registration.CancellationRegistration = cancellationToken.UnsafeRegister(
                static (state, token) => ((Registration)state!).Cancel(token), registration);
        }
        if (registration.Task.IsCompleted)
            return registration.Task; // cancelled during registration

        bool start;
        lock (_gate)
        {
            _pending.Add(registration);
            start = !_running;
            _running = true;
        }
        if (start)
        {
            var thread = new Thread(Run)
            {
                IsBackground = true,
                Name = "FdSend writable",
            };
            thread.UnsafeStart();
        }
        else
        {
            Wake();
        }
        return registration.Task;
    }

    /// <summary>Windows has no poll(2) over a pipe and a socket together (WSAPoll takes
    /// sockets only): there, wait with <see cref="Socket.Poll(int, SelectMode)"/> checks
    /// spaced by a timer that backs off from 1 ms to 50 ms. No thread is held meanwhile.</summary>
    private static async Task PollLoopAsync(Socket socket, CancellationToken cancellationToken)
    {
        int delay = 1;
        while (!socket.Poll(0, SelectMode.SelectWrite) && !socket.Poll(0, SelectMode.SelectError))
        {
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = Math.Min(delay * 2, 50);
        }
    }

    private void Wake()
    {
        if (Interlocked.Exchange(ref _wakeRequested, 1) == 0)
        {
            // At most one byte is ever in the pipe, so this write never blocks.
            _wakeWriter.WriteByte(1);
        }
    }

    private void Remove(Registration registration)
    {
        lock (_gate)
            _pending.Remove(registration);
        Wake(); // let the poller drop the descriptor from its set
    }

    private void Run()
    {
        try
        {
            Poll();
        }
        catch (Exception e)
        {
            // Nothing in the loop is expected to throw; if something does, fail the waits
            // (their sends throw instead of hanging) and let the next wait start a new thread.
            List<Registration> stranded;
            lock (_gate)
            {
                stranded = new List<Registration>(_pending);
                _pending.Clear();
                _running = false;
            }
            var error = new IOException("FdSend's writability poller failed: " + e.Message, e);
            foreach (Registration r in stranded)
                r.Fail(error);
        }
    }

    private unsafe void Poll()
    {
        Interop.PollFd[] fds = new Interop.PollFd[16];
        Registration[] polled = new Registration[16];
        long idleSince = 0;
        while (true)
        {
            int count;
            lock (_gate)
            {
                _pending.RemoveAll(static r => r.Task.IsCompleted);
                if (_pending.Count == 0)
                {
                    long now = Environment.TickCount64;
                    if (idleSince == 0)
                    {
                        idleSince = now;
                    }
                    else if (now - idleSince >= IdleExitMs)
                    {
                        _running = false;
                        return;
                    }
                }
                else
                {
                    idleSince = 0;
                }
                count = _pending.Count;
                if (fds.Length < count + 1)
                {
                    int size = Math.Max(count + 1, fds.Length * 2);
                    fds = new Interop.PollFd[size];
                    polled = new Registration[size];
                }
                fds[0] = new Interop.PollFd { Fd = _wakeFd, Events = Interop.POLLIN };
                for (int i = 0; i < count; i++)
                {
                    polled[i + 1] = _pending[i];
                    fds[i + 1] = new Interop.PollFd { Fd = _pending[i].Fd, Events = Interop.POLLOUT };
                }
            }

            int timeout = count == 0 ? IdleExitMs : ClosedCheckMs;
            int result;
            fixed (Interop.PollFd* p = fds)
                result = Interop.Poll(p, (nuint)(count + 1), timeout);

            if (result < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == 4) // EINTR (4 on every supported OS)
                    continue;
                FailAll(polled, count, new IOException(
                    $"poll(2) failed with OS error {errno} ({Marshal.GetPInvokeErrorMessage(errno)}) while waiting for sockets to become writable."));
                continue;
            }

            if (fds[0].REvents != 0)
            {
                Volatile.Write(ref _wakeRequested, 0);
                _wakeReader.ReadByte(); // exactly one byte is there
            }
            for (int i = 1; i <= count; i++)
            {
                Registration r = polled[i];
                polled[i] = null!;
                if (fds[i].REvents != 0 || r.Handle.IsClosed)
                {
                    lock (_gate)
                        _pending.Remove(r);
                    r.Complete();
                }
            }
        }
    }

    private void FailAll(Registration[] polled, int count, Exception error)
    {
        for (int i = 1; i <= count; i++)
        {
            Registration r = polled[i];
            polled[i] = null!;
            lock (_gate)
                _pending.Remove(r);
            r.Fail(error);
        }
    }

    /// <summary>One pending wait: completes once, by the poller, by cancellation or by failure.</summary>
    private sealed class Registration : TaskCompletionSource
    {
        private readonly WritableWaiter _owner;

        internal Registration(WritableWaiter owner, SafeSocketHandle handle, int fd)
            : base(TaskCreationOptions.RunContinuationsAsynchronously)
        {
            _owner = owner;
            Handle = handle;
            Fd = fd;
        }

        internal SafeSocketHandle Handle { get; }
        internal int Fd { get; }
        internal CancellationTokenRegistration CancellationRegistration { get; set; }

        internal void Complete()
        {
            if (TrySetResult())
                CancellationRegistration.Dispose();
        }

        internal void Fail(Exception error)
        {
            if (TrySetException(error))
                CancellationRegistration.Dispose();
        }

        internal void Cancel(CancellationToken token)
        {
            if (TrySetCanceled(token))
                _owner.Remove(this);
        }
    }
}
