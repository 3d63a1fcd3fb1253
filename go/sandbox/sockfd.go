package sandbox

import (
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/kernelver"
	cinit "ronly.dev/ronly/init"
)

// Sockets the supervisor makes, for where pidfd_getfd is refused (Docker's
// default seccomp profile without CAP_SYS_PTRACE) and the session shares
// the supervisor's network namespace (landlock-only mode). The socket
// mediation (mediate_sock.go, mediate_send.go) makes each call on its own
// descriptor of the caller's socket; without pidfd_getfd it cannot take
// one, so it keeps one from the start:
//
//   - socket() and socketpair() go to the supervisor too (a BPF prefix, as
//     nonsmeta.go's). Their arguments are registers, safe to decide on.
//     For AF_UNIX, AF_INET and AF_INET6 of type stream, datagram or
//     seqpacket, the supervisor makes the socket itself with the same type
//     and protocol, installs it in the caller with SECCOMP_IOCTL_NOTIF_ADDFD
//     (5.9; then a reply carries the number: see install for why not
//     SECCOMP_ADDFD_FLAG_SEND) and keeps its own
//     descriptor, keyed by the socket's inode. Every other socket (raw,
//     packet, netlink, ...) the caller makes itself (the call continues:
//     registers only), with its own credentials: a socket the supervisor
//     made carries the supervisor's in its file, and the kernel judges some
//     later calls by those (netlink's capability checks, CAP_NET_RAW at
//     creation), so none of those is ever made here.
//   - On connect, bind, sendto, sendmsg and sendmmsg the mediation reads
//     /proc/TID/fd/N ("socket:[INO]") and, when INO is one of its own,
//     decides and acts on its own copy, with the very code of the
//     pidfd_getfd path. The number may be dup2'd to another socket
//     meanwhile: the supervisor then acts on a socket the session held a
//     moment ago, with the address it judged, which is no more than the
//     session could do. A socket it does not know (inherited, received
//     with SCM_RIGHTS, accepted) fails with EACCES, as before (fail closed).
//   - SCM_RIGHTS: the session's sockets pass as the supervisor's copies;
//     an anonymous pipe passes as a new open of the same pipe (through
//     /proc/TID/fd/N, checked to be a pipe by an O_PATH open first, with
//     the access mode fdinfo gives for an open file of that very pipe);
//     anything else fails with EACCES. The receiver gets an open file of
//     its own, not the caller's (its O_NONBLOCK is copied, later changes
//     are not shared).
//
// Lifetime. The copy must not keep a socket alive once the session closed
// it: a peer would never see EOF, a listening socket would go on taking
// connections, and a DNS-heavy session would run the supervisor out of
// descriptors. The kernel tells nobody when a process closes a descriptor,
// so the supervisor sweeps: it lists the socket inodes that any process
// other than itself holds (every /proc/PID/fd it may read), and closes each
// copy whose socket nobody holds. It sweeps every sweepEvery while it holds
// any copy, and at once when the table passes its bound (twice what the
// last sweep kept, at least sweepAtLeast). A copy enters the table only
// once installed in the caller (else a sweep could close the number the
// ioctl is about to name), and one that entered after a sweep began is
// kept by that sweep, which may have read the caller's descriptors before
// the install. A peer thus sees EOF at most
// about sweepEvery late. A socket in flight in an SCM_RIGHTS message, held
// by no process at that moment, loses its copy: later mediated calls on it
// fail with EACCES. Past maxSockCopies live copies, socket() fails with
// EMFILE.
//
// The socket's cgroup (for cgroup-BPF and socket memory accounting) and
// sk_uid are the supervisor's; in landlock-only mode the uid is the
// session's own.

const (
	sweepEvery    = 500 * time.Millisecond
	sweepAtLeast  = 64
	maxSockCopies = 4096
)

// seccompIoctlNotifAddfd is SECCOMP_IOCTL_NOTIF_ADDFD, _IOW('!', 3, struct
// seccomp_notif_addfd) in linux/seccomp.h (Linux 5.9).
const seccompIoctlNotifAddfd = 0x40182103

// struct seccomp_notif_addfd
type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// sockFDs are the supervisor's copies of the sockets it made for the
// session.
type sockFDs struct {
	self int

	mu       sync.Mutex
	byIno    map[uint64]sockCopy
	next     int  // sweep at once when the table holds this many
	ticking  bool // the periodic sweep runs
	sweeping sync.Mutex
}

