/* The Linux-only part of the C test-support library (declared at the end of testutil.h,
 * under __linux__): what reads /proc beyond the descriptor table.
 * SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdio.h>
#include <unistd.h>

long tu_rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}
