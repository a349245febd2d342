// SPDX-License-Identifier: MIT
namespace FdSend;

/// <summary>Why a <see cref="FileBroker"/> refused to open a path.</summary>
public enum FileBrokerError
{
    /// <summary>The path would leave the broker's directory: absolute, a ".." component, or a
    /// symbolic link anywhere on the way (inside or out).</summary>
    Escape = 1,
    /// <summary>Not a regular file: a directory, FIFO, device or socket.</summary>
    NotRegularFile = 2,
    /// <summary>No such file (or a component is not a directory).</summary>
    NotFound = 3,
    /// <summary>The broker's own permissions do not allow it.</summary>
    AccessDenied = 4,
    /// <summary>The path is outside the allowed subdirectories, or the request carried
    /// descriptors.</summary>
    NotAllowed = 5,
    /// <summary>Empty, too long (over 4096 bytes of UTF-8) or containing NUL.</summary>
    InvalidPath = 6,
    /// <summary>Any other failure on the broker's side.</summary>
    Other = 7,
}

/// <summary>A <see cref="FileBroker"/> refused to open a path; nothing was received.</summary>
public sealed class FileBrokerException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="error">Why.</param>
    /// <param name="path">The path asked for.</param>
    /// <param name="message">The text.</param>
    public FileBrokerException(FileBrokerError error, string path, string message) : base(message)
    {
        Error = error;
        Path = path;
    }

    /// <summary>Why the broker refused.</summary>
    public FileBrokerError Error { get; }

    /// <summary>The path asked for.</summary>
    public string Path { get; }

    internal static FileBrokerError FromStatus(int status) => (Interop.Status)status switch
    {
        Interop.Status.EESCAPE => FileBrokerError.Escape,
        Interop.Status.ENOTREG => FileBrokerError.NotRegularFile,
        Interop.Status.ENOENT => FileBrokerError.NotFound,
        Interop.Status.EACCES => FileBrokerError.AccessDenied,
        Interop.Status.EPOLICY => FileBrokerError.NotAllowed,
        Interop.Status.EINVAL or Interop.Status.ENAMETOOLONG => FileBrokerError.InvalidPath,
        _ => FileBrokerError.Other,
    };
}
