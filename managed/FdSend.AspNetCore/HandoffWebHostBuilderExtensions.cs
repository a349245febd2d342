// SPDX-License-Identifier: MIT
using FdSend.AspNetCore;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

// The namespace ASP.NET Core users already import for UseKestrel and friends.
namespace Microsoft.AspNetCore.Hosting;

/// <summary>Zero-downtime restarts for Kestrel: <see cref="UseFdSendHandoff"/>.</summary>
public static class HandoffWebHostBuilderExtensions
{
    /// <summary>
    /// Makes Kestrel's endpoints survive restarts. When the host starts, it connects to the
    /// control socket (<see cref="KestrelHandoffOptions.ControlPath"/>): if an instance of the
    /// application runs there, it takes over that instance's listening sockets, so
    /// connections keep being accepted throughout; otherwise it binds them. Once the
    /// application has started it says ready (the old instance then closes its copies,
    /// drains and exits). When a successor takes over from this process in turn, the
    /// application is stopped normally (<c>IHostApplicationLifetime.StopApplication</c>):
    /// Kestrel stops accepting and finishes in-flight requests within
    /// <c>HostOptions.ShutdownTimeout</c>.
    /// </summary>
    /// <param name="builder">The web host builder (<c>WebApplicationBuilder.WebHost</c>).</param>
    /// <param name="configure">Sets the control path and adds the endpoints with
    /// <see cref="KestrelHandoffOptions.Listen(string, System.Net.EndPoint, System.Action{ListenOptions}?)"/>;
    /// these replace any URLs configured elsewhere (<c>ASPNETCORE_URLS</c>, <c>--urls</c>).</param>
    /// <returns>The builder, for chaining.</returns>
    /// <exception cref="PlatformNotSupportedException">On Windows: the handoff passes
    /// descriptors over Unix domain sockets (Linux, macOS, the BSDs).</exception>
    /// <remarks>Registers <see cref="IHandoffLifetime"/> (to trigger a self-upgrade with
    /// <see cref="IHandoffLifetime.UpgradeAsync"/>, or watch <see cref="IHandoffLifetime.Superseded"/>).
    /// Logs through <c>ILogger</c> under the categories <c>FdSend.AspNetCore</c> and
    /// <c>FdSend.Handoff</c>.</remarks>
    public static IWebHostBuilder UseFdSendHandoff(this IWebHostBuilder builder, Action<KestrelHandoffOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("UseFdSendHandoff hands listening sockets between processes over Unix domain sockets (Linux, macOS, the BSDs); on Windows, bind Kestrel's endpoints as usual.");
        builder.ConfigureServices(services =>
        {
            services.Configure(configure);
            services.AddSingleton<HandoffLifetime>();
            services.AddSingleton<IHandoffLifetime>(sp => sp.GetRequiredService<HandoffLifetime>());
            services.AddHostedService(sp => sp.GetRequiredService<HandoffLifetime>());
            services.AddSingleton<IConfigureOptions<KestrelServerOptions>, ConfigureKestrelFromHandoff>();
        });
        return builder;
    }
}
