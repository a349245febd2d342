// HandoffWeb: a minimal API that restarts without refusing a connection.
//   dotnet HandoffWeb.dll [--Port=5000] [--ControlPath=/run/user/$UID/handoffweb/handoff.sock]
// Run it; then start it again (or `kill -HUP <pid>`, or `curl -X POST localhost:5000/upgrade`):
// the new process takes the listening socket over, the old one finishes its requests and exits.
//   GET  /            a greeting
//   GET  /pid         the id of the process that answered
//   GET  /stream?seconds=3   a line every 100 ms for that long (a long request to drain)
//   POST /upgrade     start a successor and wait until it has taken over
// --FailAtStartup=true makes the process throw while starting (after taking the sockets, before
// it is ready): the tests' successor that fails; the running instance goes on serving.
using System.Net;
using FdSend.AspNetCore;

var builder = WebApplication.CreateBuilder(args);
int port = builder.Configuration.GetValue("Port", 5000);
string controlPath = builder.Configuration["ControlPath"]
    ?? Path.Combine(Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") ?? Path.GetTempPath(),
                    $"handoffweb-{Environment.UserName}", "handoff.sock");

builder.WebHost.UseFdSendHandoff(o =>
{
    o.ControlPath = controlPath;
    o.UpgradeOnSigHup = true;
    o.Listen("http", new IPEndPoint(IPAddress.Loopback, port));
});
if (builder.Configuration.GetValue<bool>("FailAtStartup"))
    builder.Services.AddHostedService<FailAtStartup>();

var app = builder.Build();

app.MapGet("/", () => $"Hello from HandoffWeb, process {Environment.ProcessId}\n");
app.MapGet("/pid", () => Environment.ProcessId.ToString());
app.MapGet("/stream", async (HttpResponse response, int? seconds) =>
{
    // Deliberately not cancelled by ApplicationStopping: a draining process finishes it.
    response.ContentType = "text/plain";
    int lines = Math.Clamp(seconds ?? 3, 1, 60) * 10;
    for (int i = 0; i < lines; i++)
    {
        await response.WriteAsync($"{Environment.ProcessId} {i}\n");
        await response.Body.FlushAsync();
        await Task.Delay(100);
    }
    await response.WriteAsync("end\n");
});
app.MapPost("/upgrade", async (IHandoffLifetime handoff) =>
    await handoff.UpgradeAsync()
        ? Results.Text($"process {Environment.ProcessId} handed over; it exits once its requests are done\n")
        : Results.Problem("the successor did not take over; this process goes on serving"));

// One line the tests and the demo wait for: who serves, where, and since when.
app.Lifetime.ApplicationStarted.Register(async () =>
{
    var handoff = app.Services.GetRequiredService<IHandoffLifetime>();
    try
    {
        await handoff.Ready;
        Console.WriteLine($"HandoffWeb {Environment.ProcessId} ready on {handoff.Endpoints["http"]} " +
                          (handoff.IsSuccessor ? $"(took over from {handoff.IncumbentPid})" : "(first start)"));
    }
    catch (Exception e)
    {
        Console.WriteLine($"HandoffWeb {Environment.ProcessId} not ready: {e.Message}");
    }
});

app.Run();

internal sealed class FailAtStartup : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) =>
        throw new InvalidOperationException("FailAtStartup is set: this process refuses to start");

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
