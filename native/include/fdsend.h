/*
 * fdsend.h - pass open file descriptors between processes over Unix domain sockets.
 *
 * SPDX-License-Identifier: MIT
 *
 * This is the only public header of libfdsend. Every function is thread-safe, never
 * raises SIGPIPE, and retries EINTR internally. A send or receive waits the way its socket
 * says: a blocking socket blocks (in the kernel, or after a signal in the library's one
 * wait, fdsend_wait's), a non-blocking one returns FDSEND_EAGAIN. Some calls finish what
 * they have started whatever the socket mode: the channels (fdsend_msg_*, fdsend_channel_*)
 * inside a frame and fdsend_recv_exact inside its bytes; fdsend_poller_wait, fdsend_wait and
 * the file broker wait by design (see each).
 *
 * Timeouts: on a blocking socket with SO_RCVTIMEO / SO_SNDTIMEO set, a call that waits
 * that long returns FDSEND_ETIMEDOUT (nothing sent or consumed), never FDSEND_EAGAIN:
 * FDSEND_EAGAIN always means "the socket is non-blocking (or FDSEND_DONTWAIT was given)
 * and not ready", so a caller can tell "wait for readiness" from "give up".
 * The timeout is a deadline counted from the start of the call on CLOCK_MONOTONIC (it never
 * passes early): a signal caught while the call waits (with or without SA_RESTART) does
 * not restart it;
 * after such an interruption the library polls for what is left of it, then retries.
 *
 * Conventions
 *  - Sockets and descriptors cross this API as intptr_t (a HANDLE on Windows).
 *  - Functions return a non-negative value on success and a negative FDSEND_E* code on
 *    failure. The codes have the same numbers on every operating system. For C callers
 *    errno is also left set to the underlying OS error (FDSEND_EOTHER keeps the raw errno
 *    reachable that way; fdsend_last_os_error() reads it).
 *  - Ownership: fdsend_send never closes or takes the descriptors it sends; the caller
 *    still owns them (the peer gets its own duplicates). fdsend_recv hands the caller the
 *    descriptors it stores in fds[]; every other descriptor that arrived is closed before
 *    it returns, on success and on every error path. Nothing leaks.
 */
#ifndef FDSEND_H
#define FDSEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(FDSEND_BUILDING)
#  define FDSEND_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(FDSEND_STATIC)
#  define FDSEND_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#  define FDSEND_API __attribute__((visibility("default")))
#else
#  define FDSEND_API
#endif

#define FDSEND_VERSION_MAJOR 0
#define FDSEND_VERSION_MINOR 1
#define FDSEND_VERSION_PATCH 0
#define FDSEND_VERSION_STRING "0.1.0"

/** The most descriptors one message carries (Linux's SCM_MAX_FD; the library's limit on
 *  every OS, so that a receive buffer always has room for a whole message). */
#define FDSEND_MAX_FDS 253

/**
 * Error codes. Negative, platform-neutral, stable: the same number on every OS.
 * Each names the condition a caller can act on; see fdsend_strerror().
 */
typedef enum fdsend_status {
    FDSEND_OK = 0,
    FDSEND_EAGAIN = -1,        /**< would block: nothing sent/consumed; retry when ready */
    FDSEND_EINVAL = -2,        /**< bad argument (NULL buffer with a length, count < 0, flags) */
    FDSEND_EBADF = -3,         /**< the socket or a descriptor to send is not an open fd */
    FDSEND_ENOTSOCK = -4,      /**< the socket argument is not a socket */
    FDSEND_EPIPE = -5,         /**< the peer closed its end (no SIGPIPE is raised) */
    FDSEND_ECONNRESET = -6,    /**< the connection was reset by the peer */
    FDSEND_ENOTCONN = -7,      /**< the socket is not connected */
    FDSEND_EMSGSIZE = -8,      /**< the message is too large for this socket type */
    FDSEND_ETOOMANYREFS = -9,  /**< too many descriptors in flight (kernel per-user limit) */
    FDSEND_EMFILE = -10,       /**< the process (or system) descriptor table is full */
    FDSEND_ENOTSUP = -11,      /**< not supported on this OS or this socket */
    FDSEND_ENOBUFS = -12,      /**< out of kernel buffers or memory */
    FDSEND_ETOOMANYFDS = -13,  /**< more descriptors than fdsend_max_fds() in one message, or
                                    (fdsend_msg_recv) than the receiver's maxfds */
    FDSEND_ECONNREFUSED = -14, /**< nobody listens at the destination path */
    FDSEND_ENOENT = -15,       /**< the destination path does not exist */
    FDSEND_EACCES = -16,       /**< permission denied (EACCES, EPERM) */
    FDSEND_EDESTADDRREQ = -17, /**< datagram socket not connected: use fdsend_send_to
                                    (the BSDs; Linux reports FDSEND_ENOTCONN) */
    FDSEND_EISCONN = -18,      /**< socket already connected: use fdsend_send */
    FDSEND_ENOTUNIX = -19,     /**< the socket is not a Unix domain socket */
    FDSEND_ENAMETOOLONG = -20, /**< the destination path does not fit in sun_path */
    FDSEND_EPROTO = -21,       /**< the peer broke the framing protocol (fdsend_msg_*) */
    FDSEND_ESRCH = -22,        /**< the sending process is gone (Windows handle passing) */
    FDSEND_EOF = -23,          /**< the peer closed the channel at a message boundary (fdsend_msg_recv) */
    FDSEND_ETIMEDOUT = -24,    /**< a blocking call waited the socket's SO_RCVTIMEO/SO_SNDTIMEO out
                                    (nothing sent or consumed, except where a function says) */
    FDSEND_EPROTOTYPE = -25,   /**< the socket at the destination is of another type (a datagram
                                    sent to a path bound by a stream or seqpacket socket) */
    FDSEND_EPOLICY = -26,      /**< what arrived (or the peer) broke the caller's receive policy:
                                    every descriptor of the message was closed (fdsend_recv_checked,
                                    fdsend_check_fds, fdsend_check_received, fdsend_check_peer;
                                    fdsend_check_fd closes nothing; see fdsend_violation) */
    FDSEND_ENOTSEALED = -27,   /**< shared memory without the seals (or the size) the receiver
                                    requires, or not shared memory at all: not mapped (fdsend_shm_map) */
    FDSEND_EESCAPE = -28,      /**< the path would leave the directory: absolute, a ".." component,
                                    or a symbolic link on the way (fdsend_open_beneath) */
    FDSEND_ENOTREG = -29,      /**< not a regular file: a directory, FIFO, device or socket
                                    (fdsend_open_beneath) */
    FDSEND_EOTHER = -99        /**< any other OS error: see errno / fdsend_last_os_error() */
} fdsend_status;

/** Flags for fdsend_send, fdsend_send_to and fdsend_recv. */
enum {
    /** Do not block even if the socket is blocking (MSG_DONTWAIT): FDSEND_EAGAIN. */
    FDSEND_DONTWAIT = 1,
    /** fdsend_send and fdsend_send_to only (Windows accepts and ignores it; the
     *  fdsend_msg_* channel keeps its check): the caller guarantees that sock is an AF_UNIX socket, so the library
     *  skips its check (one getsockname() per send with descriptors, about 9% of a local
     *  round trip). Without the check a non-Unix socket is not refused: Linux TCP accepts
     *  SCM_RIGHTS and silently drops the descriptors. The .NET API passes it for sockets
     *  whose AddressFamily is Unix. Ignored by fdsend_recv. */
    FDSEND_UNIX_SOCKET = 2
};

/** Bits set in *rflags by fdsend_recv. */
enum {
    /** The message had more data than len (datagram/seqpacket: the rest is discarded;
     *  stream with len == 0: a byte other than the zero fd-carrier byte was consumed). */
    FDSEND_RECV_DATA_TRUNCATED = 1,
    /** More descriptors arrived than maxfds (the extra ones were closed), or the kernel
     *  dropped some (MSG_CTRUNC: e.g. the receiver was at RLIMIT_NOFILE). */
    FDSEND_RECV_FDS_TRUNCATED = 2,
    /** A stream socket's peer closed its end (orderly end of stream): the call returned 0
     *  with no descriptors. Never set on seqpacket or datagram sockets, where an empty
     *  message is legitimate. */
    FDSEND_RECV_END_OF_STREAM = 4
};

/**
 * Send len bytes of data and nfds descriptors in ONE message on a connected Unix domain
 * socket (stream, seqpacket, or connected datagram).
 *
 * - Exactly one SCM_RIGHTS control message carries all nfds descriptors.
 * - nfds == 0 sends plain data (no control message at all).
 * - len == 0 with nfds > 0: on a stream socket one zero byte is sent to carry the
 *   descriptors (as IO::FDPass and OpenSSH do) and 0 is returned; seqpacket and datagram
 *   sockets carry a true zero-length message.
 * - A stream socket may accept fewer bytes than len (a partial send): the return value
 *   says how many; the descriptors went with those first bytes, so send the rest
 *   WITHOUT descriptors (nfds == 0).
 * - FDSEND_EAGAIN means nothing at all was sent: neither data nor descriptors.
 * - nfds > 0 on a socket that is not AF_UNIX (TCP, UDP...): FDSEND_ENOTUNIX and nothing
 *   is sent (some kernels would accept the message and silently drop the descriptors).
 *   Plain data (nfds == 0) goes over any socket.
 *
 * @param sock   connected Unix domain socket
 * @param buf    data to send; may be NULL only when len == 0
 * @param len    number of data bytes
 * @param fds    descriptors to send; may be NULL only when nfds == 0. Still owned by the
 *               caller afterwards, whatever the result.
 * @param nfds   0 .. fdsend_max_fds(); more gives FDSEND_ETOOMANYFDS and sends nothing
 * @param flags  0 or FDSEND_DONTWAIT
 * @return bytes of data sent (>= 0), or a negative FDSEND_E* code.
 */
FDSEND_API int64_t fdsend_send(intptr_t sock, const void *buf, size_t len,
                               const intptr_t *fds, int32_t nfds, uint32_t flags);

/**
 * Like fdsend_send, on an unconnected datagram socket, to the socket bound at path
 * (what systemd's sd_notify with FDSTORE=1 needs). On Linux a path starting with '@'
 * names an abstract socket (the '@' becomes the leading NUL byte), as sd_notify does.
 *
 * @return bytes sent (>= 0), or a negative code: FDSEND_ENOENT / FDSEND_ECONNREFUSED
 *         when nobody is bound there, FDSEND_EPROTOTYPE when the socket bound there is
 *         not a datagram socket, FDSEND_ENAMETOOLONG when path does not fit (sun_path
 *         holds 108 bytes on Linux: a filesystem path of up to 107 bytes plus its NUL, or
 *         '@' plus an abstract name of up to 107 bytes, which has no NUL).
 */
FDSEND_API int64_t fdsend_send_to(intptr_t sock, const char *path, const void *buf,
                                  size_t len, const intptr_t *fds, int32_t nfds,
                                  uint32_t flags);