type sockCopy struct {
	fd   int
	born time.Time
}

func newSockFDs() *sockFDs {
	return &sockFDs{self: os.Getpid(), byIno: map[uint64]sockCopy{}, next: sweepAtLeast}
}

// len is how many copies the supervisor holds.
func (f *sockFDs) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.byIno)
}

// mediateSocketFDs sets the session up for supervisor-made sockets:
// socket() and socketpair() to the supervisor, and the socket mediation
// using the copies.
func (s *session) mediateSocketFDs(cfg cinit.Config) cinit.Config {
	f := newSockFDs()
	s.socks.fds = f
	// An attempt in another mode may have refused every socket call.
	s.socks.refused = false
	s.socks.register(s.mediators)
	t := bpf.Table{}
	for nr, e := range s.table {
		t[nr] = e
	}
	t[unix.SYS_SOCKET] = bpf.Entry{Name: "socket", Mediate: true}
	t[unix.SYS_SOCKETPAIR] = bpf.Entry{Name: "socketpair", Mediate: true}
	s.table = t
	s.mediators[unix.SYS_SOCKET] = f.socket
	s.mediators[unix.SYS_SOCKETPAIR] = f.socketpair
	if cfg.BPF != nil {
		cfg.BPF = append(sockfdPrefix(), cfg.BPF...)
	}
	return cfg
}

// addfdAvailable says whether the kernel has SECCOMP_IOCTL_NOTIF_ADDFD
// (5.9), from its release.
func addfdAvailable() bool { return kernelver.AtLeast(kernelver.Release(), 5, 9) }

// sockfdPrefix is the BPF in front of the session's program that sends
// socket and socketpair to the supervisor; everything else falls through
// to the program, which starts again from the architecture check.
func sockfdPrefix() []byte {
	// [0] ld arch, [1] jne → out, [2] ld nr, [3] jge x32 → out,
	// [4] jeq socket → notify, [5] jeq socketpair → notify else out,
	// [6] notify, [7] out: the program.
	p := []unix.SockFilter{
		{Code: bpfLd, K: 4},
		{Code: bpfJeq, K: auditArchX86, Jt: 0, Jf: 5},
		{Code: bpfLd, K: 0},
		{Code: bpfJge, K: 0x40000000, Jt: 3, Jf: 0},
		{Code: bpfJeq, K: unix.SYS_SOCKET, Jt: 1, Jf: 0},
		{Code: bpfJeq, K: unix.SYS_SOCKETPAIR, Jt: 0, Jf: 1},
		{Code: bpfRet, K: unix.SECCOMP_RET_USER_NOTIF},
	}
	return encodeFilter(p)
}

// supervisorMakes says whether the supervisor makes a socket of this
// domain and type (SOCK_ flags removed) for the session: those whose
// creation needs no privilege and whose later checks go by the caller's
// credentials.
func supervisorMakes(domain, typ int) bool {
	switch domain {
	case unix.AF_UNIX, unix.AF_INET, unix.AF_INET6:
	default:
		return false
	}
	return typ == unix.SOCK_STREAM || typ == unix.SOCK_DGRAM || typ == unix.SOCK_SEQPACKET
}

// socket(domain, type, protocol)
func (f *sockFDs) socket(c *Call) *Refusal {
	domain, typ, proto := int(int32(c.Args[0])), int(int32(c.Args[1])), int(int32(c.Args[2]))
	if !supervisorMakes(domain, typ&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)) {
		c.Continue() // decided on registers: the caller makes it itself
		return nil
	}
	if !f.room() {
		c.Reply(0, unix.EMFILE)
		return nil
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		c.Reply(0, errnoFrom(err))
		return nil
	}
	// Into the table only once installed: a sweep meanwhile would find
	// no process holding it and close the number the ioctl names. And
	// answered only once in the table: the caller's next call may be a
	// connect on it.
	n, e := f.install(c, fd, typ&unix.SOCK_CLOEXEC != 0)
	if e != 0 {
		unix.Close(fd)
		if e != unix.ENOENT { // ENOENT: the caller is gone
			c.Reply(0, e)
		}
		return nil
	}
	f.add(fd)
	c.Reply(int64(n), 0)
	return nil
}

