// SPDX-License-Identifier: MIT
using System.Net;
using FdSend.Handoff;

namespace FdSend.AspNetCore;

/// <summary>
/// This process's part in zero-downtime restarts, as an injectable service (registered by
/// <see cref="Microsoft.AspNetCore.Hosting.HandoffWebHostBuilderExtensions.UseFdSendHandoff"/>): whether it took over,
/// when it is ready, when it has been superseded, and <see cref="UpgradeAsync"/> to start
/// its successor.
/// </summary>
public interface IHandoffLifetime
{
    /// <summary>Whether this process took its listeners over from a running instance (false:
    /// it bound them, a first start).</summary>
    bool IsSuccessor { get; }

    /// <summary>The process id of the instance this one took over from, if any.</summary>
    int? IncumbentPid { get; }

    /// <summary>The address each named endpoint is bound to (a TCP port 0 resolved), by name.</summary>
    IReadOnlyDictionary<string, EndPoint> Endpoints { get; }

    /// <summary>Completes once this process serves and has told the running instance (if any)
    /// to let go; from then on a successor may take over. Faults if that failed.</summary>
    Task Ready { get; }

    /// <summary>Fires once a successor is ready and this process has let go of its listeners.
    /// The application is then stopped normally (<c>IHostApplicationLifetime.StopApplication</c>):
    /// Kestrel finishes in-flight requests within <c>HostOptions.ShutdownTimeout</c>.</summary>
    CancellationToken Superseded { get; }

    /// <summary>The underlying handoff server: the state blob to hand on
    /// (<see cref="HandoffServer.StateToHandOff"/>), the one inherited
    /// (<see cref="HandoffServer.InheritedState"/>), extra descriptors
    /// (<see cref="HandoffServer.AddFd"/>, <see cref="HandoffServer.TakeFd"/>).</summary>
    HandoffServer Server { get; }

    /// <summary>
    /// Starts a new instance of this program (the same executable and arguments, this
    /// environment), which takes the listeners over; waits until it is ready (this process
    /// then stops as on <see cref="Superseded"/>) or has failed (this process goes on
    /// serving). Concurrent calls share one upgrade.
    /// </summary>
    /// <param name="cancellationToken">Stops waiting (the successor, if started, goes on).</param>
    /// <returns>True if the successor took over; false if it exited or was not ready in time.</returns>
    Task<bool> UpgradeAsync(CancellationToken cancellationToken = default);
}