/**
 * Receive up to len bytes of data and up to maxfds descriptors from one message.
 *
 * - Returns the number of data bytes stored in buf. On a stream socket whose peer closed
 *   its end (orderly end of stream) it returns 0 with FDSEND_RECV_END_OF_STREAM set.
 * - The descriptors are stored in fds[0 .. *nfds-1], close-on-exec, and belong to the
 *   caller. Every descriptor that arrived beyond maxfds is closed, and
 *   FDSEND_RECV_FDS_TRUNCATED is set; so is it when the kernel dropped descriptors.
 * - len == 0 on a stream socket consumes exactly one byte (the fd-carrier byte that
 *   fdsend_send and IO::FDPass put on the wire) and returns 0; if that byte was not a
 *   zero byte carrying descriptors, FDSEND_RECV_DATA_TRUNCATED says a data byte was
 *   lost. With len > 0 the carrier byte is returned as one data byte, 0x00. On
 *   seqpacket/datagram, len == 0 receives one message and discards any data
 *   (FDSEND_RECV_DATA_TRUNCATED if it had some).
 * - On a stream socket, data from earlier plain writes may come before the descriptors'
 *   byte in the same call; the kernel never joins two descriptor-carrying writes.
 * - On any error no descriptor is handed out and none is leaked; FDSEND_EAGAIN means
 *   nothing was consumed. A stream or seqpacket socket that is not connected (or that
 *   listens) gives FDSEND_ENOTCONN.
 * - Control messages other than SCM_RIGHTS are ignored (credentials a peer or the
 *   kernel adds); descriptors the kernel adds on its own (Linux's SCM_PIDFD when the
 *   caller enabled SO_PASSPIDFD) are closed, not reported as truncation.
 * - Windows (docs/windows-protocol.md): a stream of records, and one call returns one
 *   whole record; a stateless call cannot stop inside one. A record with more data than
 *   len (len == 0 included) gives FDSEND_EMSGSIZE and consumes nothing (no handle is
 *   taken): retry with a buffer that holds it, or read in pieces with fdsend_recv_part.
 *   Once it has consumed a record's header the call reads all of its data, waiting for
 *   bytes still arriving even on a non-blocking socket or with FDSEND_DONTWAIT, within
 *   SO_RCVTIMEO; a timeout or failure there closes the record's handles and leaves the
 *   connection inside the record (close it). A record whose sender check fails
 *   (FDSEND_ESRCH, FDSEND_EPROTO, FDSEND_EACCES) is consumed whole: no handle, its data
 *   discarded (fdsend_recv_part leaves it readable).
 *
 * @param sock    Unix domain socket
 * @param buf     where data goes; may be NULL only when len == 0
 * @param fds     where descriptors go; may be NULL only when maxfds == 0
 * @param maxfds  0 .. any (more than fdsend_max_fds() is never needed)
 * @param nfds    out: number of descriptors stored (set to 0 on error); may be NULL
 *                only when maxfds == 0
 * @param rflags  out: FDSEND_RECV_* bits (set to 0 on error); may be NULL
 * @param flags   0 or FDSEND_DONTWAIT
 * @return bytes received (>= 0), or a negative FDSEND_E* code.
 */
FDSEND_API int64_t fdsend_recv(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                               int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                               uint32_t flags);

/**
 * Where a reader is inside the message it is reading in pieces with fdsend_recv_part.
 * The caller owns it; zero it (or initialise it with FDSEND_RECV_STATE_INIT) before the
 * first read of a socket, and otherwise leave it as the library left it. Plain data: no
 * resource to free, any thread may hold it (one call at a time).
 */
typedef struct fdsend_recv_state {
    uint64_t reserved[2];
} fdsend_recv_state;

/** A fresh fdsend_recv_state (the same as one filled with zeros). */
#define FDSEND_RECV_STATE_INIT {{0, 0}}

/**
 * fdsend_recv for a reader that takes a stream's messages in pieces (len smaller than
 * what was sent), keeping its position in a state object it owns.
 *
 * - POSIX: the kernel keeps a stream's position, so state is only checked (NULL, or one
 *   that is not as the library left it: FDSEND_EINVAL, nothing consumed) and the call is
 *   fdsend_recv.
 * - Windows: every fdsend_send is a record whose header says how much data follows
 *   (docs/windows-protocol.md); state holds the data bytes of the current record still
 *   due (and the socket they are due on). A read takes the record's handles and up to len
 *   of its data bytes; the next reads with the same state return the rest, without
 *   handles, never crossing into the next record. len == 0 meeting data consumes one data
 *   byte and sets FDSEND_RECV_DATA_TRUNCATED (a record of handles only needs no byte).
 *   FDSEND_EAGAIN and FDSEND_ETIMEDOUT inside a record's data consume nothing and keep the
 *   count. A record whose sender check fails (FDSEND_ESRCH, FDSEND_EPROTO, FDSEND_EACCES)
 *   hands out no handle and leaves its data for the next reads with the same state.
 *
 * Rules: one state per socket, used by one sequence of reads (not two threads at once);
 * a fresh state for a new socket (a state in the middle of a record on another socket:
 * FDSEND_EINVAL). Finish a record with the state that began it: on Windows the bytes after
 * a part-read record's header are data, and neither fdsend_recv nor a fresh state can tell
 * them from a record (they are most likely refused as FDSEND_EPROTO, nothing consumed, but
 * data that happens to look like a record would be taken for one). To abandon a socket,
 * zero the state.
 *
 * @param state  the reader's position (see fdsend_recv_state); not NULL
 * Every other parameter, result and error as fdsend_recv.
 */
FDSEND_API int64_t fdsend_recv_part(intptr_t sock, fdsend_recv_state *state, void *buf,
                                    size_t len, intptr_t *fds, int32_t maxfds,
                                    int32_t *nfds, uint32_t *rflags, uint32_t flags);

/**
 * Whether status, a failed fdsend_recv_part (or fdsend_recv), means that libfdsend refused
 * the next record and a reader cannot go past it: the rule both message channels (the C
 * channel object and the .NET FdChannel) apply to their reads. Pure: no I/O, and the
 * thread's recorded error (fdsend_last_os_error) is left as it was.
 *
 * - Windows (docs/windows-protocol.md): 1 for FDSEND_EPROTO (the bytes there are not a
 *   record, or the record names a sender that is not the peer), FDSEND_ESRCH (its sender
 *   is gone, or the pid now names another process) and FDSEND_EACCES (the sender cannot be
 *   opened). No handle of the record was taken; fdsend_recv_part leaves its data for the
 *   next reads with the same state, so the bytes that follow are not where a message
 *   starts: treat the stream as broken.
 * - POSIX: 0 for every status (the kernel refuses no message that way; every result of
 *   fdsend_recv means what it says there).
 *
 * @return 1 or 0.
 */
FDSEND_API int32_t fdsend_recv_refused(int64_t status);

/**
 * Copy the first bytes of the next message into buf without consuming anything: the
 * message, its data and its descriptors stay queued for the next fdsend_recv (no
 * descriptor is taken, none is installed in this process). For a reader that must size
 * its buffer from a header before receiving a seqpacket record or a datagram whole. Waits
 * as fdsend_recv does (a blocking socket: until a message is queued, within SO_RCVTIMEO;
 * FDSEND_DONTWAIT or a non-blocking socket: FDSEND_EAGAIN).
 *
 * @param sock   Unix domain socket
 * @param buf    where the bytes go; may be NULL only when len == 0
 * @param len    how many bytes to look at (fewer when the message is shorter)
 * @param flags  0 or FDSEND_DONTWAIT
 * @return the bytes copied (0: an empty message, or the end of a stream), or a negative
 *         FDSEND_E* code as fdsend_recv's. Windows: FDSEND_ENOTSUP (a record's handles
 *         travel ahead of its data; read records with fdsend_recv / fdsend_recv_part).
 */
FDSEND_API int64_t fdsend_peek(intptr_t sock, void *buf, size_t len, uint32_t flags);

/**
 * Credentials of the process at the other end of a connected Unix domain socket, as the
 * kernel recorded them at connect()/socketpair()/listen() time: its pid and its
 * effective uid and gid. Any out-pointer may be NULL; all are set to -1 on failure.
 * pid is -1 where the OS does not report it (getpeereid-only systems).
 *
 * @return FDSEND_OK; FDSEND_ENOTCONN when no peer is recorded (not connected, or a
 *         connect()ed datagram socket); FDSEND_ENOTUNIX for a non-Unix socket;
 *         FDSEND_ENOTSUP where the OS has no such call; or another code.
 */
FDSEND_API int32_t fdsend_peer_credentials(intptr_t sock, int64_t *pid, int64_t *uid,
                                           int64_t *gid);

/**
 * Close fds[0 .. nfds) in one call: every entry >= 0 (a HANDLE on Windows); negative
 * entries are skipped, so -1 can mark a slot already handed on. Meant for descriptors the
 * caller owns, e.g. the ones fdsend_recv stored and the caller does not keep: one call
 * for a whole message (a binding crosses into native code once, not once per descriptor).
 * A failing close is not retried (after EINTR the number is already free on Linux).
 *
 * @return FDSEND_OK; FDSEND_EBADF if some entry was not an open descriptor (every other
 *         entry is still closed); FDSEND_EINVAL if nfds < 0, or fds is NULL with nfds > 0.
 */
FDSEND_API int32_t fdsend_close_all(const intptr_t *fds, int32_t nfds);

/** The most descriptors one message can carry here (FDSEND_MAX_FDS). */
FDSEND_API int32_t fdsend_max_fds(void);

/** A static English description of an FDSEND_E* code (never NULL). */
FDSEND_API const char *fdsend_strerror(int32_t code);

/** The library's version, "MAJOR.MINOR.PATCH" (static string). */
FDSEND_API const char *fdsend_version(void);

/** The OS error number (errno / GetLastError) saved by the last failing call on this
 *  thread; useful with FDSEND_EOTHER. 0 if the last call on this thread succeeded. */
FDSEND_API int32_t fdsend_last_os_error(void);

/* ---- Convenience and description -------------------------------------------------------- */

/**
 * Receive exactly len bytes on a STREAM socket, with every descriptor that comes with them
 * (the MSG_WAITALL case: a count, then batches, as HAProxy's _getsocks and s6-fdholder
 * send them). Loops over fdsend_recv-style reads and merges what arrives into one result.
 *
 * - Descriptors go to fds[0 .. *nfds) in arrival order (close-on-exec, owned by the
 *   caller); any beyond maxfds are closed and FDSEND_RECV_FDS_TRUNCATED is set.
 * - Once the first byte has arrived the call waits for the rest whatever the socket mode
 *   (like the channel), bounded by SO_RCVTIMEO when set.
 * - Returns len on success. If the peer closes before the first byte: 0 with
 *   FDSEND_RECV_END_OF_STREAM in *rflags. Before the first byte, FDSEND_EAGAIN (nothing
 *   consumed) and FDSEND_ETIMEDOUT behave as in fdsend_recv.
 * - If the stream ends, times out or fails after the first byte: a negative code
 *   (FDSEND_EPROTO for an end of stream or a timeout inside the expected bytes, with
 *   fdsend_last_os_error() ETIMEDOUT for the timeout), every descriptor received by this
 *   call is closed, and the stream position is lost. SO_RCVTIMEO bounds the WHOLE call,
 *   counted from its start (a peer trickling a byte at a time cannot stretch it); signals
 *   never restart it.
 * - A thread cancelled (pthread_cancel) inside the call closes what it had received.
 * - The merge rules are fdsend_recv_exact_step's (below); this is its blocking loop.
 * - Not connected: FDSEND_ENOTCONN. Windows: records are read whole (fdsend_recv), so a
 *   record with more data than the bytes still due is FDSEND_EMSGSIZE (nothing of it
 *   consumed; the descriptors received before it are closed, as for any failure).
 *
 * @param sock    connected Unix STREAM socket (another type: FDSEND_ENOTSUP)
 * @param buf     where the bytes go; may be NULL only when len == 0
 * @param len     how many bytes to receive (0 returns 0 at once without reading)
 * @param fds     where descriptors go; may be NULL only when maxfds == 0
 * @param maxfds  room in fds[] (0 .. any; a merged result can exceed FDSEND_MAX_FDS)
 * @param nfds    out: descriptors stored; may be NULL only when maxfds == 0
 * @param rflags  out: FDSEND_RECV_* bits; may be NULL
 * @param flags   0 or FDSEND_DONTWAIT (do not wait for the first byte)
 * @return len, 0 at end of stream, or a negative FDSEND_E* code.
 */
