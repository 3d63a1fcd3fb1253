package probe

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Unix sockets: the host's must not answer from inside under any name or
// by any call that carries an address; the session's own, in its writable
// places, must work as usual (servers and clients, datagrams, descriptors
// passed, abstract names it bound, TCP and UDP on loopback).

// wantSocketRefused are the errnos of an unreachable host socket: the
// supervisor's refusal (EACCES), or an older layer's.
var wantSocketRefused = []unix.Errno{unix.EACCES, unix.ECONNREFUSED, unix.ENOENT, unix.EPERM}

func socketHostile() []Op {
	h := func(name string, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: wantSocketRefused}
	}
	return []Op{
		h("connect canary socket by a hard link", func(t Targets) error {
			return connectUnix(&unix.SockaddrUnix{Name: t.SocketLink})
		}),
		h("connect canary socket by a symlink in /tmp", func(t Targets) error {
			link := filepath.Join(t.Tmp(), "ronly-probe-link-"+t.Marker)
			os.Remove(link)
			if err := os.Symlink(t.Socket, link); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			defer os.Remove(link)
			return connectUnix(&unix.SockaddrUnix{Name: link})
		}),
		h("connect canary socket by a relative path", func(t Targets) error {
			return withCwd(filepath.Dir(t.Socket), func() error {
				return connectUnix(&unix.SockaddrUnix{Name: filepath.Base(t.Socket)})
			})
		}),
		h("sendto datagram canary socket", func(t Targets) error {
			return withDgram(func(fd int) error {
				return unix.Sendto(fd, []byte("probe"), 0, &unix.SockaddrUnix{Name: t.Dgram})
			})
		}),
		h("sendmsg datagram canary socket", func(t Targets) error {
			return withDgram(func(fd int) error {
				_, err := unix.SendmsgN(fd, []byte("probe"), nil, &unix.SockaddrUnix{Name: t.Dgram}, 0)
				return err
			})
		}),
		h("sendmmsg datagram canary socket", func(t Targets) error {
			return withDgram(func(fd int) error { return sendmmsgTo(fd, t.Dgram) })
		}),
		h("connect datagram canary socket", func(t Targets) error {
			return withDgram(func(fd int) error { return unix.Connect(fd, &unix.SockaddrUnix{Name: t.Dgram}) })
		}),
		h("sendto host abstract socket", func(t Targets) error {
			return withDgram(func(fd int) error {
				return unix.Sendto(fd, []byte("probe"), 0, &unix.SockaddrUnix{Name: "@" + t.Abstract})
			})
		}),
	}
}

func socketEveryday() []Op {
	e := func(name string, run func(t Targets) error) Op { return Op{Name: name, Kind: Everyday, Run: run} }
	return []Op{
		e("unix stream server and client in /tmp", func(t Targets) error {
			return inTmpDir(t, func(dir string) error { return streamPair(filepath.Join(dir, "s.sock")) })
		}),
		e("unix datagrams between sockets in /tmp (sendto, sendmsg)", func(t Targets) error {
			return inTmpDir(t, dgramPair)
		}),
		e("sendmsg SCM_RIGHTS between sockets in /tmp", func(t Targets) error {
			return inTmpDir(t, passDescriptor)
		}),
		e("abstract socket bound and connected by the session", func(t Targets) error {
			return streamPair("@ronly-probe-own-" + t.Marker)
		}),
		e("TCP connect to a 127.0.0.1 listener inside", func(Targets) error {
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return netErrno(err)
			}
			defer l.Close()
			return roundTrip(l, "tcp4")
		}),
		e("UDP sendto and sendmsg on 127.0.0.1", func(Targets) error {
			return udpRoundTrip()
		}),
		e("a send that waits holds up no other socket call", func(Targets) error {
			return blockedSend()
		}),
	}
}

// withCwd runs f in dir, and goes back.
func withCwd(dir string, f func() error) error {
	old, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Chdir(old)
	return f()
}

func withDgram(f func(fd int) error) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(fd)
	return f(fd)
}

// sendmmsgTo sends one datagram to path with sendmmsg.
func sendmmsgTo(fd int, path string) error {
	var sa unix.RawSockaddrUnix
	sa.Family = unix.AF_UNIX
	for i := 0; i < len(path) && i < len(sa.Path)-1; i++ {
		sa.Path[i] = int8(path[i])
	}
	data := []byte("probe")
	iov := unix.Iovec{Base: &data[0]}
	iov.SetLen(len(data))
	var msgs [1]struct {
		hdr unix.Msghdr
		n   uint32
		_   uint32
	}
	msgs[0].hdr.Name = (*byte)(unsafe.Pointer(&sa))
	msgs[0].hdr.Namelen = uint32(2 + len(path) + 1)
	msgs[0].hdr.Iov = &iov
	msgs[0].hdr.SetIovlen(1)
	_, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), 1, 0, 0, 0)
	return errnoOrNil(e)
}

// inTmpDir runs f in a fresh directory under /tmp, the session's own.
func inTmpDir(t Targets, f func(dir string) error) error {
	dir, err := os.MkdirTemp(t.Tmp(), "ronly-probe-sock-")
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer os.RemoveAll(dir)
	return f(dir)
}

// netErrno is the errno inside a net error, for Run's convention.
func netErrno(err error) error {
	var en unix.Errno
	if errors.As(err, &en) {
		return en
	}
	return err
}