// socketpair(domain, type, protocol, sv): the pair is installed, then its
// numbers written to sv.
func (f *sockFDs) socketpair(c *Call) *Refusal {
	domain, typ, proto := int(int32(c.Args[0])), int(int32(c.Args[1])), int(int32(c.Args[2]))
	if domain != unix.AF_UNIX || !supervisorMakes(domain, typ&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)) {
		c.Continue()
		return nil
	}
	k, e := openCaller(c)
	if e != 0 {
		return nil
	}
	defer k.close()
	// sv must be writable before anything is installed: the kernel too
	// fails with EFAULT and installs nothing.
	var zero [8]byte
	if !k.write(c.Args[3], zero[:]) {
		return answer(c, 0, unix.EFAULT)
	}
	if !f.room() {
		return answer(c, 0, unix.EMFILE)
	}
	pair, err := unix.Socketpair(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return answer(c, 0, errnoFrom(err))
	}
	defer func() {
		// Into the table once installed (see socket); the table keeps
		// its own descriptors.
		for _, fd := range pair {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	var nums [8]byte
	for i, fd := range pair {
		n, e := f.install(c, fd, typ&unix.SOCK_CLOEXEC != 0)
		if e != 0 {
			// The first may be installed already: the caller has a
			// descriptor it does not know of, as when a process dies
			// halfway.
			return answer(c, 0, e)
		}
		binary.NativeEndian.PutUint32(nums[4*i:], uint32(n))
	}
	for i, fd := range pair {
		f.add(fd)
		pair[i] = -1
	}
	if !k.write(c.Args[3], nums[:]) {
		return answer(c, 0, unix.EFAULT)
	}
	c.Reply(0, 0)
	return nil
}

// install puts the supervisor's fd into the caller as a new descriptor
// and says its number there; the caller is answered separately.
//
// Never with SECCOMP_ADDFD_FLAG_SEND, though it would answer in the same
// ioctl: that flag marks the notification answered (value 0) before the
// caller has taken the descriptor, and when a signal interrupts the
// ioctl's wait (the Go runtime's preemption signal, SIGURG, does, and
// SA_RESTART then repeats the ioctl) the kernel withdraws the descriptor
// but leaves the answer, so the caller's socket() returned 0 and the
// repeated ioctl found no notification (ENOENT). Measured: 1 session in
// about 10 of TestSocketFDsBounded's 2,100 socket()s. Without the flag an
// interrupted ioctl either installed the descriptor (and says so) or
// installed nothing and is repeated.
func (f *sockFDs) install(c *Call, fd int, cloexec bool) (int, syscall.Errno) {
	a := seccompNotifAddfd{ID: c.ID, Srcfd: uint32(fd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.listener), seccompIoctlNotifAddfd, uintptr(unsafe.Pointer(&a)))
	if e != 0 {
		return -1, e
	}
	return int(r), 0
}

// room says whether another copy may be made, sweeping first when the
// table is at its bound.
func (f *sockFDs) room() bool {
	f.mu.Lock()
	n, next := len(f.byIno), f.next
	f.mu.Unlock()
	if n+2 >= next || n+2 >= maxSockCopies {
		f.sweep()
	}
	return f.len()+2 <= maxSockCopies
}

// add keeps fd, the supervisor's copy of a socket it made, by its inode;
// it closes fd when it cannot.
func (f *sockFDs) add(fd int) (uint64, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		unix.Close(fd)
		return 0, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.byIno[st.Ino]; ok {
		unix.Close(old.fd) // a stale copy of a number the kernel reused
	}
	f.byIno[st.Ino] = sockCopy{fd: fd, born: time.Now()}
	if !f.ticking {
		f.ticking = true
		go f.tick()
	}
	return st.Ino, true
}

// tick sweeps every sweepEvery while there are copies.
func (f *sockFDs) tick() {
	for {
		time.Sleep(sweepEvery)
		f.sweep()
		f.mu.Lock()
		if len(f.byIno) == 0 {
			f.ticking = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
}

// sweep closes the copies of sockets no other process holds.
func (f *sockFDs) sweep() {
	f.sweeping.Lock()
	defer f.sweeping.Unlock()
	start := time.Now()
	held := map[uint64]bool{}
	var buf [64]byte
	for _, pid := range processes() {
		if pid == f.self {
			continue
		}
		dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
		d, err := os.Open(dir)
		if err != nil {
			continue
		}
		names, _ := d.Readdirnames(-1)
		d.Close()
		for _, n := range names {
			l, err := unix.Readlink(dir+n, buf[:])
			if err != nil {
				continue
			}
			if ino, ok := socketInode(string(buf[:l])); ok {
				held[ino] = true
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ino, cp := range f.byIno {
		if !held[ino] && cp.born.Before(start) {
			unix.Close(cp.fd)
			delete(f.byIno, ino)
		}
	}
	f.next = max(sweepAtLeast, 2*len(f.byIno))
}

// socketInode reads a /proc/PID/fd link "socket:[INO]".
func socketInode(link string) (uint64, bool) {
	rest, ok := strings.CutPrefix(link, "socket:[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0, false
	}
	ino, err := strconv.ParseUint(rest[:len(rest)-1], 10, 64)
	return ino, err == nil
}

// lookup is a dup of the supervisor's copy of the caller's descriptor n
// (the caller's thread tid): EACCES for a socket the supervisor did not
// make, ENOTSOCK for a descriptor that is no socket.
func (f *sockFDs) lookup(tid int, n uint64) (int, syscall.Errno) {
	if n > 1<<31-1 {
		return -1, unix.EBADF
	}
	link, err := os.Readlink("/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.FormatUint(n, 10))
	if err != nil {
		return -1, unix.EBADF
	}
	ino, ok := socketInode(link)
	if !ok {
		return -1, unix.ENOTSOCK
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cp, ok := f.byIno[ino]
	if !ok {
		return -1, refusedSocket
	}
	fd, err := unix.FcntlInt(uintptr(cp.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, errnoFrom(err)
	}
	return fd, 0
}

// passable is the caller's descriptor n as the supervisor can pass it on
// in SCM_RIGHTS: its copy of a socket it made, or a new open of an
// anonymous pipe.
func (f *sockFDs) passable(tid int, n uint64) (int, syscall.Errno) {
	fd, e := f.lookup(tid, n)
	if e != unix.ENOTSOCK {
		return fd, e
	}
	link := "/proc/" + strconv.Itoa(tid) + "/fd/" + strconv.FormatUint(n, 10)
	// O_PATH first: opening anything else (a device, a host FIFO) with
	// the supervisor's rights is what this must never do.
	p, err := unix.Open(link, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, unix.EBADF
	}
	defer unix.Close(p)
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if unix.Fstatfs(p, &sfs) != nil || sfs.Type != unix.PIPEFS_MAGIC || unix.Fstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return -1, refusedSocket
	}
	// The flags and the inode come from one read of fdinfo, so of one open
	// file: the caller held that pipe with that access mode then, whatever
	// it dup2'd onto the number meanwhile.
	flags, ino, ok := fdinfoFlags(tid, n)
	if !ok || ino != st.Ino {
		return -1, refusedSocket
	}
	acc := flags & unix.O_ACCMODE
	if acc != unix.O_RDONLY && acc != unix.O_WRONLY {
		return -1, refusedSocket
	}
	// O_NONBLOCK: an end whose other side is closed would wait; the
	// caller's own O_NONBLOCK is set after.
	fd, err = unix.Open("/proc/self/fd/"+strconv.Itoa(p), acc|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, errnoFrom(err)
	}
	if flags&unix.O_NONBLOCK == 0 {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
			unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
		}
	}
	return fd, 0
}

// fdinfoFlags are the open flags and the inode of the caller's
// descriptor n, from one read of its fdinfo ("ino:" is there since 5.14;
// without it nothing passes).
func fdinfoFlags(tid int, n uint64) (flags int, ino uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/fdinfo/" + strconv.FormatUint(n, 10))
	if err != nil {
		return 0, 0, false
	}
	var haveFlags, haveIno bool
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			fl, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			flags, haveFlags = int(fl), err == nil
		}
		if v, ok := strings.CutPrefix(l, "ino:"); ok {
			ino, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			haveIno = err == nil
		}
	}
	return flags, ino, haveFlags && haveIno
}

// passFD is the caller's descriptor n for an SCM_RIGHTS message the
// supervisor sends.
func (k *caller) passFD(n uint64) (int, syscall.Errno) {
	if k.fds != nil {
		return k.fds.passable(k.tid, n)
	}
	return k.fd(n)
}
