// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>Library-wide facts about descriptor passing.</summary>
public static class FdPassing
{
    /// <summary>The most descriptors one message carries: 253, Linux's SCM_MAX_FD, which
    /// libfdsend applies on every operating system (fdsend_max_fds()). Sending more in one
    /// call throws <see cref="ArgumentException"/>; send them in several messages.</summary>
    public const int MaxFds = 253;

    /// <summary>The version of the native libfdsend this process loaded
    /// ("MAJOR.MINOR.PATCH"). Reading it loads the native library, so it is also a quick
    /// check that the library is found (<see cref="DllNotFoundException"/> otherwise).</summary>
    public static string NativeVersion => Interop.Version();

    /// <summary>The limit the loaded native library reports (fdsend_max_fds()); equal to
    /// <see cref="MaxFds"/>.</summary>
    public static int NativeMaxFds => Interop.MaxFds();
}
