package sandbox

import (
	"encoding/binary"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mediated sends: sendto with an address, sendmsg and sendmmsg (whose
// msghdr lives in memory, so every call is mediated, connected or not).
// The supervisor copies the address, the data (at most maxSendData a call)
// and the control messages out of the caller, judges the address as
// connect does (mediate_sock.go), and sends its copy on a dup of the
// caller's socket, with the caller's flags.
//
// Control messages are sent by the supervisor, with its privileges, so
// only those that carry none pass: SCM_RIGHTS, translated into the
// supervisor's dups of the caller's descriptors (the receiver gets the same
// open files); the IP, IPv6 and UDP options an unprivileged sender may set
// (TTL, TOS, PKTINFO, hop limit, traffic class, DONTFRAG, GSO segment size);
// and AF_ALG's and kTLS's, which are about the socket's own stream.
// SCM_CREDENTIALS would let the caller claim the supervisor's pid or any
// uid, and IP options or IPv6 extension headers need CAP_NET_RAW: those and
// every other SOL_SOCKET message are refused with EPERM.

// Offsets in struct msghdr and struct mmsghdr (x86_64).
const (
	msghdrSize  = 56
	mmsghdrSize = 64
	msgLenOff   = 56 // mmsghdr.msg_len
)

// Socket levels and control message types (linux/in.h, in6.h, udp.h,
// socket.h) that pass.
const (
	solALG            = 279
	solTLS            = 282
	ipv6DontFrag      = 62
	udpSegment        = 103
	controlRefusedWhy = "control message a sender needs privileges for, or that would carry the supervisor's credentials"
)

var passControl = map[int32]map[int32]bool{
	unix.SOL_IP:   {unix.IP_TTL: true, unix.IP_TOS: true, unix.IP_PKTINFO: true},
	unix.SOL_IPV6: {unix.IPV6_PKTINFO: true, unix.IPV6_HOPLIMIT: true, unix.IPV6_TCLASS: true, ipv6DontFrag: true},
	unix.SOL_UDP:  {udpSegment: true},
}

// message is one message read out of the caller, ready to send.
type message struct {
	t    target
	data []byte
	oob  []byte
	fds  []int // the supervisor's dups of SCM_RIGHTS descriptors
}

func (m *message) close() {
	m.t.close()
	for _, fd := range m.fds {
		unix.Close(fd)
	}
}

// send sends m on sock with flags; the supervisor never takes SIGPIPE.
func (m *message) send(sock int, flags uint64) (int64, syscall.Errno) {
	var msg unix.Msghdr
	if len(m.t.addr) > 0 {
		msg.Name, msg.Namelen = &m.t.addr[0], uint32(len(m.t.addr))
	}
	var iov unix.Iovec
	if len(m.data) > 0 {
		iov.Base = &m.data[0]
		iov.SetLen(len(m.data))
		msg.Iov = &iov
		msg.SetIovlen(1)
	}
	if len(m.oob) > 0 {
		msg.Control = &m.oob[0]
		msg.SetControllen(len(m.oob))
	}
	n, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(sock), uintptr(unsafe.Pointer(&msg)), uintptr(uint32(flags)|unix.MSG_NOSIGNAL))
	return int64(n), e
}

// readMsg reads the struct msghdr at addr and what it points to (three
// copies: the header; the name, iovecs and control; the data); budget
// bounds the data. A refusal comes with the errno to answer.
func (s *sockets) readMsg(k *caller, addr uint64, budget int) (*message, syscall.Errno, *Refusal) {
	h, e := k.read(addr, msghdrSize)
	if e != 0 {
		return nil, e, nil
	}
	u64 := func(off int) uint64 { return binary.NativeEndian.Uint64(h[off:]) }
	name, namelen := u64(0), uint64(binary.NativeEndian.Uint32(h[8:]))
	iov, iovlen := u64(16), u64(24)
	ctl, ctllen := u64(32), u64(40)
	if name == 0 {
		namelen = 0
	}
	if iov == 0 && iovlen > 0 {
		return nil, unix.EFAULT, nil
	}
	if ctl == 0 {
		ctllen = 0
	}
	switch {
	case namelen > unix.SizeofSockaddrAny:
		return nil, unix.EINVAL, nil
	case iovlen > uioMaxIOV:
		return nil, unix.EMSGSIZE, nil
	case ctllen > maxControl:
		return nil, unix.ENOBUFS, nil
	}
	meta, e := k.gather([]span{{name, int(namelen)}, {iov, int(iovlen) * 16}, {ctl, int(ctllen)}})
	if e != 0 {
		return nil, e, nil
	}
	sa, vec, control := meta[:namelen], meta[namelen:namelen+iovlen*16], meta[namelen+iovlen*16:]
	m := &message{t: target{hold: -1}}
	if len(sa) > 0 {
		m.t = s.judge(k, sa)
		if m.t.refused != "" {
			m.close()
			return nil, refusedSocket, m.t.refusal()
		}
		if m.t.errno != 0 {
			m.close()
			return nil, m.t.errno, nil
		}
	}
	if e := m.readData(k, vec, budget); e != 0 {
		m.close()
		return nil, e, nil
	}
	if len(control) > 0 {
		if e, r := m.translate(k, control); e != 0 {
			m.close()
			return nil, e, r
		}
	}
	return m, 0, nil
}

// readData gathers the data of the iovecs vec (struct iovec[]), at most
// budget bytes.
func (m *message) readData(k *caller, vec []byte, budget int) syscall.Errno {
	var spans []span
	for i := 0; i+16 <= len(vec) && budget > 0; i += 16 {
		base, n := binary.NativeEndian.Uint64(vec[i:]), binary.NativeEndian.Uint64(vec[i+8:])
		if int64(n) < 0 {
			return unix.EINVAL
		}
		if n > uint64(budget) {
			n = uint64(budget)
		}
		if n > 0 {
			spans = append(spans, span{base, int(n)})
			budget -= int(n)
		}
	}
	var e syscall.Errno
	m.data, e = k.gather(spans)
	return e
}

// translate checks the caller's control messages and builds the
// supervisor's.
func (m *message) translate(k *caller, b []byte) (syscall.Errno, *Refusal) {
	cms, err := unix.ParseSocketControlMessage(b)
	if err != nil {
		return unix.EINVAL, nil
	}
	for _, cm := range cms {
		level, typ := cm.Header.Level, cm.Header.Type
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_RIGHTS:
			if len(cm.Data)%4 != 0 {
				return unix.EINVAL, nil
			}
			var fds []int
			for i := 0; i < len(cm.Data); i += 4 {
				n := int32(binary.NativeEndian.Uint32(cm.Data[i:]))
				if n < 0 {
					return unix.EBADF, nil
				}
				fd, e := k.passFD(uint64(n))
				if e != 0 {
					return e, nil
				}
				m.fds = append(m.fds, fd)
				fds = append(fds, fd)
			}
			m.oob = append(m.oob, unix.UnixRights(fds...)...)
		case level == solALG || level == solTLS || passControl[level][typ]:
			c := make([]byte, unix.CmsgSpace(len(cm.Data)))
			h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			h.Level, h.Type = level, typ
			h.SetLen(unix.CmsgLen(len(cm.Data)))
			copy(c[unix.CmsgLen(0):], cm.Data)
			m.oob = append(m.oob, c...)
		default:
			return unix.EPERM, &Refusal{Errno: unix.EPERM, Reason: controlRefusedWhy,
				Path: controlName(level, typ)}
		}
	}
	return 0, nil
}