FDSEND_API int64_t fdsend_recv_exact(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                                     int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                                     uint32_t flags);

/**
 * Where a receive of exactly len bytes (fdsend_recv_exact_step) stands. The caller owns it:
 * initialise it with FDSEND_EXACT_STATE_INIT (or zero it) for each new receive, read its
 * public fields, and otherwise leave it as the library left it. Plain data, no resource to
 * free; one receive at a time (not two threads at once).
 */
typedef struct fdsend_exact_state {
    uint64_t received;    /**< out: bytes stored at buf[0 .. received) so far */
    int32_t nfds;         /**< out: descriptors stored at fds[0 .. nfds) so far */
    uint32_t rflags;      /**< out: FDSEND_RECV_FDS_TRUNCATED, FDSEND_RECV_END_OF_STREAM */
    uint64_t reserved[2]; /**< the library's (the socket it began on, whether it ended) */
} fdsend_exact_state;

/** A fresh fdsend_exact_state (the same as one filled with zeros). */
#define FDSEND_EXACT_STATE_INIT {0, 0, 0, {0, 0}}

/** fdsend_recv_exact_step's result when the receive is complete. */
#define FDSEND_EXACT_DONE 1

/**
 * One step of receiving exactly len bytes on a STREAM socket with every descriptor that
 * comes with them: ONE receive that never waits (for an event loop, or a caller that waits
 * its own way), merged into the caller's buf, fds and state. The merge rules of
 * fdsend_recv_exact, which loops over this step:
 *
 * - The bytes go to buf[state->received ..]; the descriptors are appended to
 *   fds[state->nfds ..] in arrival order (close-on-exec). Once the receive holds maxfds,
 *   every further descriptor is closed and FDSEND_RECV_FDS_TRUNCATED set in state->rflags
 *   (as when the kernel dropped some). maxfds may grow between steps (a caller growing its
 *   array as descriptors arrive: one step adds at most FDSEND_MAX_FDS), never below
 *   state->nfds.
 * - Until the receive is done, fds[0 .. state->nfds) belong to the receive: a caller that
 *   gives up (cancellation) closes them with fdsend_close_all. Once done, they are the
 *   caller's.
 *
 * @param sock    connected Unix STREAM socket (another type: FDSEND_ENOTSUP), the same for
 *                every step of one receive (another one: FDSEND_EINVAL)
 * @param state   the receive's state (see fdsend_exact_state); not NULL
 * @param buf     where the bytes go, the same every step; may be NULL only when len == 0
 * @param len     how many bytes to receive in all, the same every step
 * @param fds     where descriptors go; may be NULL only when maxfds == 0
 * @param maxfds  how many descriptors to keep in all (0 .. any)
 * @param flags   0 (no flag is defined yet; another value: FDSEND_EINVAL)
 * @return
 *   - FDSEND_EXACT_DONE: state->received == len (len == 0: at once, nothing read), or the
 *     peer closed its end before the first byte: state->received 0, FDSEND_RECV_END_OF_STREAM
 *     in state->rflags. A further step returns FDSEND_EXACT_DONE again, reading nothing.
 *   - FDSEND_OK: a piece arrived and more is due: step again.
 *   - FDSEND_EAGAIN: nothing is queued; nothing consumed or lost: wait until the socket is
 *     readable (fdsend_wait, a poller) and step again.
 *   - Another negative FDSEND_E* code: the receive failed and is over (a further step:
 *     FDSEND_EINVAL). FDSEND_EPROTO with FDSEND_RECV_END_OF_STREAM in state->rflags: the
 *     stream ended after the first byte and before the last. Every descriptor the receive had stored is closed and its slot in fds[] set to
 *     -1; state->nfds still says how many there were and state->received how many bytes
 *     were consumed (if any, the stream position is lost: close the connection). The
 *     checks of the arguments (FDSEND_EBADF, FDSEND_EINVAL for a bad argument or state,
 *     and on the first step FDSEND_ENOTSOCK / FDSEND_ENOTSUP for the socket) fail before
 *     any of that: they change nothing and close nothing.
 *   Windows: records are read whole (fdsend_recv), so a record with more data than the
 *   bytes still due gives FDSEND_EMSGSIZE; where the OS has no MSG_DONTWAIT: FDSEND_ENOTSUP.
 */
FDSEND_API int32_t fdsend_recv_exact_step(intptr_t sock, fdsend_exact_state *state, void *buf,
                                          size_t len, intptr_t *fds, int32_t maxfds,
                                          uint32_t flags);

#if !defined(_WIN32)
/** fdsend_send with plain int descriptors (POSIX only: the intptr_t functions also carry
 *  Windows HANDLEs). Same rules and results: FDSEND_EBADF for sock < 0, FDSEND_EINVAL for
 *  nfds < 0 or fds NULL with nfds > 0, FDSEND_ETOOMANYFDS for nfds > FDSEND_MAX_FDS
 *  (checked before fds[] is read), FDSEND_EBADF for a negative descriptor. */
FDSEND_API int64_t fdsend_sendfds(int sock, const void *buf, size_t len, const int *fds,
                                  int nfds, unsigned flags);

/** fdsend_recv with plain int descriptors (POSIX only). Same rules and results (maxfds
 *  may exceed FDSEND_MAX_FDS; *rflags gets the FDSEND_RECV_* bits). */
FDSEND_API int64_t fdsend_recvfds(int sock, void *buf, size_t len, int *fds, int maxfds,
                                  int *nfds, unsigned *rflags, unsigned flags);
#endif /* !defined(_WIN32) */

/* ---- Readiness engine --------------------------------------------------------------------
 * One waiting subsystem for event loops: epoll on Linux and Android, kqueue on the BSDs
 * and macOS, WSAPoll on Windows, behind one API. A poller is a set of descriptors, each
 * registered with an interest (FDSEND_POLL_IN, FDSEND_POLL_OUT) and a caller-chosen 64-bit
 * token;
 * fdsend_poller_wait returns the tokens of those that became ready. It is what FdSend's
 * async calls wait on: one thread at a time runs fdsend_poller_wait and retries the
 * operations whose sockets became ready (no thread is blocked per pending operation).
 *
 * Registrations are either edge-triggered (FDSEND_POLL_EDGE: stay registered, each new
 * readiness is reported once; the caller retries until FDSEND_EAGAIN before it waits again)
 * or one-shot (FDSEND_POLL_ONESHOT: reported once, then disarmed until
 * fdsend_poller_modify re-arms it); with neither, level-triggered. Remove a descriptor
 * before closing it if it may have been duplicated (epoll keeps a registration until every
 * duplicate of the open file is closed; a closed descriptor is otherwise dropped silently,
 * without an event).
 *
 * The poller's own descriptors are close-on-exec. Fork: an epoll instance is shared with a
 * child created by fork() (a kqueue is not inherited); a child must not use its parent's
 * poller: create a new one (or exec). Thread-safe: add/modify/remove/wake may be called
 * from any thread while another thread waits.
 * Windows: only sockets (SOCKET values) can be registered (another handle: FDSEND_EBADF);
 * WSAPoll is level-triggered, so FDSEND_POLL_EDGE is refused with FDSEND_ENOTSUP (use
 * FDSEND_POLL_ONESHOT); a socket whose one-shot registration fired may be added again
 * (its value may belong to a new socket); the poller's own sockets are not inheritable. */
/** Interest and result bits (fdsend_poll_event.events, fdsend_poller_add's events). */
enum {
    FDSEND_POLL_IN = 0x1,        /**< readable (data, end of stream, an error or a connection) */
    FDSEND_POLL_OUT = 0x2,       /**< writable (room in the send buffer, or an error) */
    FDSEND_POLL_ERR = 0x4,       /**< (result only) an error or hang-up: retry either direction */
    FDSEND_POLL_EDGE = 0x100,    /**< (registration) edge-triggered */
    FDSEND_POLL_ONESHOT = 0x200  /**< (registration) report once, then disarmed until modified */
};

/** One ready descriptor, as fdsend_poller_wait reports it. */
typedef struct fdsend_poll_event {
    uint64_t token;  /**< the token given to fdsend_poller_add / fdsend_poller_modify */
    uint32_t events; /**< FDSEND_POLL_IN / FDSEND_POLL_OUT / FDSEND_POLL_ERR */
    uint32_t reserved;
} fdsend_poll_event;

/** Create a poller (close-on-exec). *poller gets its handle (0 on failure).
 *  @return FDSEND_OK, FDSEND_EINVAL (NULL), FDSEND_EMFILE, FDSEND_ENOBUFS, or another code. */
FDSEND_API int32_t fdsend_poller_create(intptr_t *poller);

/** Destroy a poller made by fdsend_poller_create; no thread may be waiting on it.
 *  @return FDSEND_OK, FDSEND_EINVAL (0). */
FDSEND_API int32_t fdsend_poller_destroy(intptr_t poller);

/** Register fd with an interest (FDSEND_POLL_IN and/or FDSEND_POLL_OUT, plus
 *  FDSEND_POLL_EDGE or FDSEND_POLL_ONESHOT) and a token.
 *  @return FDSEND_OK, FDSEND_EBADF, FDSEND_EINVAL (already registered, bad bits), FDSEND_ENOBUFS,
 *          or another code. */
FDSEND_API int32_t fdsend_poller_add(intptr_t poller, intptr_t fd, uint32_t events, uint64_t token);

/** Change (or re-arm, for FDSEND_POLL_ONESHOT) a registration.
 *  @return FDSEND_OK, FDSEND_EBADF, FDSEND_ENOENT (not registered), or another code. */
FDSEND_API int32_t fdsend_poller_modify(intptr_t poller, intptr_t fd, uint32_t events, uint64_t token);

/** Remove fd's registration. @return FDSEND_OK, FDSEND_EBADF, FDSEND_ENOENT, or another code. */
FDSEND_API int32_t fdsend_poller_remove(intptr_t poller, intptr_t fd);

/** Wait up to timeout_ms (-1: no limit, 0: do not wait) for registered descriptors to become
 *  ready; stores up to max (>= 1) of them in events[] (an edge is never dropped: what does
 *  not fit stays for the next call).
 *  @return how many were stored (0: the time ran out, a signal interrupted, or
 *          fdsend_poller_wake was called), or a negative FDSEND_E* code. */
FDSEND_API int32_t fdsend_poller_wait(intptr_t poller, fdsend_poll_event *events, int32_t max,
                                      int32_t timeout_ms);

/** Make a current or the next fdsend_poller_wait return (with what is ready, maybe 0).
 *  Async-signal-safe. @return FDSEND_OK, FDSEND_EINVAL. */
FDSEND_API int32_t fdsend_poller_wake(intptr_t poller);

