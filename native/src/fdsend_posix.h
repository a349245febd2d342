/* The system headers the POSIX sources need, with the defines each OS wants first.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_POSIX_H
#define FDSEND_POSIX_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1 /* struct ucred, MSG_CMSG_CLOEXEC */
#endif
#if defined(__sun)
   /* Solaris/illumos: msg_control exists only in the X/Open (XPG4v2) socket API. */
#  ifndef _XOPEN_SOURCE
#    define _XOPEN_SOURCE 600
#  endif
#  ifndef __EXTENSIONS__
#    define __EXTENSIONS__ 1
#  endif
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#  define _DARWIN_C_SOURCE 1
#endif

#include "fdsend_config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#endif /* FDSEND_POSIX_H */