// streamPair listens on a unix address, connects to it and passes a byte.
func streamPair(addr string) error {
	l, err := net.Listen("unix", addr)
	if err != nil {
		return netErrno(err)
	}
	defer l.Close()
	return roundTrip(l, "unix")
}

func roundTrip(l net.Listener, network string) error {
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4)
		if _, err := c.Read(b); err != nil {
			done <- err
			return
		}
		_, err = c.Write(b)
		done <- err
	}()
	c, err := net.DialTimeout(network, l.Addr().String(), 5*time.Second)
	if err != nil {
		return netErrno(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return netErrno(err)
	}
	b := make([]byte, 4)
	if _, err := c.Read(b); err != nil || string(b) != "ping" {
		return fmt.Errorf("echo: %q %v", b, err)
	}
	return netErrno(<-done)
}

// dgramPair sends a datagram with sendto and one with sendmsg between two
// sockets bound in dir.
func dgramPair(dir string) error {
	srv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(srv)
	path := filepath.Join(dir, "d.sock")
	if err := unix.Bind(srv, &unix.SockaddrUnix{Name: path}); err != nil {
		return err
	}
	return withDgram(func(fd int) error {
		if err := unix.Sendto(fd, []byte("one"), 0, &unix.SockaddrUnix{Name: path}); err != nil {
			return err
		}
		if _, err := unix.SendmsgN(fd, []byte("two"), nil, &unix.SockaddrUnix{Name: path}, 0); err != nil {
			return err
		}
		for _, want := range []string{"one", "two"} {
			b := make([]byte, 8)
			n, _, err := unix.Recvfrom(srv, b, unix.MSG_DONTWAIT)
			if err != nil {
				return err
			}
			if string(b[:n]) != want {
				return fmt.Errorf("got %q, want %q", b[:n], want)
			}
		}
		return nil
	})
}

// passDescriptor sends a pipe's write end over a socket bound in dir and
// writes through the descriptor received.
func passDescriptor(dir string) error {
	srv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(srv)
	path := filepath.Join(dir, "fd.sock")
	if err := unix.Bind(srv, &unix.SockaddrUnix{Name: path}); err != nil {
		return err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	err = withDgram(func(fd int) error {
		_, err := unix.SendmsgN(fd, []byte("fd"), unix.UnixRights(p[1]), &unix.SockaddrUnix{Name: path}, 0)
		return err
	})
	if err != nil {
		return err
	}
	b, oob := make([]byte, 8), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(srv, b, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return err
	}
	cms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cms) != 1 {
		return fmt.Errorf("no descriptor received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&cms[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("no descriptor received: %v", err)
	}
	defer unix.Close(fds[0])
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		return err
	}
	got := make([]byte, 1)
	if n, err := unix.Read(p[0], got); err != nil || n != 1 {
		return fmt.Errorf("the pipe got nothing: %v", err)
	}
	return nil
}

func udpRoundTrip() error {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return netErrno(err)
	}
	defer srv.Close()
	port := srv.LocalAddr().(*net.UDPAddr).Port
	to := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, []byte("one"), 0, to); err != nil {
		return err
	}
	if _, err := unix.SendmsgN(fd, []byte("two"), nil, to, 0); err != nil {
		return err
	}
	srv.SetDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", "two"} {
		b := make([]byte, 8)
		n, err := srv.Read(b)
		if err != nil {
			return netErrno(err)
		}
		if string(b[:n]) != want {
			return fmt.Errorf("got %q, want %q", b[:n], want)
		}
	}
	return nil
}

// drainDgram reads every datagram already queued on c, without waiting,
// and says how many there were. A nil c has none.
func drainDgram(c *net.UnixConn) int {
	if c == nil {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Read(func(fd uintptr) bool {
		b := make([]byte, 64)
		for {
			if _, _, err := unix.Recvfrom(int(fd), b, unix.MSG_DONTWAIT); err != nil {
				return true
			}
			n++
		}
	})
	return n
}

// blockedSend sends 1 MiB on a unix stream socket nobody reads yet (so the
// send waits), makes other mediated calls meanwhile, then reads: the send
// completes with the very bytes sent.
func blockedSend() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	type sent struct {
		n   int
		err error
	}
	done := make(chan sent, 1)
	go func() {
		n, err := unix.SendmsgN(fds[0], data, nil, nil, 0)
		done <- sent{n, err}
	}()
	time.Sleep(100 * time.Millisecond) // the send fills the buffer and waits
	t0 := time.Now()
	if err := udpRoundTrip(); err != nil {
		return err
	}
	if d := time.Since(t0); d > 2*time.Second {
		return fmt.Errorf("a UDP round trip took %v while a send waited", d)
	}
	var got []byte
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case s := <-done:
			if s.err != nil {
				return s.err
			}
			for len(got) < s.n {
				n, err := unix.Read(fds[1], buf)
				if err != nil {
					return err
				}
				got = append(got, buf[:n]...)
			}
			if s.n == 0 || !bytes.Equal(got, data[:s.n]) {
				return fmt.Errorf("sent %d bytes, received %d that differ", s.n, len(got))
			}
			return nil
		default:
		}
		if n, _, err := unix.Recvfrom(fds[1], buf, unix.MSG_DONTWAIT); err == nil {
			got = append(got, buf[:n]...)
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	return fmt.Errorf("the send never finished")
}