/**
 * Wait until sock is ready in one direction: readable (FDSEND_POLL_IN: data, the end of the
 * stream, a connection to accept) or writable (FDSEND_POLL_OUT: room in the send buffer).
 * An error or hang-up pending on the socket counts as ready (the next call on it reports
 * it). Nothing is consumed. This is the wait every blocking call of the library makes
 * (poll() on POSIX, WSAPoll on Windows), for a caller whose socket is non-blocking, e.g. a
 * binding whose runtime set O_NONBLOCK and that still offers blocking calls. A signal does
 * not end the wait: it goes on for what is left of timeout_ms, on the library's deadline
 * clock (CLOCK_MONOTONIC; Windows: QueryPerformanceCounter), so it never ends early.
 *
 * @param sock        a socket (on POSIX any descriptor poll() accepts; a SOCKET on Windows)
 * @param events      FDSEND_POLL_IN or FDSEND_POLL_OUT (exactly one)
 * @param timeout_ms  the longest wait in milliseconds: -1 without limit, 0 to look once
 * @return FDSEND_OK (ready), FDSEND_ETIMEDOUT (not ready within timeout_ms), FDSEND_EINVAL
 *         (events other than one direction, timeout_ms < -1), FDSEND_EBADF (not an open
 *         descriptor; on Windows a value that is not a socket may report FDSEND_ENOTSOCK),
 *         or another code.
 */
FDSEND_API int32_t fdsend_wait(intptr_t sock, uint32_t events, int32_t timeout_ms);

/** Socket types, platform-neutral (fdsend_socketpair, fdsend_fd_info). */
enum {
    FDSEND_SOCK_STREAM = 1,
    FDSEND_SOCK_DGRAM = 2,
    FDSEND_SOCK_SEQPACKET = 3
};

/**
 * Create a connected pair of Unix domain sockets of the given type, both close-on-exec.
 * sv[0] and sv[1] belong to the caller. To hand one end to a child process, make that end
 * inheritable (fdsend_set_inheritable) just before starting the child and close it in the
 * parent afterwards.
 *
 * @param type   FDSEND_SOCK_STREAM, FDSEND_SOCK_DGRAM or FDSEND_SOCK_SEQPACKET
 * @param sv     out: the two ends (set to -1 on failure)
 * @return FDSEND_OK, FDSEND_EINVAL (bad type, NULL sv), FDSEND_ENOTSUP (the OS lacks the
 *         type), FDSEND_EMFILE, or another code.
 */
FDSEND_API int32_t fdsend_socketpair(int32_t type, intptr_t sv[2]);

/**
 * Set (inheritable != 0) or clear close-on-exec's opposite: an inheritable descriptor is
 * kept by programs this process starts (FD_CLOEXEC cleared); 0 makes it close-on-exec.
 * @return FDSEND_OK, FDSEND_EBADF, or another code.
 */
FDSEND_API int32_t fdsend_set_inheritable(intptr_t fd, int32_t inheritable);

/**
 * Duplicate fd into a new close-on-exec descriptor (F_DUPFD_CLOEXEC; DuplicateHandle on
 * Windows) that refers to the same open file. Two owners that must close independently
 * (a server framework that closes its listener when it stops, and a handoff that keeps
 * the listener for the next process) each get their own descriptor.
 *
 * @param fd   an open descriptor (a HANDLE on Windows)
 * @param out  out: the new descriptor, owned by the caller (-1 on failure)
 * @return FDSEND_OK, FDSEND_EBADF, FDSEND_EINVAL (NULL out), FDSEND_EMFILE, or another code.
 */
FDSEND_API int32_t fdsend_dup(intptr_t fd, intptr_t *out);

/** What a descriptor is (fdsend_fd_info_t.kind). */
enum {
    FDSEND_KIND_OTHER = 0,     /**< anything else (epoll, timerfd, signalfd, O_PATH, ...) */
    FDSEND_KIND_FILE = 1,      /**< a regular file (not a memfd) */
    FDSEND_KIND_DIRECTORY = 2,
    FDSEND_KIND_PIPE = 3,      /**< a pipe or FIFO */
    FDSEND_KIND_SOCKET = 4,
    FDSEND_KIND_MEMFD = 5,     /**< a memfd_create() file (Linux) */
    FDSEND_KIND_CHAR_DEVICE = 6,
    FDSEND_KIND_BLOCK_DEVICE = 7,
    FDSEND_KIND_EVENTFD = 8,   /**< Linux eventfd */
    FDSEND_KIND_PIDFD = 9      /**< Linux pidfd */
};

/** Socket families, platform-neutral (fdsend_fd_info_t.family). */
enum {
    FDSEND_FAMILY_NONE = 0,    /**< not a socket */
    FDSEND_FAMILY_UNIX = 1,
    FDSEND_FAMILY_INET = 2,
    FDSEND_FAMILY_INET6 = 3,
    FDSEND_FAMILY_OTHER = 4
};

/** fdsend_fd_info_t.access */
enum {
    FDSEND_ACCESS_NONE = 0,    /**< O_PATH (Linux): neither readable nor writable */
    FDSEND_ACCESS_READ = 1,
    FDSEND_ACCESS_WRITE = 2,
    FDSEND_ACCESS_READ_WRITE = 3
};

/** fdsend_fd_info_t.flags */
enum {
    FDSEND_FD_CLOEXEC = 1,     /**< close-on-exec is set */
    FDSEND_FD_NONBLOCK = 2,    /**< O_NONBLOCK is set on the open file description */
    FDSEND_FD_LISTENING = 4,   /**< a socket in the listening state */
    FDSEND_FD_APPEND = 8       /**< O_APPEND */
};

/** fdsend_fd_info_t.seals: the memfd seals in force (F_GET_SEALS), platform-neutral. */
enum {
    FDSEND_SEAL_SEAL = 1,
    FDSEND_SEAL_SHRINK = 2,
    FDSEND_SEAL_GROW = 4,
    FDSEND_SEAL_WRITE = 8,
    FDSEND_SEAL_FUTURE_WRITE = 16
};

/** What fdsend_fd_info reports about a descriptor. Fields that do not apply are 0 (size:
 *  -1). The struct only grows at its end; struct_size says how much the library wrote. */
typedef struct fdsend_fd_info_t {
    uint32_t struct_size;  /**< in: sizeof(fdsend_fd_info_t) as the caller knows it */
    int32_t kind;          /**< FDSEND_KIND_* */
    int32_t access;        /**< FDSEND_ACCESS_* (from the open file's status flags) */
    uint32_t flags;        /**< FDSEND_FD_* bits */
    int32_t family;        /**< sockets: FDSEND_FAMILY_*; else FDSEND_FAMILY_NONE */
    int32_t socket_type;   /**< sockets: FDSEND_SOCK_*; 0 if another type or not a socket */
    int64_t size;          /**< regular files and memfds: the size in bytes; else -1 */
    uint32_t seals;        /**< memfds: FDSEND_SEAL_* bits; else 0 */
    uint32_t reserved;     /**< 0 */
} fdsend_fd_info_t;

/**
 * Describe descriptor fd without changing it: its kind, access mode, close-on-exec and
 * non-blocking flags, for a socket its family, type and whether it listens, for a file its
 * size, for a memfd its seals. Meant for received descriptors, before taking or trusting
 * them.
 *
 * @param fd    an open descriptor (a HANDLE on Windows)
 * @param info  out; set info->struct_size = sizeof *info first
 * @return FDSEND_OK, FDSEND_EBADF (not open), FDSEND_EINVAL (NULL info, or struct_size
 *         smaller than the first version of the struct), or another code.
 */
FDSEND_API int32_t fdsend_fd_info(intptr_t fd, fdsend_fd_info_t *info);

/* ---- Message channel: framed messages (payload + descriptors) ---------------------------
 *
 * The channel speaks a small framed protocol (docs/wire-format.md) over any connected Unix
 * domain socket, stream included: each message sent arrives as exactly one message at the
 * peer with the same payload and descriptors, however the kernel splits the bytes. A frame
 * is an 8-byte little-endian header (version 1, flags 0, u16 descriptor count, u32 payload
 * length) followed by the payload; the descriptors travel in one SCM_RIGHTS message
 * attached to the header's first byte. On seqpacket and datagram sockets a frame is
 * exactly one datagram. Both peers must use the framing: it is not compatible with plain
 * fdsend_send/fdsend_recv or IO::FDPass traffic. The rules live in the channel codec
 * (fdsend_frame_*, below), which these calls drive.
 *
 * Two ways to use it:
 *  - fdsend_channel_open makes a channel object for a socket (the caller owns it; close it
 *    with fdsend_channel_close, which leaves the socket open). It looks the socket's type
 *    and family up once and holds a lock per direction: any number of threads may call
 *    fdsend_channel_send, and any number fdsend_channel_recv, on one channel at once; on
 *    stream sockets whole frames are serialised per direction, so messages never
 *    interleave. Use one channel object per socket (two objects on one socket do not
 *    know of each other), and none in a child created by fork() while another thread
 *    was inside a call on it. On Linux a channel object reads ahead on stream sockets
 *    (docs/wire-format.md 4.1): at a frame boundary one recvmsg of up to 4 KiB, so a
 *    message costs one system call, not two; it holds the bytes and descriptors of later
 *    frames that read brought (the next receives take them first; fdsend_channel_close
 *    closes the descriptors still held), so read such a socket only through its channel.
 *  - fdsend_msg_send / fdsend_msg_recv take the socket itself and keep no state: one
 *    caller per direction at a time on a stream socket (concurrent callers need a channel
 *    object); any number on seqpacket and datagram sockets. Each call looks up the
 *    socket's type (and, sending descriptors, its family) again.
 * Both speak the same format, so the two peers may use either. Which to use: a channel
 * object for a connection that carries many messages or is shared by threads (on Linux it
 * is also the faster: one recvmsg per message); fdsend_msg_* for a short exchange where
 * keeping an object is awkward (the file broker's calls and the handoff program use it).
 * On one socket, sends may mix the two; receives must not once a channel object has read
 * ahead (above).
 *
 * Blocking: a call that has started a frame on a stream socket finishes it, waiting
 * (the library's wait, fdsend_wait's) if the socket is non-blocking, so
 * a frame is never half-sent or half-consumed. FDSEND_EAGAIN (non-blocking socket, or
 * FDSEND_DONTWAIT) means that nothing of the frame was sent or consumed. A frame a channel
 * object holds in part from an earlier read-ahead has begun: the receive finishes it. The socket's
 * SO_RCVTIMEO / SO_SNDTIMEO, when set, bounds every wait, before and inside a frame, and
 * the wait behind another thread's frame on a channel object: before the frame starts,
 * the call gives FDSEND_ETIMEDOUT with nothing sent or consumed once the timeout, counted
 * from the start of the call, has passed; inside a frame the timeout counts from the last
 * byte that moved, so a peer that stops inside a frame for that long gives a receive
 * FDSEND_EPROTO (it can no longer hold the call, or a thread, forever) and a send
 * FDSEND_ETIMEDOUT. Signals never restart these timeouts. A call that would have to wait
 * for another thread's frame returns FDSEND_EAGAIN if the socket is non-blocking or
 * FDSEND_DONTWAIT is given. Set SO_RCVTIMEO on a socket whose peer is not trusted.
 * A thread cancelled (pthread_cancel) inside a call releases the channel's lock and closes
 * the descriptors of the frame it was receiving; if it was inside a stream frame, the
 * stream is at an unknown position (close the socket; a channel object then answers
 * FDSEND_EPROTO).
 *
 * On a stream socket, every error other than FDSEND_EAGAIN, FDSEND_EMSGSIZE,
 * FDSEND_ETOOMANYFDS, and FDSEND_EMFILE and FDSEND_ETIMEDOUT from a receive,
 * leaves the byte stream at an unknown position: close the socket (a timed-out
 * send may have sent part of its frame). Seqpacket and datagram sockets stay usable.
 *
 * Windows (docs/wire-format.md 2a, docs/windows-protocol.md): the same calls and results
 * over libfdsend's records on a connected stream socket (TCP loopback or AF_UNIX, both of
 * which carry handles; any other socket type: FDSEND_ENOTSUP). A frame is sent as the .NET
 * FdChannel sends it: header and a payload of up to 64 KiB as one record with the handles, a
 * larger payload as a header record with the handles and then records of payload; the two
 * interoperate. A receive reads the records with fdsend_recv_part, so a record libfdsend
 * refuses (not a record, or its sender check fails: FDSEND_EPROTO, FDSEND_ESRCH,
 * FDSEND_EACCES: fdsend_recv_refused) is returned as that code and, on a channel
 * object, breaks it (every later receive: FDSEND_EPROTO); a record that brings handles
 * anywhere but at a frame's first byte, or a record without data, is FDSEND_EPROTO; a
 * sender that dies in the middle of a record gives FDSEND_ECONNRESET, one whose connection
 * ends between records inside a frame FDSEND_EPROTO. Waiting: Windows cannot ask a socket
 * whether it is non-blocking, so only FDSEND_DONTWAIT refuses to wait behind another
 * thread's frame (FDSEND_EAGAIN); otherwise the call waits for it within SO_RCVTIMEO /
 * SO_SNDTIMEO and then for its own first record within what is left of that timeout. No
 * pthread cancellation there: the notes on cancelled threads do not apply. A channel object
 * reads no ahead there, but keeps its place inside a record between receives: mixing its
 * receives with fdsend_msg_recv works only while frames end where records end.
 */

