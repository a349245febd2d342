/* The channel cases of test_win.exe (test_win_channel.c, test_win_vectors.c), and its echo
 * peer role.
 * SPDX-License-Identifier: MIT */
#ifndef FDSEND_TEST_WIN_CHANNEL_H
#define FDSEND_TEST_WIN_CHANNEL_H

#include <stddef.h>

#include "win_harness.h"

/** The win.channel_* cases. */
extern const test_case win_channel_cases[];
extern const size_t win_channel_ncases;

/** The win.channel_vectors* cases (test_win_vectors.c). */
extern const test_case win_vector_cases[];
extern const size_t win_vector_ncases;

/** "child channel-echo <port>": connect, echo every message (payload and handles) on a
 *  channel object until the peer closes; 0 on success. */
int child_channel_echo(unsigned short port);

#endif /* FDSEND_TEST_WIN_CHANNEL_H */