func controlName(level, typ int32) string {
	if level == unix.SOL_SOCKET && typ == unix.SCM_CREDENTIALS {
		return "SCM_CREDENTIALS"
	}
	return "cmsg level " + strconv.Itoa(int(level)) + " type " + strconv.Itoa(int(typ))
}

// sending is the supervisor sending a call's messages on the caller's
// socket. It tries without waiting first, on the answering goroutine; a
// call that would wait (a full send buffer, the rest of a stream send) is
// finished on a goroutine of its own, with the caller's own flags.
type sending struct {
	c     *Call
	k     *caller
	sock  int
	msgs  []*message
	flags uint64
	// vec is sendmmsg's vector, where msg_len is written back; 0 for
	// sendto and sendmsg.
	vec  uint64
	i    int   // the message being sent
	n    int64 // bytes of it sent so far
	sent int   // messages sent
}

func newSending(c *Call, k *caller, sock int, msgs []*message, flags, vec uint64) *sending {
	return &sending{c: c, k: k, sock: sock, msgs: msgs, flags: flags, vec: vec}
}

// waits says whether the caller waits for its send: no MSG_DONTWAIT, no
// O_NONBLOCK on its socket. Asked only when a send would wait.
func (st *sending) waits() bool {
	return st.flags&unix.MSG_DONTWAIT == 0 && !nonblocking(st.sock)
}

// run sends what is left and answers the call; with wait false it stops
// instead of waiting, and says so (false): then run(true) finishes.
func (st *sending) run(wait bool) bool {
	for st.i < len(st.msgs) {
		m := st.msgs[st.i]
		part := message{t: m.t, data: m.data[st.n:], oob: m.oob}
		if st.n > 0 {
			part.oob = nil // went with the first part
		}
		flags := st.flags
		if !wait {
			flags |= unix.MSG_DONTWAIT
		}
		n, e := part.send(st.sock, flags)
		if e == unix.EAGAIN && !wait && st.waits() {
			return false
		}
		if e != 0 {
			st.k.sigpipe(st.flags, e)
			st.fail(e)
			return true
		}
		st.n += n
		if int(st.n) < len(m.data) && !wait && st.waits() {
			return false // a stream send the caller waits for in full
		}
		if st.vec != 0 {
			var l [4]byte
			binary.NativeEndian.PutUint32(l[:], uint32(st.n))
			st.k.write(st.vec+uint64(st.i)*mmsghdrSize+msgLenOff, l[:])
		}
		st.sent++
		st.i++
		if st.i < len(st.msgs) {
			st.n = 0
		}
	}
	if st.vec != 0 {
		st.c.Reply(int64(st.sent), 0)
	} else {
		st.c.Reply(st.n, 0)
	}
	return true
}