/** Size of a frame header on the wire, in bytes. */
#define FDSEND_MSG_HEADER_SIZE 8
/** The protocol version this library sends and accepts (header byte 0). */
#define FDSEND_MSG_VERSION 1
/** The largest payload the wire format can describe (u32 length field). */
#define FDSEND_MSG_MAX_PAYLOAD 0xFFFFFFFFu

/**
 * Send one message: len bytes of payload and nfds descriptors, as one frame.
 *
 * - Stream socket: header and payload go in one sendmsg with the descriptors attached;
 *   if the kernel takes only part of it, the rest follows without descriptors (waiting
 *   for room with poll() if needed) until the whole frame is sent.
 * - Seqpacket/datagram socket: the frame is one datagram; FDSEND_EMSGSIZE if it is
 *   larger than the socket's send buffer allows (nothing is sent).
 * - The descriptors stay owned by the caller, whatever the result (the peer gets
 *   duplicates).
 *
 * @param sock     connected Unix domain socket (stream, seqpacket or connected datagram)
 * @param payload  bytes to send; may be NULL only when len == 0
 * @param len      0 .. FDSEND_MSG_MAX_PAYLOAD (larger: FDSEND_EMSGSIZE, nothing sent)
 * @param fds      descriptors to send; may be NULL only when nfds == 0
 * @param nfds     0 .. fdsend_max_fds() (more: FDSEND_ETOOMANYFDS, nothing sent)
 * @param flags    0 or FDSEND_DONTWAIT (do not wait before the frame starts)
 * @return FDSEND_OK when the whole frame was sent; FDSEND_EAGAIN when nothing was sent
 *         (try again when the socket is writable); another FDSEND_E* code otherwise
 *         (FDSEND_EPIPE when the peer closed; no SIGPIPE is raised).
 */
FDSEND_API int32_t fdsend_msg_send(intptr_t sock, const void *payload, size_t len,
                                   const intptr_t *fds, int32_t nfds, uint32_t flags);

/**
 * Receive one message sent by fdsend_msg_send (or any peer that speaks the format).
 *
 * On success the payload is in buf[0 .. return value), the descriptors in
 * fds[0 .. *nfds) (close-on-exec, owned by the caller), in the order they were sent.
 * On every error *nfds is 0 and every descriptor of the frame is closed; the contents of
 * buf are unspecified. The frame is consumed whole, and the channel stays in sync, for:
 *  - FDSEND_EMSGSIZE: the payload is longer than cap (it was read and discarded);
 *  - FDSEND_ETOOMANYFDS: the frame carries more descriptors than maxfds;
 *  - FDSEND_EMFILE: the kernel could not install every descriptor (MSG_CTRUNC: the
 *    process is at RLIMIT_NOFILE, or a security module refused one).
 * Other results:
 *  - FDSEND_EOF: the peer closed the connection at a frame boundary (orderly end);
 *  - FDSEND_EPROTO: the peer broke the format (bad version or flags, a descriptor count
 *    that differs from the header's or exceeds fdsend_max_fds(), descriptors attached to
 *    any byte but the header's first, a datagram whose length differs from the header's,
 *    end of stream inside a frame, or no progress inside a frame for SO_RCVTIMEO): on a
 *    stream socket, close it;
 *  - FDSEND_EAGAIN: nothing was consumed; try again when the socket is readable;
 *  - FDSEND_ETIMEDOUT: SO_RCVTIMEO expired before a frame started; nothing consumed;
 *  - FDSEND_ENOTCONN: the socket is not connected (or listens).
 *
 * Windows: a call that keeps no state reads whole records, so it needs every frame to end
 * where a record ends, which every FdSend sender (fdsend_msg_send, fdsend_channel_send, the
 * .NET FdChannel) guarantees. A frame that ends inside a record (the format allows it: a
 * foreign sender may pack two frames into one record) is FDSEND_EPROTO here, its handles
 * closed, since the rest of that record cannot be read as a record by the next call; a
 * channel object keeps its place inside a record and reads such frames.
 *
 * @param sock    connected Unix domain socket (or a bound datagram socket)
 * @param buf     where the payload goes; may be NULL only when cap == 0
 * @param cap     the largest payload accepted (the caller's limit; e.g. 16 MiB)
 * @param fds     where descriptors go; may be NULL only when maxfds == 0
 * @param maxfds  the most descriptors accepted in one message (0 .. any)
 * @param nfds    out: descriptors stored; may be NULL only when maxfds == 0
 * @param flags   0 or FDSEND_DONTWAIT (do not wait before the frame starts)
 * @return the payload length (>= 0), or a negative FDSEND_E* code.
 */
FDSEND_API int64_t fdsend_msg_recv(intptr_t sock, void *buf, size_t cap, intptr_t *fds,
                                   int32_t maxfds, int32_t *nfds, uint32_t flags);

/** A channel object (opaque): a socket's type and family, looked up once, and a lock per
 *  direction. Owned by the caller of fdsend_channel_open; see the section's comment. */
typedef struct fdsend_channel fdsend_channel;

/**
 * Make a channel object for sock. The socket stays the caller's: the channel neither
 * closes it nor changes its mode or options, and it must stay open until
 * fdsend_channel_close. A socket of another family than AF_UNIX (e.g. TCP) carries
 * messages without descriptors; sending descriptors on it gives FDSEND_ENOTUNIX (POSIX;
 * on Windows a connected stream socket of either family carries handles, and other socket
 * types give FDSEND_ENOTSUP).
 *
 * @param sock   connected socket (stream, seqpacket or connected datagram), or a bound
 *               datagram socket to receive on
 * @param flags  0 (no flags are defined)
 * @param out    out: the channel, or NULL on every error
 * @return FDSEND_OK; FDSEND_EINVAL (out NULL, flags); FDSEND_EBADF / FDSEND_ENOTSOCK
 *         (sock); FDSEND_ENOTSUP (a socket type other than the three); FDSEND_ENOBUFS
 *         (out of memory).
 */
FDSEND_API int32_t fdsend_channel_open(intptr_t sock, uint32_t flags, fdsend_channel **out);

/**
 * fdsend_msg_send on a channel object: the same arguments after ch, the same results
 * (FDSEND_EINVAL for a NULL ch), and safe for any number of threads at once (whole frames
 * serialised on stream sockets). Waiting behind another thread's frame is bounded by
 * SO_SNDTIMEO (FDSEND_ETIMEDOUT) and refused with FDSEND_EAGAIN for a non-blocking socket
 * or FDSEND_DONTWAIT. The descriptors stay owned by the caller.
 */
FDSEND_API int32_t fdsend_channel_send(fdsend_channel *ch, const void *payload, size_t len,
                                       const intptr_t *fds, int32_t nfds, uint32_t flags);

/**
 * fdsend_msg_recv on a channel object: the same arguments after ch, the same results
 * (FDSEND_EINVAL for a NULL ch), and safe for any number of threads at once (each gets
 * whole messages). Waiting behind another thread's frame is bounded by SO_RCVTIMEO
 * (FDSEND_ETIMEDOUT, nothing consumed) and refused with FDSEND_EAGAIN for a non-blocking
 * socket or FDSEND_DONTWAIT. Received descriptors are the caller's, as there.
 */
FDSEND_API int64_t fdsend_channel_recv(fdsend_channel *ch, void *buf, size_t cap,
                                       intptr_t *fds, int32_t maxfds, int32_t *nfds,
                                       uint32_t flags);

/**
 * Free a channel object (NULL: nothing). The socket stays open and the caller's. No thread
 * may be inside a call on ch, or make one after.
 */
FDSEND_API void fdsend_channel_close(fdsend_channel *ch);

/* ---- Channel codec: the framing rules, without I/O --------------------------------------
 *
 * Every rule of docs/wire-format.md lives here once: the header's encoding, and what a
 * receiver concludes from each read (stream) or record (seqpacket/datagram). The codec
 * does no I/O, allocates nothing, keeps no global state and never touches a descriptor:
 * the caller does the reads and writes (fdsend_send / fdsend_recv, recvmsg, or a runtime's
 * own socket calls), feeds the codec what each read returned, and closes or hands out the
 * descriptors as the outcome says. libfdsend's channel (fdsend_channel_*, fdsend_msg_*)
 * and the .NET FdChannel both drive their I/O with it. Available on every OS.
 * The functions are pure: any thread may call them, on distinct readers at once.
 */

/**
 * Write the 8-byte header of a frame carrying len payload bytes and nfds descriptors.
 * @return FDSEND_OK; FDSEND_EINVAL (header NULL, nfds < 0); FDSEND_EMSGSIZE (len >
 *         FDSEND_MSG_MAX_PAYLOAD); FDSEND_ETOOMANYFDS (nfds > FDSEND_MAX_FDS). On an error
 *         header is left unchanged.
 */
FDSEND_API int32_t fdsend_frame_encode(uint8_t *header, uint64_t len, int32_t nfds);

/** What the next read of a stream frame is for (fdsend_frame_reader_want). */
enum {
    /** Header bytes: read at most n bytes (never more: the next frame's bytes and
     *  descriptors could join an over-long read) and feed them. The read at offset 0 is
     *  the frame's first: it collects the frame's descriptors (room for FDSEND_MAX_FDS). */
    FDSEND_FRAME_HEADER = 1,
    /** Payload bytes: read at most n bytes into the payload buffer at *offset, then feed
     *  the count (the bytes themselves are not needed). */
    FDSEND_FRAME_PAYLOAD = 2,
    /** Payload bytes to discard (the frame will be rejected: over the limit, too many
     *  descriptors, or the kernel dropped descriptors): read at most n bytes anywhere
     *  (a scratch buffer), then feed the count. */
    FDSEND_FRAME_DISCARD = 3
};

