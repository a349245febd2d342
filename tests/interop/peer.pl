#!/usr/bin/env perl
# Perl side of the FdSend interop suite: IO::FDPass (one descriptor per call, carried by
# one byte on a stream socket).
#
#   peer.pl send|recv PATH NMSGS
#
# Mode "fdpass" of the protocol in README.md: message i is 1 + (i*7919) % 5000 payload
# bytes (i*31 + j*17 + 5) & 0xff written as plain data, then 1 + i % 3 descriptors, each
# passed by its own IO::FDPass::send. Each descriptor is a temporary file whose content
# names it (message, index, st_dev, st_ino). The receiver listens at PATH, the sender
# connects. Prints one PASS line and exits 0, FAIL: ... and exits 1, or (exit 77)
# SKIPPED: ... when IO::FDPass is not installed.
# SPDX-License-Identifier: MIT
use strict;
use warnings;
use Socket qw(AF_UNIX SOCK_STREAM SHUT_WR pack_sockaddr_un);
use File::Temp qw(tempfile);
use Fcntl qw(F_GETFD FD_CLOEXEC SEEK_SET);
use Time::HiRes qw(sleep time);

BEGIN {
    unless (eval { require IO::FDPass; 1 }) {
        print "SKIPPED: Perl module IO::FDPass is not installed (Debian: libio-fdpass-perl)\n";
        exit 77;
    }
}

my ($role, $path, $nmsgs) = @ARGV;
die "usage: peer.pl send|recv PATH NMSGS\n"
  unless defined $nmsgs && ($role eq 'send' || $role eq 'recv');

sub fail { print "FAIL: peer.pl $role: $_[0]\n"; exit 1; }

sub fd_count {
    opendir(my $d, "/proc/self/fd") or fail("opendir /proc/self/fd: $!");
    my $n = grep { !/^\./ } readdir($d);
    closedir($d);
    return $n - 1;    # the directory handle itself
}

sub msg_nfds { my $i = shift; return 1 + $i % 3; }
sub msg_len  { my $i = shift; return 1 + ($i * 7919) % 5000; }
sub msg_payload {
    my $i = shift;
    return pack("C*", map { ($i * 31 + $_ * 17 + 5) & 0xff } 0 .. msg_len($i) - 1);
}

sub read_exactly {
    my ($s, $len) = @_;
    my $buf = '';
    while (length($buf) < $len) {
        my $n = sysread($s, $buf, $len - length($buf), length($buf));
        fail("read: $!") unless defined $n;
        return $buf if $n == 0;
    }
    return $buf;
}

sub write_all {
    my ($s, $data) = @_;
    my $off = 0;
    while ($off < length($data)) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        fail("write: $!") unless defined $n;
        $off += $n;
    }
}

my ($nfds, $nbytes) = (0, 0);
my $before = fd_count();

if ($role eq 'send') {
    my $s;
    my $end = time() + 20;
    while (1) {
        socket($s, AF_UNIX, SOCK_STREAM, 0) or fail("socket: $!");
        last if connect($s, pack_sockaddr_un($path));
        close($s);
        fail("nobody listens at $path: $!") if time() > $end;
        sleep(0.02);
    }
    for my $i (0 .. $nmsgs - 1) {
        my $payload = msg_payload($i);
        my @files;
        for my $k (0 .. msg_nfds($i) - 1) {
            my ($fh, $fname) = tempfile("fdsend-interop-XXXXXX", TMPDIR => 1);
            unlink($fname);
            my @st = stat($fh);
            syswrite($fh, "FDSEND-INTEROP msg=$i fd=$k dev=$st[0] ino=$st[1]\n");
            push @files, $fh;
        }
        write_all($s, $payload);
        for my $fh (@files) {
            IO::FDPass::send(fileno($s), fileno($fh)) or fail("IO::FDPass::send: $!");
        }
        close($_) for @files;
        $nfds += @files;
        $nbytes += length($payload);
    }
    shutdown($s, SHUT_WR);
    my $rest = read_exactly($s, 1);
    fail("expected end of stream from the receiver") if length($rest);
    close($s);
} else {
    unlink($path);
    socket(my $l, AF_UNIX, SOCK_STREAM, 0) or fail("socket: $!");
    bind($l, pack_sockaddr_un($path)) or fail("bind $path: $!");
    listen($l, 1) or fail("listen: $!");
    accept(my $s, $l) or fail("accept: $!");
    close($l);
    unlink($path);
    for my $i (0 .. $nmsgs - 1) {
        my $want = msg_payload($i);
        my $got = read_exactly($s, length($want));
        fail("message $i: end of stream inside the payload") if length($got) != length($want);
        fail("message $i: payload differs") if $got ne $want;
        for my $k (0 .. msg_nfds($i) - 1) {
            my $fd = IO::FDPass::recv(fileno($s));
            fail("message $i fd $k: IO::FDPass::recv failed: $!") if !defined $fd || $fd < 0;
            open(my $fh, "<&=", $fd) or fail("fdopen $fd: $!");
            my @st = stat($fh);
            sysseek($fh, 0, SEEK_SET);
            my $tag = '';
            sysread($fh, $tag, 200);
            my ($mi, $mk, $dev, $ino) =
              $tag =~ /^FDSEND-INTEROP msg=(\d+) fd=(\d+) dev=(\d+) ino=(\d+)/
              or fail("message $i fd $k: bad tag '$tag'");
            fail("message $i fd $k: got the file of message $mi fd $mk (wrong descriptor)")
              if $mi != $i || $mk != $k;
            fail("message $i fd $k: inode $st[0]:$st[1], sender announced $dev:$ino")
              if $st[0] != $dev || $st[1] != $ino;
            close($fh);
            $nfds++;
        }
        $nbytes += length($want);
    }
    my $rest = read_exactly($s, 1);
    fail("expected end of stream after $nmsgs messages") if length($rest);
    close($s);
}

my $after = fd_count();
fail("descriptor count $before before, $after after: leak") if $before != $after;
print "PASS peer.pl $role fdpass msgs=$nmsgs fds=$nfds bytes=$nbytes fdcount=$before->$after\n";
exit 0;
