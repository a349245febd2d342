// SPDX-License-Identifier: MIT
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace FdSend.AspNetCore;

/// <summary>
/// Connection middleware on every handed-over endpoint: a connection accepted shortly before
/// this process stops still gets its first request answered.
/// </summary>
/// <remarks>
/// Between the moment a successor says ready and the moment Kestrel stops accepting here,
/// both processes accept from the same socket. Kestrel's graceful stop asks each connection
/// to close; an HTTP/1.1 connection whose first request has not been read yet then ends
/// without an answer (its request bytes may be in flight), which a client sees as a failed
/// request on a brand-new connection, one it cannot safely retry. This middleware holds that
/// close request back until HTTP has started reading the connection's first request (then
/// Kestrel answers it with <c>Connection: close</c>), or until
/// <see cref="KestrelHandoffOptions.FirstRequestGrace"/> has passed, whichever comes first.
/// Connections that already served a request are closed as before.
/// </remarks>
internal static class FirstRequestGrace
{
    public static void Use(ListenOptions listen, TimeSpan grace)
    {
        listen.Use(next => async connection =>
        {
            IConnectionLifetimeNotificationFeature? server = connection.Features.Get<IConnectionLifetimeNotificationFeature>();
            if (server is null || grace <= TimeSpan.Zero)
            {
                await next(connection).ConfigureAwait(false);
                return;
            }
            using var deferred = new DeferredClose(server, grace);
            connection.Features.Set<IConnectionLifetimeNotificationFeature>(deferred);
            IDuplexPipe transport = connection.Transport;
            connection.Transport = new Pipe(new FirstConsumeReader(transport.Input, deferred.FirstRequestStarted), transport.Output);
            try
            {
                await next(connection).ConfigureAwait(false);
            }
            finally
            {
                connection.Features.Set(server);
            }
        });
    }

    private sealed class Pipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    /// <summary>The server's close request, passed on once the first request has started or
    /// the grace period is over.</summary>
    private sealed class DeferredClose : IConnectionLifetimeNotificationFeature, IDisposable
    {
        private readonly IConnectionLifetimeNotificationFeature _server;
        private readonly TimeSpan _grace;
        private readonly CancellationTokenSource _closeRequested = new();
        private readonly CancellationTokenRegistration _registration;
        private readonly object _gate = new();
        private bool _started, _requested, _disposed;

        public DeferredClose(IConnectionLifetimeNotificationFeature server, TimeSpan grace)
        {
            _server = server;
            _grace = grace;
            _registration = server.ConnectionClosedRequested.Register(static s => ((DeferredClose)s!).OnServerRequest(), this);
        }

        public CancellationToken ConnectionClosedRequested
        {
            get => _closeRequested.Token;
            set => throw new NotSupportedException();
        }

        public void RequestClose() => _server.RequestClose();

        private void OnServerRequest()
        {
            lock (_gate)
            {
                if (_disposed)
                    return;
                _requested = true;
                if (!_started)
                {
                    _closeRequested.CancelAfter(_grace);
                    return;
                }
            }
            Cancel();
        }

        public void FirstRequestStarted()
        {
            lock (_gate)
            {
                _started = true;
                if (!_requested || _disposed)
                    return;
            }
            Cancel();
        }

        private void Cancel()
        {
            try
            {
                _closeRequested.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        public void Dispose()
        {
            _registration.Dispose();
            lock (_gate)
                _disposed = true;
            _closeRequested.Dispose();
        }
    }

    /// <summary>Reports the first time its reader consumes bytes: HTTP has parsed the start of
    /// a request.</summary>
    private sealed class FirstConsumeReader(PipeReader inner, Action onFirstConsume) : PipeReader
    {
        private SequencePosition _start;
        private bool _consumed;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            if (_consumed)
                return inner.ReadAsync(cancellationToken);
            return Remember(inner.ReadAsync(cancellationToken));
        }

        private async ValueTask<ReadResult> Remember(ValueTask<ReadResult> read)
        {
            ReadResult result = await read.ConfigureAwait(false);
            _start = result.Buffer.Start;
            return result;
        }

        public override bool TryRead(out ReadResult result)
        {
            if (!inner.TryRead(out result))
                return false;
            _start = result.Buffer.Start;
            return true;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            if (!_consumed && !consumed.Equals(_start))
            {
                _consumed = true;
                onFirstConsume();
            }
            inner.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }
}