/** Flags describing a read, for fdsend_frame_reader_feed / fdsend_frame_check_record. */
enum {
    /** The kernel dropped descriptors of this read (MSG_CTRUNC; fdsend_recv's
     *  FDSEND_RECV_FDS_TRUNCATED when it was given room for FDSEND_MAX_FDS). */
    FDSEND_FRAME_IN_CTRUNC = 1,
    /** The read returned 0 bytes because the peer closed its end (stream: n must be 0). */
    FDSEND_FRAME_IN_EOF = 2,
    /** The record was longer than the buffer (MSG_TRUNC; check_record only). */
    FDSEND_FRAME_IN_TRUNC = 4,
    /** The record came from a SOCK_SEQPACKET socket, where an empty record without
     *  descriptors is the end of the connection (check_record only; a SOCK_DGRAM one is a
     *  protocol error). */
    FDSEND_FRAME_IN_SEQPACKET = 8,
    /** feed only: the bytes are part of the read announced by fdsend_frame_reader_begin_ahead
     *  (nfds 0, no other flag: that read's descriptors and flags went to begin_ahead). */
    FDSEND_FRAME_IN_AHEAD = 16
};

/** fdsend_frame_reader_feed: the frame is not complete; ask fdsend_frame_reader_want. */
#define FDSEND_FRAME_MORE 1

/**
 * The state of one stream receiver between reads: a plain struct of FDSEND_FRAME_READER_SIZE
 * bytes (8-byte aligned) that the caller allocates anywhere (stack, object field, pinned
 * managed memory) and sets up with fdsend_frame_reader_init. Its fields are private to the
 * codec: read them only through the functions below. It holds no descriptor and no
 * pointer, so it may be copied, moved, or dropped at any time.
 */
typedef struct fdsend_frame_reader {
    uint64_t cap;        /* the receiver's payload limit */
    uint64_t remaining;  /* payload bytes still to come */
    uint64_t ahead;      /* bytes of the read-ahead read not fed yet */
    uint32_t len;        /* the header's length */
    int32_t maxfds;      /* the receiver's descriptor limit */
    int32_t nfds;        /* descriptors of the frame being read */
    int32_t ahead_nfds;  /* descriptors of the read-ahead read that no frame has taken */
    int32_t done_nfds;   /* descriptors of the frame completed last */
    uint8_t header[8];   /* the header bytes so far */
    uint8_t have;        /* how many */
    uint8_t state;       /* header, payload/discard, broken */
    uint8_t ctrunc;      /* the frame's descriptors came with FDSEND_FRAME_IN_CTRUNC */
    uint8_t ahead_flags; /* read-ahead bookkeeping */
} fdsend_frame_reader;
/** sizeof(fdsend_frame_reader): bindings allocate this many bytes, 8-byte aligned. */
#define FDSEND_FRAME_READER_SIZE 56

/**
 * Set r up for a stream receiver whose payload limit is cap bytes (larger than
 * FDSEND_MSG_MAX_PAYLOAD counts as FDSEND_MSG_MAX_PAYLOAD) and that accepts at most maxfds
 * descriptors per message. Also what a receiver calls to start over on a new stream.
 * @return FDSEND_OK; FDSEND_EINVAL (r NULL, maxfds < 0).
 */
FDSEND_API int32_t fdsend_frame_reader_init(fdsend_frame_reader *r, uint64_t cap,
                                            int32_t maxfds);

/**
 * What the next read must be: returns FDSEND_FRAME_HEADER, FDSEND_FRAME_PAYLOAD or
 * FDSEND_FRAME_DISCARD, with *offset (the header bytes held for HEADER, the payload bytes
 * read so far for PAYLOAD and DISCARD) and *n >= 1 (the most that read may ask for; it may
 * ask for less, never for more). A frame is in progress unless the answer is HEADER with
 * *offset 0. After FDSEND_EPROTO the reader is broken: FDSEND_EPROTO (and after
 * FDSEND_EOF, FDSEND_EOF) until it is initialised again. FDSEND_EINVAL for a NULL argument.
 */
FDSEND_API int32_t fdsend_frame_reader_want(const fdsend_frame_reader *r, uint64_t *offset,
                                            uint64_t *n);

/**
 * Feed the result of one read made as fdsend_frame_reader_want asked: n bytes (bytes:
 * what was read; needed for FDSEND_FRAME_HEADER, may be NULL otherwise), the number of
 * descriptors that arrived with them (every one, whether the caller's buffer kept it or
 * not), and FDSEND_FRAME_IN_* flags.
 * @return FDSEND_FRAME_MORE: read again;
 *         FDSEND_OK: a frame is complete and valid: *len (if not NULL) is its payload
 *           length, the payload is in the caller's buffer, and the descriptors of its
 *           first read are the message's (hand them out); the reader is at the next frame;
 *         FDSEND_EMSGSIZE / FDSEND_ETOOMANYFDS / FDSEND_EMFILE: the frame is consumed
 *           whole (its payload discarded) and rejected: the payload was over cap, it
 *           carried more than maxfds descriptors, or the kernel dropped some of them;
 *           close the frame's descriptors; the reader is at the next frame;
 *         FDSEND_EOF: the peer closed at a frame boundary (the end of the channel);
 *         FDSEND_EPROTO: the peer broke the format (bad version or flags, descriptor count
 *           over FDSEND_MAX_FDS or unequal to the header's, descriptors or MSG_CTRUNC on
 *           any read but the frame's first, end of stream inside a frame): close the
 *           frame's descriptors and the socket;
 *         FDSEND_EINVAL: the read was not what want asked for (more bytes than allowed,
 *           0 bytes without FDSEND_FRAME_IN_EOF, header bytes NULL, nfds < 0, unknown
 *           flags, a broken or ended reader): r is unchanged.
 *         Checked in this order when several hold: protocol error, kernel truncation, too
 *         large, too many descriptors.
 */
FDSEND_API int32_t fdsend_frame_reader_feed(fdsend_frame_reader *r, const uint8_t *bytes,
                                            uint64_t n, int32_t nfds, uint32_t flags,
                                            uint32_t *len);

/**
 * Read-ahead (stream, optional): a receiver that owns a buffer may, at a frame boundary, read
 * more than want's n (one read that may hold the rest of this frame and the next frames: one
 * system call per message instead of two). It announces that read here: n bytes in all, the
 * nfds descriptors that came with it, FDSEND_FRAME_IN_CTRUNC / FDSEND_FRAME_IN_EOF. Then it
 * feeds those n bytes, in order, through fdsend_frame_reader_feed with FDSEND_FRAME_IN_AHEAD
 * and nfds 0, each piece at most what want says (so a piece never crosses a frame's header,
 * payload or end), any number of frames' worth, before any other read's. The read's
 * descriptors belong to the one frame beginning in it that announces descriptors
 * (docs/wire-format.md 4.1); fdsend_frame_reader_frame_fds says, after each frame, how many
 * it took. A frame left unfinished at the read's end goes on with exact reads (plain feed).
 * Only on kernels whose reads never take the descriptors of two writes (Linux; see the
 * document): elsewhere read exactly what want says.
 * @return FDSEND_FRAME_MORE: feed the bytes; FDSEND_EOF: n 0 with FDSEND_FRAME_IN_EOF, no
 *         descriptors, at a frame boundary (the orderly end); FDSEND_EPROTO: descriptors
 *         with the end, more than FDSEND_MAX_FDS; FDSEND_EINVAL: not at a frame boundary,
 *         bytes of the previous read-ahead read not all fed, n 0 without the end, unknown
 *         flags, a broken or ended reader.
 */
FDSEND_API int32_t fdsend_frame_reader_begin_ahead(fdsend_frame_reader *r, uint64_t n,
                                                   int32_t nfds, uint32_t flags);

/**
 * After fdsend_frame_reader_feed returned a frame's outcome (FDSEND_OK, FDSEND_EMSGSIZE,
 * FDSEND_ETOOMANYFDS, FDSEND_EMFILE): how many descriptors that frame holds, to hand out
 * (FDSEND_OK) or close: those of its first read (exact reads), or all of those of the
 * read-ahead read it began in, or 0. FDSEND_EINVAL for a NULL r. After FDSEND_EPROTO close
 * every descriptor held (the frame's and the read-ahead read's).
 */
FDSEND_API int32_t fdsend_frame_reader_frame_fds(const fdsend_frame_reader *r);

/**
 * Change the payload and descriptor limits for the frames not yet begun, or begun but whose
 * header is not whole (a receiver whose limits vary per call, like fdsend_channel_recv).
 * @return FDSEND_OK; FDSEND_EINVAL (r NULL, maxfds < 0, a frame's header already judged, a
 *         broken or ended reader).
 */
FDSEND_API int32_t fdsend_frame_reader_limits(fdsend_frame_reader *r, uint64_t cap,
                                              int32_t maxfds);

/**
 * Judge one seqpacket record or datagram of n bytes as received (n is what the buffers
 * held: at most 8 + the caller's payload room), whose first min(n, 8) bytes (the header)
 * are at header (the payload bytes are not read: they may sit in another buffer of an
 * iovec), nfds descriptors with it (all that arrived), FDSEND_FRAME_IN_CTRUNC / _TRUNC / _SEQPACKET flags, the receiver's payload
 * limit cap and descriptor limit maxfds.
 * @return the payload length (>= 0; the record's bytes after its header): hand the
 *         descriptors out; or, closing them: FDSEND_EOF (an empty record without
 *         descriptors on a seqpacket socket), FDSEND_EPROTO (shorter than a header, bad
 *         header, size unequal to 8 + length, descriptor count unequal to the header's or
 *         over FDSEND_MAX_FDS, an empty datagram), FDSEND_EMFILE, FDSEND_EMSGSIZE (also a
 *         record cut by MSG_TRUNC whose header announces more than cap),
 *         FDSEND_ETOOMANYFDS, in that order of precedence; FDSEND_EINVAL (header NULL
 *         with n > 0, nfds < 0, maxfds < 0, unknown flags).
 */
FDSEND_API int64_t fdsend_frame_check_record(const uint8_t *header, uint64_t n, int32_t nfds,
                                             uint32_t flags, uint64_t cap, int32_t maxfds);

/**
 * How many bytes a stream reader may ask for at a frame boundary on this OS
 * (docs/wire-format.md 4.1, FDSEND_FRAME_IN_AHEAD): 4096 where the kernel is known (and
 * tested) never to hand one read the descriptors of two writes, nor those of a write whose
 * first byte the read did not take (Linux); 0 elsewhere: read exactly what
 * fdsend_frame_reader_want asks for. The C channel and the .NET FdChannel both ask here.
 */
FDSEND_API int32_t fdsend_frame_ahead_size(void);

/* ---- Untrusted peers: receive policies, sealed shared memory, opening beneath a directory --
 *
 * A descriptor from another process is a capability chosen by that process. A receiver that
 * does not trust its peer states what it accepts (fdsend_policy) and lets the library close
 * everything else; maps shared memory only when the sender can no longer shrink it
 * (fdsend_shm_map); and, as a broker opening files for a less trusted worker, opens only
 * regular files beneath one directory (fdsend_open_beneath, fdsend_broker_*).
 * docs/untrusted-peers.md walks through all three.
 */