// fail answers an error as the kernel would: a sendmmsg that sent some
// messages, or a stream send that sent some bytes, succeeds with that much.
func (st *sending) fail(e syscall.Errno) {
	switch {
	case st.vec != 0 && st.sent > 0:
		st.c.Reply(int64(st.sent), 0)
	case st.vec == 0 && st.n > 0:
		st.c.Reply(st.n, 0)
	default:
		st.c.Reply(0, e)
	}
}

// send finishes a mediator: the messages go out now, or on a goroutine
// that takes cl with it when they would wait.
func (st *sending) send(s *sockets, cl *cleanup) {
	if st.run(false) {
		return
	}
	held := 0
	for _, m := range st.msgs[st.i:] {
		held += len(m.data)
	}
	if !s.reserve(held) {
		st.fail(unix.ENOBUFS)
		return
	}
	go func(cl cleanup) {
		defer s.release(held)
		defer cl.run()
		st.run(true)
	}(cl.handOff())
}

// sendto(fd, buf, len, flags, addr, addrlen); the policy mediates only
// calls with an address.
func (s *sockets) sendto(c *Call) *Refusal {
	k, e := s.open(c)
	if e != 0 {
		return nil
	}
	var cl cleanup
	defer cl.run()
	cl.add(k.close)
	m := &message{t: target{hold: -1}}
	cl.add(m.close)
	if c.Args[4] != 0 {
		sa, e := k.sockaddr(c.Args[4], c.Args[5])
		if e != 0 {
			return answer(c, 0, e)
		}
		m.t = s.judge(k, sa)
		if m.t.errno != 0 || m.t.refused != "" {
			return s.deny(c, &m.t)
		}
	}
	if n := c.Args[2]; n > 0 {
		if int64(n) < 0 || n > maxSendData {
			n = maxSendData
		}
		var e syscall.Errno
		if m.data, e = k.read(c.Args[1], int(n)); e != 0 {
			return answer(c, 0, e)
		}
	}
	return s.sendOne(c, k, &cl, m, c.Args[3]&0xffffffff)
}

// sendOne sends m on the caller's socket (its first argument) once the
// caller still waits in the call: the tail of sendto and sendmsg.
func (s *sockets) sendOne(c *Call, k *caller, cl *cleanup, m *message, flags uint64) *Refusal {
	sock, e := k.fd(c.Args[0])
	if e != 0 {
		return answer(c, 0, e)
	}
	cl.add(func() { unix.Close(sock) })
	if !c.Valid() {
		return nil
	}
	newSending(c, k, sock, []*message{m}, flags, 0).send(s, cl)
	return nil
}

// sendmsg(fd, msg, flags)
func (s *sockets) sendmsg(c *Call) *Refusal {
	k, e := s.open(c)
	if e != 0 {
		return nil
	}
	var cl cleanup
	defer cl.run()
	cl.add(k.close)
	m, e, r := s.readMsg(k, c.Args[1], maxSendData)
	if e != 0 {
		if !c.Valid() {
			return nil
		}
		c.Reply(0, e)
		return r
	}
	cl.add(m.close)
	return s.sendOne(c, k, &cl, m, c.Args[2]&0xffffffff)
}

// sendmmsg(fd, msgvec, vlen, flags): each message as sendmsg, msg_len
// written back; like the kernel, it returns how many were sent when a
// later one fails, and the first one's error otherwise.
func (s *sockets) sendmmsg(c *Call) *Refusal {
	vlen := c.Args[2] & 0xffffffff
	if vlen > uioMaxIOV {
		vlen = uioMaxIOV
	}
	if vlen == 0 {
		if c.Valid() {
			c.Reply(0, 0)
		}
		return nil
	}
	k, e := s.open(c)
	if e != 0 {
		return nil
	}
	var cl cleanup
	defer cl.run()
	cl.add(k.close)
	var msgs []*message
	var refusal *Refusal
	budget := maxSendData
	for i := uint64(0); i < vlen && budget > 0; i++ {
		m, e, r := s.readMsg(k, c.Args[1]+i*mmsghdrSize, budget)
		if e != 0 {
			if i == 0 {
				if !c.Valid() {
					return nil
				}
				c.Reply(0, e)
				return r
			}
			refusal = r // the messages before it are sent
			break
		}
		cl.add(m.close)
		msgs = append(msgs, m)
		budget -= len(m.data)
	}
	sock, e := k.fd(c.Args[0])
	if e != 0 {
		return answer(c, 0, e)
	}
	cl.add(func() { unix.Close(sock) })
	if !c.Valid() {
		return nil
	}
	newSending(c, k, sock, msgs, c.Args[3]&0xffffffff, c.Args[1]).send(s, &cl)
	return refusal
}
