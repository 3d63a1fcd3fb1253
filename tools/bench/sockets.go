package main

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The socket calls the supervisor mediates (connect, sendmsg with an
// address): each takes a round trip through the supervisor, which copies
// the address, decides and makes the call itself on the caller's socket.

// loopConnect is the inner half of the connect benchmark: a TCP listener
// on 127.0.0.1 in this process, and n rounds of socket, connect, close
// (with SO_LINGER 0, so that no TIME_WAIT piles up); it prints ns per
// round.
func loopConnect(nStr string) {
	n, _ := strconv.Atoi(nStr)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fatal(err)
		}
		if err := unix.Connect(fd, to); err != nil {
			fatal(err)
		}
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
		unix.Close(fd)
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
}

// loopSendmsg sends n 64-byte UDP datagrams with sendmsg to a socket of
// this process on 127.0.0.1, which drains them, and prints ns per call.
func loopSendmsg(nStr string) {
	n, _ := strconv.Atoi(nStr)
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fatal(err)
	}
	defer srv.Close()
	go func() {
		b := make([]byte, 128)
		for {
			if _, err := srv.Read(b); err != nil {
				return
			}
		}
	}()
	to := &unix.SockaddrInet4{Port: srv.LocalAddr().(*net.UDPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal(err)
	}
	defer unix.Close(fd)
	msg := make([]byte, 64)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := unix.SendmsgN(fd, msg, nil, to, 0); err != nil {
			fatal(err)
		}
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
}

// sockets compares the two loops inside ronly and outside.
func sockets(ronly, self string, runs int) {
	type loopKind struct{ name, arg, n string }
	fmt.Println("mediated socket calls, inside ronly vs outside (TCP and UDP on 127.0.0.1)")
	for _, k := range []loopKind{{"connect (TCP)", "loop-connect", "2000"}, {"sendmsg (UDP, 64 B)", "loop-sendmsg", "20000"}} {
		var in, out []float64
		for r := 0; r < runs; r++ {
			out = append(out, loopRun(exec.Command(self, k.arg, k.n)))
			in = append(in, loopRun(exec.Command(ronly, "--no-metrics", self, k.arg, k.n)))
		}
		d := make([]float64, len(in))
		q := make([]float64, len(in))
		for i := range in {
			d[i], q[i] = in[i]-out[i], in[i]/out[i]
		}
		fmt.Printf("  %-22s outside %8.2f us   inside %8.2f us   %+7.2f us per call (%.1fx)\n",
			k.name, median(out)/1000, median(in)/1000, median(d)/1000, median(q))
	}
	fmt.Println()
}