/** A bit for FDSEND_KIND_*, FDSEND_FAMILY_*, FDSEND_SOCK_* and FDSEND_ACCESS_* values in the
 *  masks of fdsend_fd_rule (e.g. FDSEND_BIT(FDSEND_KIND_FILE) | FDSEND_BIT(FDSEND_KIND_MEMFD)). */
#define FDSEND_BIT(value) (1u << (unsigned)(value))

/** fdsend_fd_rule.options */
enum {
    /** Refuse a socket in the listening state. */
    FDSEND_RULE_NO_LISTENING = 1,
    /** Refuse a descriptor that is not close-on-exec (never true for received ones on
     *  systems with MSG_CMSG_CLOEXEC; for checks over descriptors from elsewhere). */
    FDSEND_RULE_CLOEXEC = 2
};

/**
 * What one descriptor may be. Every mask is a set of FDSEND_BIT(...) values; a mask of 0
 * means "any". A zeroed rule accepts every descriptor.
 *
 * A Unix socket can carry descriptors of its own (queued now, or sent later by whoever holds
 * its other end): no check on the received socket can tell, because looking (MSG_PEEK)
 * would install them. Refuse Unix sockets (families without FDSEND_FAMILY_UNIX) where that
 * matters.
 */
typedef struct fdsend_fd_rule {
    uint32_t kinds;          /**< FDSEND_BIT(FDSEND_KIND_*) allowed; 0: any kind */
    uint32_t access;         /**< FDSEND_BIT(FDSEND_ACCESS_*) allowed; 0: any (read-only:
                                  FDSEND_BIT(FDSEND_ACCESS_READ)) */
    uint32_t families;       /**< sockets: FDSEND_BIT(FDSEND_FAMILY_*) allowed; 0: any */
    uint32_t socket_types;   /**< sockets: FDSEND_BIT(FDSEND_SOCK_*) allowed; 0: any */
    uint32_t required_seals; /**< memfds: FDSEND_SEAL_* bits that must be in force; a rule
                                  with seals refuses every kind but FDSEND_KIND_MEMFD */
    uint32_t options;        /**< FDSEND_RULE_* bits */
    int64_t min_size;        /**< regular files and memfds: the smallest size accepted (0: none) */
    int64_t max_size;        /**< regular files and memfds: the largest size accepted (< 0: none) */
} fdsend_fd_rule;

/** fdsend_policy.options */
enum {
    FDSEND_POLICY_CHECK_UID = 1,  /**< the peer's effective uid must be policy.uid */
    FDSEND_POLICY_CHECK_GID = 2,  /**< the peer's effective gid must be policy.gid */
    FDSEND_POLICY_CHECK_PID = 4   /**< the peer's pid must be policy.pid (the kernel's record
                                       from connect/socketpair time) */
};

/**
 * What a receiver accepts in one message. Zero it, set struct_size = sizeof, then what
 * matters. Descriptor i must satisfy rules[min(i, nrules - 1)] (so one rule covers every
 * descriptor); nrules == 0 checks only the count.
 */
typedef struct fdsend_policy {
    uint32_t struct_size;          /**< sizeof(fdsend_policy) */
    uint32_t options;              /**< FDSEND_POLICY_CHECK_* bits */
    int32_t min_fds;               /**< fewer descriptors than this: a violation */
    int32_t max_fds;               /**< more descriptors than this: a violation (0 .. FDSEND_MAX_FDS) */
    int64_t uid, gid, pid;         /**< the credentials required by options */
    const fdsend_fd_rule *rules;   /**< nrules rules; may be NULL only when nrules == 0 */
    int32_t nrules;
    uint32_t reserved;             /**< 0 */
} fdsend_policy;

/** fdsend_violation.reason: what broke the policy. */
enum {
    FDSEND_VIOLATION_NONE = 0,
    FDSEND_VIOLATION_TOO_FEW_FDS = 1,  /**< the message carried fewer than min_fds */
    FDSEND_VIOLATION_TOO_MANY_FDS = 2, /**< more than max_fds (or the kernel dropped some) */
    FDSEND_VIOLATION_PEER = 3,         /**< the peer's uid, gid or pid is not the required one,
                                            or the OS cannot tell */
    FDSEND_VIOLATION_KIND = 4,
    FDSEND_VIOLATION_ACCESS = 5,
    FDSEND_VIOLATION_FAMILY = 6,
    FDSEND_VIOLATION_SOCKET_TYPE = 7,
    FDSEND_VIOLATION_LISTENING = 8,
    FDSEND_VIOLATION_SEALS = 9,
    FDSEND_VIOLATION_SIZE = 10,
    FDSEND_VIOLATION_CLOEXEC = 11,
    FDSEND_VIOLATION_UNDESCRIBABLE = 12 /**< fdsend_fd_info failed on it */
};

/** What the first broken rule was, filled in by the checks when they return FDSEND_EPOLICY
 *  (and zeroed, index -1, when they pass). */
typedef struct fdsend_violation {
    int32_t reason;          /**< FDSEND_VIOLATION_* */
    int32_t index;           /**< the descriptor's index in the message; -1 for the count or the peer */
    int32_t nfds;            /**< how many descriptors the message carried */
    int32_t reserved;
    int64_t bytes;           /**< fdsend_recv_checked: data bytes consumed with the message */
    fdsend_fd_info_t info;   /**< what descriptor `index` was (zeroed for index -1) */
    char message[256];       /**< English, e.g. "descriptor 1 is a directory; the policy
                                  accepts: regular file, memfd" */
} fdsend_violation;

/**
 * Check the descriptors of one message against policy. If they pass, FDSEND_OK and they
 * stay the caller's. If not, EVERY descriptor of fds[0 .. nfds) is closed and set to -1,
 * and FDSEND_EPOLICY is returned with *violation (may be NULL) saying which and why. Use
 * it after fdsend_msg_recv or fdsend_recv_exact. A negative entry (-1: a descriptor already
 * handed on, as for fdsend_close_all) counts towards nfds but is not checked against a
 * rule. The peer options are not checked here (see fdsend_check_peer).
 *
 * @return FDSEND_OK, FDSEND_EPOLICY, or FDSEND_EINVAL (NULL policy, bad struct_size, NULL
 *         fds with nfds > 0, nfds < 0, NULL rules with nrules > 0; nothing closed).
 */
FDSEND_API int32_t fdsend_check_fds(const fdsend_policy *policy, intptr_t *fds, int32_t nfds,
                                    fdsend_violation *violation);

/**
 * fdsend_check_fds for a message as a receive (fdsend_recv, fdsend_msg_recv...) returned it,
 * with its FDSEND_RECV_* flags rflags: FDSEND_RECV_FDS_TRUNCATED (the kernel dropped some of
 * its descriptors, or there was no room for them) breaks the policy as too many descriptors
 * (FDSEND_VIOLATION_TOO_MANY_FDS), as in fdsend_recv_checked: every descriptor of fds is then
 * closed and set to -1. Other flags are ignored; without FDSEND_RECV_FDS_TRUNCATED this is
 * fdsend_check_fds.
 * @return as fdsend_check_fds.
 */
FDSEND_API int32_t fdsend_check_received(const fdsend_policy *policy, intptr_t *fds, int32_t nfds,
                                         uint32_t rflags, fdsend_violation *violation);

/**
 * Check one descriptor against one rule, as fdsend_check_fds checks descriptor `index` of a
 * message (the same rules, the same violation and message), but close nothing: a receiver
 * that diagnoses one descriptor it still owns (e.g. after fdsend_shm_map refused it).
 * violation->nfds is 0.
 *
 * @return FDSEND_OK, FDSEND_EPOLICY (fd is still open and still the caller's), or
 *         FDSEND_EINVAL (NULL rule, index < 0).
 */
FDSEND_API int32_t fdsend_check_fd(const fdsend_fd_rule *rule, intptr_t fd, int32_t index,
                                   fdsend_violation *violation);

/**
 * Check the credentials of sock's peer against the FDSEND_POLICY_CHECK_* options of policy
 * (no options: FDSEND_OK). Nothing is received or closed.
 * @return FDSEND_OK, FDSEND_EPOLICY (the credentials differ, or the OS cannot report the one
 *         required, e.g. the pid where only getpeereid exists), FDSEND_EINVAL, or the error
 *         of fdsend_peer_credentials (FDSEND_ENOTCONN...).
 */
FDSEND_API int32_t fdsend_check_peer(intptr_t sock, const fdsend_policy *policy,
                                     fdsend_violation *violation);

/**
 * fdsend_recv under a policy: the peer's credentials are checked first (if the policy asks;
 * a refused peer gives FDSEND_EPOLICY with nothing consumed), then one message is received
 * and its descriptors are checked. If any descriptor or the count breaks the policy, every
 * descriptor of the message is closed, *nfds is 0, the message (its data too) is consumed,
 * so the stream stays usable at the next message, and FDSEND_EPOLICY is returned with
 * violation->bytes saying how much data came with it. Descriptors that the kernel dropped
 * (FDSEND_RECV_FDS_TRUNCATED) count as too many. Every other result is fdsend_recv's.
 *
 * @param maxfds  room in fds[]; descriptors beyond policy->max_fds are a violation, not
 *                truncation (the library receives up to FDSEND_MAX_FDS to count them)
 * @return bytes received (>= 0), FDSEND_EPOLICY, or another fdsend_recv code.
 */
FDSEND_API int64_t fdsend_recv_checked(intptr_t sock, void *buf, size_t len, intptr_t *fds,
                                       int32_t maxfds, int32_t *nfds, uint32_t *rflags,
                                       uint32_t flags, const fdsend_policy *policy,
                                       fdsend_violation *violation);

/**
 * Create shared memory holding data[0 .. len) and seal it: a Linux memfd
 * (memfd_create with MFD_ALLOW_SEALING), written, then sealed with `seals` (FDSEND_SEAL_*;
 * FDSEND_SEAL_SHRINK | FDSEND_SEAL_GROW | FDSEND_SEAL_WRITE makes it immutable, which is
 * what fdsend_shm_map readers usually require; add FDSEND_SEAL_SEAL to forbid further
 * seals). Send *fd; the caller owns it and closes it after sending.
 * Elsewhere (the BSDs, macOS) memory comes from shm_open plus shm_unlink, which has NO
 * seals: seals == 0 works there, any other value gives FDSEND_ENOTSUP, and receivers
 * using fdsend_shm_map refuse such memory (a peer could shrink it).
 *
 * @param name  a name for debugging (/proc/self/fd shows "memfd:name"); may be NULL
 * @param data  the contents; may be NULL only when len == 0
 * @param fd    out: the descriptor, close-on-exec (-1 on failure; nothing is left open)
 * @return FDSEND_OK, FDSEND_EINVAL, FDSEND_ENOTSUP, FDSEND_EMFILE, FDSEND_ENOBUFS, or another code.
 */
FDSEND_API int32_t fdsend_shm_create(const char *name, const void *data, size_t len,
                                     uint32_t seals, intptr_t *fd);

