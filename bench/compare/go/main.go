// The comparison workloads through Go's net.UnixConn: WriteMsgUnix/ReadMsgUnix with
// syscall.UnixRights, on Go's netpoller (the sockets are non-blocking; a goroutine that
// waits parks on epoll, no thread is blocked per pending operation).
//
// Usage: bench_go WORKLOAD SECONDS [WARMUP_SECONDS]
// Same workloads, payload and output line as compare/c/harness.h (inproc1, inproc64,
// stream1, pingpong1). Go cannot fork, so the second process of stream1/pingpong1 is this
// program started again with "--child WORKLOAD" and its end of the socketpair as fd 3.
// pingpong1 also prints p50_us= and p99_us=: the round-trip latency percentiles over the
// timed loop (one clock read per round trip).
// Built by eng/bench.sh with the standard library only (GOFLAGS=-mod=mod, GOPROXY=off).
// SPDX-License-Identifier: MIT
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	payloadLen = 16
	batch      = 64
)

var payload = []byte("fdsend-benchmark")

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "go: %s: %v\n", what, err)
	os.Exit(1)
}

// unixConn turns a raw socket fd into a *net.UnixConn (registered with the netpoller).
func unixConn(fd int, name string) *net.UnixConn {
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f) // dups the fd
	if err != nil {
		die("FileConn", err)
	}
	f.Close()
	return c.(*net.UnixConn)
}

type conn struct {
	c   *net.UnixConn
	buf []byte
	oob []byte
	got []int
}

func newConn(c *net.UnixConn, maxFds int) *conn {
	return &conn{c: c, buf: make([]byte, payloadLen), oob: make([]byte, syscall.CmsgSpace(4*maxFds)), got: make([]int, 0, maxFds)}
}

func (c *conn) send(rights []byte) {
	n, oobn, err := c.c.WriteMsgUnix(payload, rights, nil)
	if err != nil || n != payloadLen || oobn != len(rights) {
		die("send", err)
	}
}

// recv receives one message; returns false at end of stream. Received fds in c.got.
func (c *conn) recv(nfds int) bool {
	n, oobn, _, _, err := c.c.ReadMsgUnix(c.buf, c.oob)
	if errors.Is(err, io.EOF) || (err == nil && n == 0 && oobn == 0) {
		return false
	}
	if err != nil {
		die("receive", err)
	}
	c.got = c.got[:0]
	msgs, err := syscall.ParseSocketControlMessage(c.oob[:oobn])
	if err != nil {
		die("parse control message", err)
	}
	for i := range msgs {
		if msgs[i].Header.Level == syscall.SOL_SOCKET && msgs[i].Header.Type == syscall.SCM_RIGHTS {
			fds, err := syscall.ParseUnixRights(&msgs[i])
			if err != nil {
				die("parse rights", err)
			}
			c.got = append(c.got, fds...)
		}
	}
	if n != payloadLen || len(c.got) != nfds {
		die("receive", fmt.Errorf("%d bytes, %d fds", n, len(c.got)))
	}
	return true
}

func (c *conn) closeGot() {
	for _, fd := range c.got {
		syscall.Close(fd)
	}
}

func taskCPU(pid int) float64 {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	total := 0.0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseFloat(f[0], 64)
			total += ns * 1e-9
		}
	}
	return total
}

func child(workload string) {
	c := newConn(unixConn(3, "parent"), 1)
	if workload == "stream1" {
		for c.recv(1) {
			c.closeGot()
		}
		if _, err := c.c.Write([]byte("A")); err != nil {
			die("acknowledge", err)
		}
		os.Exit(0)
	}
	for c.recv(1) {
		c.send(syscall.UnixRights(c.got[0]))
		c.closeGot()
	}
	os.Exit(0)
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "--child" {
		child(os.Args[2])
	}
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: bench_go inproc1|inproc64|stream1|pingpong1 SECONDS [WARMUP]")
		os.Exit(2)
	}
	workload := os.Args[1]
	seconds, _ := strconv.ParseFloat(os.Args[2], 64)
	warmup := 0.2
	if len(os.Args) > 3 {
		warmup, _ = strconv.ParseFloat(os.Args[3], 64)
	}
	nfds := map[string]int{"inproc1": 1, "inproc64": 64, "stream1": 1, "pingpong1": 1}[workload]
	if nfds == 0 {
		fmt.Fprintf(os.Stderr, "go: unknown workload %s\n", workload)
		os.Exit(2)
	}
	fds := make([]int, nfds)
	for i := range fds {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			die("open /dev/null", err)
		}
		fds[i] = fd
	}
	rights := syscall.UnixRights(fds...)
	sv, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		die("socketpair", err)
	}
	inproc := strings.HasPrefix(workload, "inproc")
	var cmd *exec.Cmd
	a := newConn(unixConn(sv[0], "a"), nfds)
	syscall.Close(sv[0])
	var b *conn
	if inproc {
		b = newConn(unixConn(sv[1], "b"), nfds)
		syscall.Close(sv[1])
	} else {
		f := os.NewFile(uintptr(sv[1]), "child")
		cmd = exec.Command(os.Args[0], "--child", workload)
		cmd.ExtraFiles = []*os.File{f} // fd 3 in the child
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			die("start child", err)
		}
		f.Close()
	}

	var lat []time.Duration
	recordLatency := false
	loop := func(secs float64) int64 {
		var ops int64
		end := time.Now().Add(time.Duration(secs * float64(time.Second)))
		for {
			switch {
			case inproc:
				for k := 0; k < batch; k++ {
					a.send(rights)
					if !b.recv(nfds) {
						die("receive", io.EOF)
					}
					b.closeGot()
				}
			case workload == "stream1":
				for k := 0; k < batch; k++ {
					a.send(rights)
				}
			default:
				for k := 0; k < batch; k++ {
					t := time.Now()
					a.send(rights)
					if !a.recv(1) {
						die("ping-pong peer closed", io.EOF)
					}
					a.closeGot()
					if recordLatency {
						lat = append(lat, time.Since(t))
					}
				}
			}
			ops += batch
			if !time.Now().Before(end) {
				return ops
			}
		}
	}

	if warmup > 0 {
		loop(warmup)
	}
	lat = make([]time.Duration, 0, 1<<20)
	recordLatency = workload == "pingpong1"
	pid := 0
	if cmd != nil {
		pid = cmd.Process.Pid
	}
	k0 := 0.0
	if pid != 0 {
		k0 = taskCPU(pid)
	}
	c0 := taskCPU(os.Getpid())
	t0 := time.Now()
	ops := loop(seconds)
	if !inproc {
		if err := a.c.CloseWrite(); err != nil {
			die("shutdown", err)
		}
		if workload == "stream1" {
			ack := make([]byte, 1)
			if n, err := a.c.Read(ack); n != 1 || err != nil {
				die("read acknowledgement", err)
			}
		}
	}
	el := time.Since(t0).Seconds()
	c1 := taskCPU(os.Getpid())
	k1 := 0.0
	if pid != 0 {
		k1 = taskCPU(pid)
		if err := cmd.Wait(); err != nil {
			die("child failed", err)
		}
	}
	line := fmt.Sprintf("ops_per_sec=%.1f ops=%d seconds=%.4f", float64(ops)/el, ops, el)
	if c0 >= 0 && c1 >= 0 && k0 >= 0 && k1 >= 0 {
		line += fmt.Sprintf(" cpu_seconds=%.4f", (c1-c0)+(k1-k0))
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
		line += fmt.Sprintf(" p50_us=%.2f p99_us=%.2f", p(0.50), p(0.99))
	}
	fmt.Println(line)
}
