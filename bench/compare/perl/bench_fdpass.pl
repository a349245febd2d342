#!/usr/bin/env perl
# The comparison workloads through Perl's IO::FDPass.
#
# Usage: bench_fdpass.pl WORKLOAD SECONDS [WARMUP_SECONDS]
# IO::FDPass passes exactly ONE descriptor per call, on a one-byte carrier, with no data
# of the caller's: so this program runs only the 1-fd workloads, and its messages are
# "1 carrier byte + 1 fd" where the other programs send "16 bytes + 1 fd":
#   inproc1    send 1 fd, receive it, close it
#   stream1    parent sends fds, child receives and closes them; messages/s
#   pingpong1  parent sends an fd, child sends it back and closes it; round trips/s
# inproc64 is not possible (one fd per message) and exits with status 3.
# Prints one line: ops_per_sec=<float> ops=<int> seconds=<float>
# SPDX-License-Identifier: MIT
use strict;
use warnings;
use IO::FDPass;
use POSIX ();
use Socket qw(AF_UNIX SOCK_STREAM PF_UNSPEC SHUT_WR);
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC CLOCK_PROCESS_CPUTIME_ID);

my $BATCH = 64;

sub die_with { print STDERR "io-fdpass: $_[0]: $!\n"; exit 1; }

my ($workload, $seconds, $warmup) = @ARGV;
if (!defined $seconds) {
    print STDERR "usage: bench_fdpass.pl inproc1|stream1|pingpong1 SECONDS [WARMUP]\n";
    exit 2;
}
$warmup = 0.2 unless defined $warmup;
if ($workload eq 'inproc64') {
    print STDERR "io-fdpass: inproc64 unsupported: IO::FDPass sends one fd per message\n";
    exit 3;
}
if ($workload !~ /^(inproc1|stream1|pingpong1)$/) {
    print STDERR "io-fdpass: unknown workload $workload\n";
    exit 2;
}

open(my $devnull, '<', '/dev/null') or die_with('open /dev/null');
my $fd = fileno($devnull);
socketpair(my $a, my $b, AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die_with('socketpair');
my ($afd, $bfd) = (fileno($a), fileno($b));

my $child;
if ($workload ne 'inproc1') {
    $child = fork();
    die_with('fork') unless defined $child;
    if ($child == 0) {
        close($a);
        while (1) {
            my $got = IO::FDPass::recv($bfd);
            last if $got < 0; # end of stream (or error, which the parent will notice)
            if ($workload eq 'pingpong1') {
                IO::FDPass::send($bfd, $got) or die_with('send back');
            }
            POSIX::close($got);
        }
        if ($workload eq 'stream1') {
            syswrite($b, 'A', 1) == 1 or die_with('acknowledge');
        }
        POSIX::_exit(0);
    }
    close($b);
}

my $batch;
if ($workload eq 'inproc1') {
    $batch = sub {
        for (1 .. $BATCH) {
            IO::FDPass::send($afd, $fd) or die_with('send');
            my $got = IO::FDPass::recv($bfd);
            die_with('receive') if $got < 0;
            POSIX::close($got);
        }
    };
} elsif ($workload eq 'stream1') {
    $batch = sub {
        for (1 .. $BATCH) {
            IO::FDPass::send($afd, $fd) or die_with('send');
        }
    };
} else {
    $batch = sub {
        for (1 .. $BATCH) {
            IO::FDPass::send($afd, $fd) or die_with('send');
            my $got = IO::FDPass::recv($afd);
            die_with('receive') if $got < 0;
            POSIX::close($got);
        }
    };
}

# CPU seconds used so far by every thread of process $pid (Linux /proc), or undef.
sub task_cpu {
    my ($pid) = @_;
    opendir(my $d, "/proc/$pid/task") or return undef;
    my $total = 0;
    for my $tid (grep { !/^\./ } readdir($d)) {
        open(my $f, '<', "/proc/$pid/task/$tid/schedstat") or next;
        my ($ns) = split(' ', scalar(<$f> // '0'));
        $total += $ns;
        close($f);
    }
    closedir($d);
    return $total / 1e9;
}

sub run_for {
    my ($secs) = @_;
    my $ops = 0;
    my $end = clock_gettime(CLOCK_MONOTONIC) + $secs;
    while (1) {
        $batch->();
        $ops += $BATCH;
        return $ops if clock_gettime(CLOCK_MONOTONIC) >= $end;
    }
}

run_for($warmup) if $warmup > 0;
my $k0 = defined $child ? task_cpu($child) : 0;
my $c0 = clock_gettime(CLOCK_PROCESS_CPUTIME_ID);
my $t0 = clock_gettime(CLOCK_MONOTONIC);
my $ops = run_for($seconds);
if (defined $child) {
    shutdown($a, SHUT_WR) or die_with('shutdown');
    if ($workload eq 'stream1') {
        sysread($a, my $ack, 1) == 1 or die_with('read acknowledgement');
    }
}
my $t1 = clock_gettime(CLOCK_MONOTONIC);
my $c1 = clock_gettime(CLOCK_PROCESS_CPUTIME_ID);
my $k1 = defined $child ? task_cpu($child) : 0;
if (defined $child) {
    waitpid($child, 0);
    if ($? != 0) { $! = 0; die_with('child failed'); }
}
printf "ops_per_sec=%.1f ops=%d seconds=%.4f%s\n", $ops / ($t1 - $t0), $ops, $t1 - $t0,
    (defined $k0 && defined $k1) ? sprintf(' cpu_seconds=%.4f', ($c1 - $c0) + ($k1 - $k0)) : '';
exit 0;