/**
 * Map received shared memory read-only, after checking that it cannot hurt the reader:
 * it must be a memfd, sealed with FDSEND_SEAL_SHRINK (always required: without it the
 * sender can truncate the file and every access past the new end raises SIGBUS) plus every
 * bit of required_seals (FDSEND_SEAL_WRITE for contents that cannot change under you), and
 * its size must be within [min_size, max_size] (max_size < 0: no bound). The seals are read
 * before the size, so the size cannot shrink in between. Nothing is mapped otherwise, and
 * fd stays the caller's either way (the mapping keeps its own reference: close fd whenever).
 * An empty memfd gives FDSEND_OK with *addr NULL and *len 0.
 *
 * @return FDSEND_OK (unmap with fdsend_shm_unmap), FDSEND_ENOTSEALED (not a memfd, a seal
 *         missing, or the size out of bounds; fdsend_last_os_error() is 0), FDSEND_ENOTSUP
 *         (no seals on this OS), FDSEND_EBADF, FDSEND_EINVAL, or another code.
 */
FDSEND_API int32_t fdsend_shm_map(intptr_t fd, uint32_t required_seals, int64_t min_size,
                                  int64_t max_size, const void **addr, size_t *len);

/** Unmap what fdsend_shm_map mapped (addr NULL with len 0 is a no-op). @return FDSEND_OK,
 *  FDSEND_EINVAL. */
FDSEND_API int32_t fdsend_shm_unmap(const void *addr, size_t len);

/** fdsend_open_beneath flags. */
enum {
    /** Skip openat2 and use the portable walk (one openat with O_NOFOLLOW per component); for
     *  tests, and what the library does by itself where openat2 is missing or filtered. */
    FDSEND_OPEN_NO_OPENAT2 = 1
};

/**
 * Open path, relative to the directory dirfd, read-only, as a broker does for a less
 * trusted worker: the result is always a regular file opened O_RDONLY | O_CLOEXEC, found
 * without leaving the directory and without following any symbolic link.
 *
 * - path must be relative and free of ".." components: otherwise FDSEND_EESCAPE (checked
 *   before anything is opened). Empty components and "." are allowed.
 * - Linux 5.6+: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
 *   elsewhere (or when openat2 is unavailable) each component is opened with
 *   openat(..., O_NOFOLLOW). A symbolic link anywhere on the way, pointing inside the
 *   directory or out of it, gives FDSEND_EESCAPE.
 * - The file is opened O_NONBLOCK first, so that a FIFO cannot block the broker, then
 *   checked with fstat: a directory, FIFO, device or socket gives FDSEND_ENOTREG (and is
 *   closed). O_NONBLOCK is then cleared; O_NOCTTY is always set.
 * - Missing file: FDSEND_ENOENT; permission: FDSEND_EACCES; a component that is not a
 *   directory: FDSEND_ENOENT.
 *
 * @param dirfd  an open directory (the broker's; never hand it to the worker)
 * @param path   NUL-terminated relative path
 * @param flags  0 or FDSEND_OPEN_NO_OPENAT2
 * @param fd     out: the file, owned by the caller (-1 on failure)
 * @return FDSEND_OK or a negative code as above; Windows: FDSEND_ENOTSUP.
 */
FDSEND_API int32_t fdsend_open_beneath(intptr_t dirfd, const char *path, uint32_t flags,
                                       intptr_t *fd);

/**
 * Open the directory at path for a broker (O_RDONLY | O_DIRECTORY | O_CLOEXEC): the dirfd
 * of fdsend_open_beneath and fdsend_broker_serve_one. Keep it in the broker; a directory
 * descriptor in a worker's hands is a way out ("..").
 * @return FDSEND_OK, FDSEND_ENOENT, FDSEND_EACCES, FDSEND_ENOTREG (not a directory: the
 *         errno is ENOTDIR), FDSEND_EINVAL (NULL path or fd), or another code.
 */
FDSEND_API int32_t fdsend_open_directory(const char *path, intptr_t *fd);

/* A file broker speaks the message channel (fdsend_msg_*): a request is one message whose
 * payload is the path (1 .. FDSEND_BROKER_MAX_PATH bytes, no NUL) and no descriptors; the
 * reply is one message whose payload is a 4-byte little-endian int32 status (FDSEND_OK or
 * an FDSEND_E* code) carrying the file's descriptor exactly when the status is FDSEND_OK.
 * The .NET FileBroker/FileBrokerClient speak the same protocol. A request and its reply
 * are a pair: one caller at a time per socket on each side (a reply could otherwise go to
 * another thread's request).
 *
 * The protocol's rules live in three pure functions, which fdsend_broker_serve_one,
 * fdsend_broker_open and the .NET classes all use: fdsend_broker_check_request (is this a
 * request, and what to reply if not), fdsend_broker_reply_encode and
 * fdsend_broker_reply_decode (which also checks the reply's descriptor). They do no I/O
 * and exist on every OS (the broker's I/O calls are POSIX only; on Windows fdsend_fd_info
 * reports every file handle read-write, so fdsend_broker_reply_decode refuses any reply
 * that carries a file there). */
#define FDSEND_BROKER_MAX_PATH 4096
/** Bytes in a broker reply's payload: the little-endian int32 status. */
#define FDSEND_BROKER_REPLY_SIZE 4

/**
 * Check one request as it arrived: `len` is the payload's length as the sender gave it,
 * `nfds` how many descriptors came with it (the caller closes them: a request never hands
 * any on). When len is over FDSEND_BROKER_MAX_PATH or nfds > 0 the payload is not read and
 * need not have been kept (path may be NULL): a receive that refused the message can still
 * give the reply from its header. Pure: nothing is closed, fdsend_last_os_error is
 * unchanged.
 *
 * @return the status to reply with: FDSEND_OK (a path to open: 1 .. FDSEND_BROKER_MAX_PATH
 *         bytes, no NUL; any other byte is allowed, UTF-8 or not), else, in this order,
 *         FDSEND_EINVAL for a payload over FDSEND_BROKER_MAX_PATH, FDSEND_EPOLICY for a
 *         request with descriptors, FDSEND_EINVAL for an empty path or one containing NUL.
 *         Bad arguments (nfds < 0; path NULL where it is read) also give FDSEND_EINVAL.
 */
FDSEND_API int32_t fdsend_broker_check_request(const void *path, uint64_t len, int32_t nfds);

/**
 * Encode the reply to one request: status as FDSEND_BROKER_REPLY_SIZE little-endian bytes
 * into reply[0 .. FDSEND_BROKER_REPLY_SIZE), and in *nfds how many descriptors the reply
 * carries (1, the file, for FDSEND_OK; 0 for a refusal). Pure.
 *
 * A reply carries FDSEND_OK or one of the broker refusals: FDSEND_EINVAL, FDSEND_ENOENT,
 * FDSEND_EACCES, FDSEND_ENAMETOOLONG, FDSEND_EMFILE, FDSEND_EPOLICY, FDSEND_EESCAPE,
 * FDSEND_ENOTREG, FDSEND_EOTHER. Any other negative status (what fdsend_open_beneath passed
 * on from the OS: FDSEND_EAGAIN, FDSEND_ETIMEDOUT...) is sent as FDSEND_EOTHER, so that a
 * client never mistakes a refusal for a failure of its own connection.
 *
 * @param status  FDSEND_OK or a negative code (see above)
 * @return FDSEND_OK, or FDSEND_EINVAL (status positive, reply NULL, cap smaller than
 *         FDSEND_BROKER_REPLY_SIZE, nfds NULL; nothing written, *nfds 0 when nfds is not NULL).
 */
FDSEND_API int32_t fdsend_broker_reply_encode(int32_t status, void *reply, size_t cap,
                                              int32_t *nfds);

/**
 * Decode and check one reply as it arrived: `len` is its payload's length as the sender gave
 * it (reply is read only when len is FDSEND_BROKER_REPLY_SIZE, and may be NULL otherwise),
 * fds[0 .. nfds) the descriptors that came with it, owned by the caller until this call
 * (an entry of -1 stands for one already closed, e.g. by a receive that refused the
 * message: it is counted, never used). The reply is accepted only if the payload is
 * FDSEND_BROKER_REPLY_SIZE bytes holding FDSEND_OK or one of the broker refusals
 * (fdsend_broker_reply_encode), and it carries exactly one open read-only regular file
 * (FDSEND_KIND_FILE, FDSEND_ACCESS_READ) with FDSEND_OK and no descriptor with a refusal.
 *
 * Outcomes, in *status (the return value says only whether the arguments were usable):
 *  - FDSEND_OK: *file is fds[0], now the caller's; fds[0] is set to -1.
 *  - one of the broker refusals (FDSEND_EESCAPE, FDSEND_ENOTREG, FDSEND_ENOENT, ...; the list
 *    is fdsend_broker_reply_encode's): no descriptor came; *file is -1.
 *  - FDSEND_EPROTO: the reply broke the protocol. EVERY descriptor of fds has been closed
 *    and set to -1; *file is -1. *violation (may be NULL) says why: for the descriptors
 *    (a count that does not match the status, or one that is not a read-only regular file)
 *    as fdsend_check_fds describes them (reason, index, info, message); for the payload
 *    (its length, a status that is neither FDSEND_OK nor a broker refusal) with reason
 *    FDSEND_VIOLATION_NONE, index -1 and the message saying what was wrong.
 *
 * @return FDSEND_OK (see *status), or FDSEND_EINVAL (status or file NULL, nfds < 0, fds NULL
 *         with nfds > 0, reply NULL with len == FDSEND_BROKER_REPLY_SIZE; nothing closed).
 */
FDSEND_API int32_t fdsend_broker_reply_decode(const void *reply, uint64_t len, intptr_t *fds,
                                              int32_t nfds, int32_t *status, intptr_t *file,
                                              fdsend_violation *violation);

/**
 * Serve one request on sock: receive a path, open it with fdsend_open_beneath(dirfd, path,
 * flags) and reply with the status and, on success, the descriptor (closed here after
 * sending). Requests are checked by fdsend_broker_check_request: one that carries
 * descriptors is refused (FDSEND_EPOLICY in the reply, the descriptors closed, including
 * when this process could not install them all); an empty, too long or NUL-containing path
 * gives FDSEND_EINVAL in the reply.
 *
 * @param status  out (may be NULL): the status sent to the client
 * @return FDSEND_OK when a reply was sent (whatever its status); FDSEND_EOF when the client
 *         closed the connection; another code when the channel failed (close it).
 */
FDSEND_API int32_t fdsend_broker_serve_one(intptr_t sock, intptr_t dirfd, uint32_t flags,
                                           int32_t *status);

/**
 * Ask the broker at the other end of sock to open path; on success *fd is the file
 * (read-only regular file, owned by the caller). path is checked first as the broker would
 * (fdsend_broker_check_request: FDSEND_EINVAL, nothing sent). The reply is itself checked
 * (fdsend_broker_reply_decode): a reply of another size, or whose status is neither FDSEND_OK
 * nor a broker refusal, or whose descriptor is not a read-only regular file, or with a
 * descriptor count that does not match its status, gives FDSEND_EPROTO (everything closed).
 *
 * @return FDSEND_OK; one of the broker refusals (fdsend_broker_reply_encode's list:
 *         FDSEND_EESCAPE, FDSEND_ENOTREG, FDSEND_ENOENT, FDSEND_EACCES, FDSEND_EINVAL...: the
 *         connection is fine, ask again); FDSEND_EPROTO (close the connection); or a failure
 *         of the connection itself (FDSEND_EOF, FDSEND_ETIMEDOUT, FDSEND_EPIPE...: close it),
 *         which no reply can imitate.
 */
FDSEND_API int32_t fdsend_broker_open(intptr_t sock, const char *path, intptr_t *fd);

#ifdef __cplusplus
}
#endif

#endif /* FDSEND_H */
