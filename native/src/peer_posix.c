/* fdsend_peer_credentials on POSIX systems: who is at the other end of a Unix socket, from
 * whichever of the kernels' interfaces CMake's probes found (the Windows counterpart is
 * win32/peer.c).
 * SPDX-License-Identifier: MIT */
#include "fdsend_posix.h"
#include "fdsend_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if HAVE_GETPEERUCRED
#  include <ucred.h>
#endif /* HAVE_GETPEERUCRED */
#if HAVE_LOCAL_PEERCRED
/* FreeBSD's unix(4) and older <sys/ucred.h> want <sys/param.h> first. */
#  include <sys/param.h>
#  include <sys/ucred.h>
#endif /* HAVE_LOCAL_PEERCRED */

static void store_credentials(int64_t *pid, int64_t *uid, int64_t *gid, int64_t p,
                              int64_t u, int64_t g)
{
    if (pid != NULL)
        *pid = p;
    if (uid != NULL)
        *uid = u;
    if (gid != NULL)
        *gid = g;
}

int32_t fdsend_peer_credentials(intptr_t sock, int64_t *pid, int64_t *uid, int64_t *gid)
{
    int s = (int)sock;
    int32_t rc;
    store_credentials(pid, uid, gid, -1, -1, -1);
    if (!fdsend_valid_fd(sock))
        return fdsend_fail(FDSEND_EBADF, EBADF);
    /* SO_PEERCRED "succeeds" on a TCP socket too, with made-up values: refuse it first. */
    rc = fdsend_check_unix_socket(s);
    if (rc != FDSEND_OK)
        return rc;
#if HAVE_STRUCT_UCRED
    {
        /* Linux */
        struct ucred cred;
        socklen_t l = sizeof cred;
        memset(&cred, 0, sizeof cred);
        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &l) != 0)
            return fdsend_fail_errno();
        /* No peer recorded (not connected, or a connect()ed datagram socket): Linux answers
         * pid 0, uid and gid -1 rather than failing. */
        if (cred.pid == 0 && cred.uid == (uid_t)-1 && cred.gid == (gid_t)-1)
            return fdsend_fail(FDSEND_ENOTCONN, ENOTCONN);
        store_credentials(pid, uid, gid, cred.pid, cred.uid, cred.gid);
    }
#elif HAVE_STRUCT_SOCKPEERCRED
    {
        /* OpenBSD */
        struct sockpeercred cred;
        socklen_t l = sizeof cred;
        if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &l) != 0)
            return fdsend_fail_errno();
        store_credentials(pid, uid, gid, cred.pid, cred.uid, cred.gid);
    }
#elif HAVE_LOCAL_PEEREID
    {
        /* NetBSD */
        struct unpcbid cred;
        socklen_t l = sizeof cred;
        if (getsockopt(s, 0, LOCAL_PEEREID, &cred, &l) != 0)
            return fdsend_fail_errno();
        store_credentials(pid, uid, gid, cred.unp_pid, cred.unp_euid, cred.unp_egid);
    }
#elif HAVE_GETPEERUCRED
    {
        /* Solaris, illumos */
        ucred_t *cred = NULL;
        if (getpeerucred(s, &cred) != 0)
            return fdsend_fail_errno();
        store_credentials(pid, uid, gid, ucred_getpid(cred), ucred_geteuid(cred),
                          ucred_getegid(cred));
        ucred_free(cred);
    }
#elif HAVE_LOCAL_PEERCRED
    {
        /* FreeBSD, DragonFly, macOS */
        struct xucred cred;
        socklen_t l = sizeof cred;
        int64_t p = -1;
        if (getsockopt(s, 0 /* SOL_LOCAL */, LOCAL_PEERCRED, &cred, &l) != 0)
            return fdsend_fail_errno();
        if (cred.cr_version != XUCRED_VERSION)
            return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#  if HAVE_XUCRED_CR_PID
        p = cred.cr_pid;
#  elif HAVE_LOCAL_PEERPID
        {
            pid_t peer = -1;
            socklen_t pl = sizeof peer;
            if (getsockopt(s, 0 /* SOL_LOCAL */, LOCAL_PEERPID, &peer, &pl) == 0)
                p = peer;
        }
#  endif /* HAVE_XUCRED_CR_PID */
        store_credentials(pid, uid, gid, p, cred.cr_uid,
                          cred.cr_ngroups > 0 ? cred.cr_groups[0] : -1);
    }
#elif HAVE_GETPEEREID
    {
        uid_t u;
        gid_t g;
        if (getpeereid(s, &u, &g) != 0)
            return fdsend_fail_errno();
        store_credentials(pid, uid, gid, -1, u, g);
    }
#else
    (void)s;
    return fdsend_fail(FDSEND_ENOTSUP, ENOTSUP);
#endif /* HAVE_STRUCT_UCRED */
    fdsend_clear_error();
    return FDSEND_OK;
}
