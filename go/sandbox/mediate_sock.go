package sandbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/mountinfo"
	"ronly.dev/ronly/go/policy"
)

// Socket mediation. A read-only mount does not stop connect() on a socket
// inode, and a cover per path misses hard links, sockets bound later and
// sockets bound in other mount namespaces. So the seccomp filter sends
// connect, sendto with an address, sendmsg, sendmmsg and bind here
// ("mediate" in bpf/syscalls.policy), and the supervisor does each call
// itself:
//
//   - it takes the caller's very socket with pidfd_getfd (the same open
//     file: options, O_NONBLOCK and network namespace included) and copies
//     the address and data out of the caller's memory;
//   - it decides on its copy, and calls the kernel on the dup with that
//     copy, so nothing the caller changes afterwards (another thread
//     rewriting the address, dup2 of another socket onto the number)
//     reaches a decision: the call is never let continue;
//   - a unix path is resolved in the caller's root and cwd, and the
//     supervisor connects through /proc/self/fd/N of the inode it judged,
//     never through the name again.
//
// A unix socket is reachable when its inode lives on one of the session's
// writable mounts (the /tmp tmpfs, --writable, --rw, the ci workspace and
// HOME, /dev/shm), when it is an --allow-socket, or when it is the host's
// Docker socket, whose connections go to the Docker guard instead. Abstract
// names are the session's own with --no-network; on the host's network only
// the names the session bound itself (bind is mediated for that) are.
//
// Refusals fail with EACCES ("permission denied": a client says so, where
// ECONNREFUSED would read as "the daemon is down"), are counted and audited
// with the path.
//
// The supervisor connects as itself: the peer credentials a server reads
// (SO_PEERCRED, SCM_CREDENTIALS it asks for) carry the supervisor's pid,
// with the same uid and gid as the session's (root mapped to root, or the
// caller's own ids), and the socket file's own permission bits are judged
// against the supervisor's, not the caller's: only the session's own
// sockets and the ones the policy names are reachable at all.

// refusedSocket is the errno of a refused address.
const refusedSocket = unix.EACCES

// maxSendData bounds what one mediated send copies; a stream send may be
// short, as the kernel's may be. Datagrams cannot be this large anyway.
const maxSendData = 4 << 20

// maxControl bounds a sendmsg's control data (the kernel's own limit,
// net.core.optmem_max, is smaller by default).
const maxControl = 64 << 10

// uioMaxIOV is the kernel's UIO_MAXIOV: most iovecs, and most messages of a
// sendmmsg, in one call.
const uioMaxIOV = 1024

// sockets is the socket policy of one session and the abstract names it
// bound.
type sockets struct {
	// ownNet: the session has its own network namespace, so every abstract
	// name it can reach is its own.
	ownNet bool
	// writablePaths are the session's writable places; writable holds
	// their mount ids, read from the sandbox's mount table when a call
	// first asks (onWritable).
	writablePaths []string
	writable      map[uint64]bool
	mountTable    *os.File   // the sandbox's, held open (holdMountTable)
	learn         *sync.Once // reads writable (learnLater); nil: writable is all there is
	learnFailed   func(error)
	// byPath, in landlock-only mode, are the session's writable
	// directories, which are no mounts of their own: a socket is the
	// session's when its path lies beneath one (nons.go).
	byPath []string
	// allow are --allow-socket paths on the host.
	allow []string
	// docker is the host's Docker socket and guard the Docker guard's
	// socket of the supervisor's own; both "" without a guard.
	docker, guard string
	// kube is the Kubernetes guard, whose address's connects it notes
	// (kube.go); nil without one.
	kube *kubeGuard
	// allowMetadata lets the cloud metadata addresses through (metadata.go).
	allowMetadata bool
	// fds are the sockets the supervisor made for the session, where
	// pidfd_getfd is refused (sockfd.go); nil elsewhere.
	fds *sockFDs
	// refused: every mediated call is refused (refuseSockets, nons.go).
	refused bool

	mu       sync.Mutex
	abstract map[string]uint64 // abstract names the session bound, to the inode of the socket that bound each
	// waiting counts the calls finishing on goroutines of their own and
	// the bytes they hold: the supervisor's memory is the host's, not
	// the session's, so both are bounded.
	waiting struct{ calls, bytes int }
}

// Bounds of what calls that wait may hold in the supervisor; past them a
// call that would wait fails with ENOBUFS.
const (
	maxWaitingCalls = 1024
	maxWaitingBytes = 64 << 20
)

// reserve takes a waiting call's place and its bytes, if there is room.
func (s *sockets) reserve(bytes int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting.calls >= maxWaitingCalls || s.waiting.bytes+bytes > maxWaitingBytes {
		return false
	}
	s.waiting.calls++
	s.waiting.bytes += bytes
	return true
}

func (s *sockets) release(bytes int) {
	s.mu.Lock()
	s.waiting.calls--
	s.waiting.bytes -= bytes
	s.mu.Unlock()
}

func newSockets(p *policy.Policy) *sockets {
	paths := []string{"/dev/shm"}
	for _, pl := range p.Places() {
		paths = append(paths, pl.Path)
	}
	return &sockets{ownNet: p.NoNetwork, writablePaths: paths, allow: p.AllowSocket, allowMetadata: p.AllowMetadata, abstract: map[string]uint64{}}
}

// register puts the socket mediators in m.
func (s *sockets) register(m map[int]mediator) {
	m[unix.SYS_CONNECT] = s.connect
	m[unix.SYS_SENDTO] = s.sendto
	m[unix.SYS_SENDMSG] = s.sendmsg
	m[unix.SYS_SENDMMSG] = s.sendmmsg
	m[unix.SYS_BIND] = s.bind
}

// learnLater arranges for the mount ids of the session's writable places
// to be read from the sandbox's mount table when a mediated call first
// asks (onWritable), not while the command starts: on a Kubernetes node's
// 2,000 mounts the read took 6 ms of a start, and a session that never
// connects to an existing unix socket never needs it. The table is the one
// held since the init handed over its listener, or else opened now, from
// pid, the init: later, pid may name another process. Read late, it is
// still the table the init built: nothing inside can mount or unmount (no
// capabilities, and the filter refuses every mount call; ronly probe tries
// them), and the init made its copy of the host's mounts private, so no
// host mount propagates in (the kernel's own automounts below a writable
// place take its flags). failed says why the table could not be read.
func (s *sockets) learnLater(pid int, failed func(error)) {
	var err error
	if s.mountTable == nil {
		err = s.holdMountTable(pid)
	}
	// A fallback's start learns afresh: ids an earlier attempt's sandbox
	// had are freed with it, and the kernel hands freed ids out again.
	s.writable = nil
	s.learn = new(sync.Once)
	s.learnFailed = func(later error) {
		if err != nil {
			later = err
		}
		failed(later)
	}
}

// onWritable says whether the mount with this id is one of the session's
// writable places. Without its table read, none is (fail closed).
func (s *sockets) onWritable(id uint64) bool {
	if s.learn != nil {
		s.learn.Do(func() {
			if err := s.learnMounts(); err != nil {
				s.learnFailed(err)
			}
		})
	}
	return s.writable[id]
}

// forget lets go of the sandbox's mount table, read or not, once no call
// can ask any more: the open table holds the sandbox's mount namespace.
func (s *sockets) forget() {
	if s == nil {
		return
	}
	if s.learn != nil {
		s.learn.Do(func() {})
	}
	if s.mountTable != nil {
		s.mountTable.Close()
		s.mountTable = nil
	}
}

// learnMounts reads which mounts of the finished sandbox are the session's
// writable places from the mount table held, and lets go of it: each
// read-write mount at or below a writable path.
func (s *sockets) learnMounts() error {
	f := s.mountTable
	if f == nil {
		return errors.New("it was not held open")
	}
	s.mountTable = nil
	defer f.Close()
	ms, err := mountinfo.Parse(f, func(m *mountinfo.Mount) bool { return writableMount(m, s.writablePaths) })
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	s.writable = writableMounts(ms, s.writablePaths)
	return nil
}

// holdMountTable opens the mount table of pid, the init, while it waits
// for the supervisor with its sandbox built (it hands over the seccomp
// listener): the init execs the command next, which may be gone, or have
// left its children, before learnMounts reads. The open file keeps the
// mount namespace, so learnMounts reads it later, off the command's path.
// On an error nothing is held, and learnLater tries again and says why.
func (s *sockets) holdMountTable(pid int) (err error) {
	if s.mountTable != nil {
		s.mountTable.Close()
	}
	s.mountTable, err = os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	return err
}

func writableMounts(ms []mountinfo.Mount, paths []string) map[uint64]bool {
	out := map[uint64]bool{}
	for _, m := range ms {
		if writableMount(&m, paths) {
			out[m.ID] = true
		}
	}
	return out
}

// writableMount says whether m is read-write and at or below one of paths.
func writableMount(m *mountinfo.Mount, paths []string) bool {
	if !hasOpt(m.Opts, "rw") {
		return false
	}
	for _, p := range paths {
		if policy.Within(m.Point, p) {
			return true
		}
	}
	return false
}

func hasOpt(opts, opt string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// socketLayers says, once the sandbox is built, what its sockets got, and
// warns of each protection asked for and lost: only what is in force is
// reported.
func (s *session) socketLayers(pid int, listener bool) {
	l, p := s.layers, s.p
	s.metadataWarning(listener)
	l.SocketMediation, l.DockerGuard, l.AbstractSockets, l.KubeGuard = false, false, false, false
	if listener {
		if s.socks.byPath != nil {
			// landlock-only: judged by path, the host's mounts hold far
			// more than the session's places.
		} else {
			s.socks.learnLater(pid, func(err error) {
				s.warn(fmt.Sprintf("cannot read the sandbox's mount table (%v): unix sockets in its own writable places are refused too", err))
			})
		}
		l.SocketMediation = true
		l.DockerGuard = s.socks.guard != "" && !s.socks.refused
		l.KubeGuard = s.socks.kube != nil
		return
	}
	if !p.SkipSeccomp {
		msg := "unix sockets are NOT mediated (no seccomp listener could be had: a nested sandbox): every host unix socket its permissions allow is reachable from inside"
		if s.socks.guard != "" {
			msg += ", the Docker socket too: the Docker guard is off"
		}
		s.warn(msg)
	}
	if s.socks.kube != nil {
		// The guard serves only connections the supervisor saw the
		// session make (kube.go).
		s.warn("the Kubernetes guard serves no one: without a seccomp listener (a nested sandbox) the session's connections cannot be told from the host's; kubectl inside has no cluster")
	}
	if l.LandlockABI < 6 && !p.NoNetwork && !p.SkipLandlock {
		// Nothing else stops connect() to the host's abstract unix
		// sockets: they live in the network namespace.
		l.AbstractSockets = true
		s.warn(fmt.Sprintf("Landlock ABI %d cannot scope abstract unix sockets and nothing mediates them: the host's stay reachable; --no-network closes them", l.LandlockABI))
	}
}

// takeFD copies descriptor fd out of process pid (the init handing over
// its seccomp listener).
func takeFD(pid, fd int) (int, error) {
	if pid <= 0 {
		return -1, fmt.Errorf("take the seccomp listener: the init's message came without its pid")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("take the seccomp listener: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	r, _, e := unix.Syscall(unix.SYS_PIDFD_GETFD, uintptr(pidfd), uintptr(fd), 0)
	if e != 0 {
		return -1, fmt.Errorf("take the seccomp listener: pidfd_getfd: %w", e)
	}
	return int(r), nil
}

// caller is the process of one mediated call, pinned by a pidfd.
type caller struct {
	c     *Call
	tid   int
	pidfd int
	// fds, where pidfd_getfd is refused: the caller's sockets are the
	// supervisor's copies (sockfd.go).
	fds *sockFDs
	// mem is /proc/TID/mem, where process_vm_readv and process_vm_writev
	// are refused (Docker's default profile without CAP_SYS_PTRACE); the
	// supervisor may open it as the caller's ancestor with a superset of
	// its capabilities.
	mem *os.File
}

// open is openCaller for the socket mediators.
func (s *sockets) open(c *Call) (*caller, syscall.Errno) {
	k, e := openCaller(c)
	if k != nil {
		k.fds = s.fds
	}
	return k, e
}

// pidfdThread is PIDFD_THREAD (Linux 6.9): a pidfd for the calling thread,
// whose descriptor table and signals are the ones that matter.
const pidfdThread = unix.O_EXCL

func openCaller(c *Call) (*caller, syscall.Errno) {
	tid := int(c.PID)
	fd, err := unix.PidfdOpen(tid, pidfdThread)
	if err == unix.EINVAL {
		// Before 6.9 a pidfd names a thread group: its leader's
		// descriptor table is the caller's unless a thread unshared it.
		fd, err = unix.PidfdOpen(tgidOf(tid), 0)
	}
	if err != nil {
		return nil, unix.ESRCH
	}
	return &caller{c: c, tid: tid, pidfd: fd}, 0
}

func tgidOf(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Tgid:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return tid
}

func (k *caller) close() {
	unix.Close(k.pidfd)
	if k.mem != nil {
		k.mem.Close()
	}
}

// fd is the caller's descriptor n, as a descriptor of ours (close-on-exec).
func (k *caller) fd(n uint64) (int, syscall.Errno) {
	if k.fds != nil {
		return k.fds.lookup(k.tid, n)
	}
	if n > 1<<31-1 {
		return -1, unix.EBADF
	}
	r, _, e := unix.Syscall(unix.SYS_PIDFD_GETFD, uintptr(k.pidfd), uintptr(n), 0)
	if e != 0 {
		if e == unix.EPERM || e == unix.ESRCH {
			return -1, unix.EBADF
		}
		return -1, e
	}
	return int(r), 0
}

// read copies n bytes at addr out of the caller's memory. What it returns
// is trustworthy only once Call.Valid says the caller is still waiting.
func (k *caller) read(addr uint64, n int) ([]byte, syscall.Errno) {
	b := make([]byte, n)
	for done := 0; done < n; {
		got, e := k.readAt(b[done:], addr+uint64(done))
		if e != 0 || got == 0 {
			return nil, unix.EFAULT
		}
		done += got
	}
	return b, 0
}

// readAt reads what it can of b at addr: with process_vm_readv, else
// through /proc/TID/mem.
func (k *caller) readAt(b []byte, addr uint64) (int, syscall.Errno) {
	if k.mem == nil {
		local := []unix.Iovec{{Base: &b[0]}}
		local[0].SetLen(len(b))
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
		got, err := unix.ProcessVMReadv(k.tid, local, remote, 0)
		if err == nil {
			return got, 0
		}
		if err != unix.EPERM && err != unix.ENOSYS {
			return 0, unix.EFAULT
		}
		if e := k.openMem(); e != 0 {
			return 0, e
		}
	}
	if addr > 1<<62 {
		return 0, unix.EFAULT
	}
	got, _ := k.mem.ReadAt(b, int64(addr))
	if got == 0 {
		return 0, unix.EFAULT
	}
	return got, 0
}

func (k *caller) openMem() syscall.Errno {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(k.tid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		return unix.EFAULT
	}
	k.mem = f
	return 0
}

// span is a range of the caller's memory.
type span struct {
	addr uint64
	n    int
}

// gather copies several ranges of the caller's memory, one after the
// other, in one call (or one read each through /proc/TID/mem).
func (k *caller) gather(spans []span) ([]byte, syscall.Errno) {
	total := 0
	var remote []unix.RemoteIovec
	for _, sp := range spans {
		if sp.n > 0 {
			remote = append(remote, unix.RemoteIovec{Base: uintptr(sp.addr), Len: sp.n})
			total += sp.n
		}
	}
	b := make([]byte, total)
	if total == 0 {
		return b, 0
	}
	if k.mem == nil {
		local := []unix.Iovec{{Base: &b[0]}}
		local[0].SetLen(total)
		got, err := unix.ProcessVMReadv(k.tid, local, remote, 0)
		if err == nil && got == total {
			return b, 0
		}
		if err != unix.EPERM && err != unix.ENOSYS {
			return nil, unix.EFAULT
		}
	}
	b = b[:0]
	for _, sp := range spans {
		if sp.n > 0 {
			part, e := k.read(sp.addr, sp.n)
			if e != 0 {
				return nil, e
			}
			b = append(b, part...)
		}
	}
	return b, 0
}

// write copies b into the caller's memory at addr (sendmmsg's msg_len,
// socketpair's descriptors); false when not all of it could be written.
func (k *caller) write(addr uint64, b []byte) bool {
	if k.mem == nil {
		local := []unix.Iovec{{Base: &b[0]}}
		local[0].SetLen(len(b))
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
		n, err := unix.ProcessVMWritev(k.tid, local, remote, 0)
		if err == nil {
			return n == len(b)
		}
		if (err != unix.EPERM && err != unix.ENOSYS) || k.openMem() != 0 {
			return false
		}
	}
	if addr > 1<<62 {
		return false
	}
	n, err := k.mem.WriteAt(b, int64(addr))
	return err == nil && n == len(b)
}

// sockaddr copies a socket address of n bytes; the kernel takes at most a
// sockaddr_storage.
func (k *caller) sockaddr(addr, n uint64) ([]byte, syscall.Errno) {
	if int64(int32(n)) < 0 || n > unix.SizeofSockaddrAny {
		return nil, unix.EINVAL
	}
	if n == 0 {
		return []byte{}, 0
	}
	return k.read(addr, int(n))
}

// sigpipe is what the kernel does to a sender whose peer is gone, unless
// it passed MSG_NOSIGNAL: the supervisor always sends with MSG_NOSIGNAL and
// signals the caller itself.
func (k *caller) sigpipe(flags uint64, e syscall.Errno) {
	if e == unix.EPIPE && flags&unix.MSG_NOSIGNAL == 0 {
		unix.PidfdSendSignal(k.pidfd, unix.SIGPIPE, nil, 0)
	}
}

// target is where a mediated call may go: the address the supervisor
// passes to the kernel, and a descriptor to close after the call.
type target struct {
	addr  []byte
	hold  int
	errno syscall.Errno // answer with this instead, not a refusal
	// refused names the address refused, for the audit log.
	refused string
	reason  string
}

func (t *target) close() {
	if t.hold >= 0 {
		unix.Close(t.hold)
	}
}

// judge decides the address sa of the caller k.
func (s *sockets) judge(k *caller, sa []byte) target {
	t := target{addr: sa, hold: -1}
	if s.refuseMetadata(&t) {
		return t
	}
	if len(sa) <= 2 || binary.NativeEndian.Uint16(sa) != unix.AF_UNIX {
		return t // not a unix socket: the kernel decides, as for the caller
	}
	path := sa[2:]
	if path[0] == 0 {
		name := string(path[1:])
		if s.ownNet || s.ownsAbstract(name) {
			return t
		}
		t.refused, t.reason = "@"+printable(name), "abstract unix socket the session did not bind"
		return t
	}
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	return s.judgePath(k, string(path))
}

// judgePath resolves a socket path as the caller would, in its root and
// cwd, and decides on the inode found.
func (s *sockets) judgePath(k *caller, path string) target {
	t := target{hold: -1}
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", k.tid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.errno = unix.ESRCH
		return t
	}
	defer unix.Close(root)
	full := path
	if !strings.HasPrefix(path, "/") {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", k.tid))
		if err != nil || !strings.HasPrefix(cwd, "/") || strings.HasSuffix(cwd, " (deleted)") {
			t.errno = unix.ENOENT
			return t
		}
		full = cwd + "/" + path
	}
	// In the caller's root, symlinks included; magic links (/proc/<pid>/root,
	// /proc/self/fd/N) are refused: the supervisor would follow them with
	// its own privileges, and out of the sandbox's mount tree.
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(root, full, &how)
	for i := 0; err == unix.EAGAIN && i < 8; i++ {
		fd, err = unix.Openat2(root, full, &how) // a rename raced the walk
	}
	switch err {
	case nil:
	case unix.ENOENT, unix.ENOTDIR, unix.ENAMETOOLONG:
		t.errno = err.(syscall.Errno)
		return t
	default:
		t.refused, t.reason = path, fmt.Sprintf("unix socket path that cannot be resolved safely (%v)", err)
		return t
	}
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &st); err != nil {
		unix.Close(fd)
		t.errno = unix.EACCES
		return t
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(fd)
		t.errno = unix.ECONNREFUSED // what connect says of a file that is no socket
		return t
	}
	dev := unix.Mkdev(st.Dev_major, st.Dev_minor)
	switch {
	case s.byPath != nil && s.underByPath(fd):
	case s.byPath == nil && st.Mask&unix.STATX_MNT_ID != 0 && s.onWritable(st.Mnt_id):
	case s.guard != "" && isHostFile(s.docker, dev, st.Ino):
		// The host's Docker socket, under any name: the guard answers.
		unix.Close(fd)
		t.addr = unixAddr(s.guard)
		return t
	case s.allowed(dev, st.Ino):
	default:
		unix.Close(fd)
		t.refused, t.reason = path, "unix socket outside the session's writable places"
		return t
	}
	// Exactly the inode judged, whatever happens to the name meanwhile.
	t.hold, t.addr = fd, unixAddr("/proc/self/fd/"+strconv.Itoa(fd))
	return t
}

func (s *sockets) allowed(dev, ino uint64) bool {
	for _, a := range s.allow {
		if isHostFile(a, dev, ino) {
			return true
		}
	}
	return false
}

// isHostFile says whether the host's path names the inode (dev, ino) now; a
// socket its daemon re-created since the start is the new one.
func isHostFile(path string, dev, ino uint64) bool {
	var st unix.Stat_t
	return path != "" && unix.Stat(path, &st) == nil && st.Dev == dev && st.Ino == ino
}

// unixAddr is a sockaddr_un for path.
func unixAddr(path string) []byte {
	b := make([]byte, 2, 2+len(path)+1)
	binary.NativeEndian.PutUint16(b, unix.AF_UNIX)
	b = append(b, path...)
	return append(b, 0)
}

func printable(name string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '@'
		}
		return r
	}, name)
}

// ownsAbstract says whether the session bound name, on the host's network,
// and a socket of the session still holds it: once it is closed, a host
// process may bind the same name.
func (s *sockets) ownsAbstract(name string) bool {
	s.mu.Lock()
	ino, ok := s.abstract[name]
	s.mu.Unlock()
	if !ok {
		return false
	}
	if boundAbstract(name, ino) {
		return true
	}
	s.mu.Lock()
	if s.abstract[name] == ino {
		delete(s.abstract, name)
	}
	s.mu.Unlock()
	return false
}

// boundAbstract says whether the socket with inode ino holds the abstract
// name in this network namespace, by /proc/net/unix (names shown with "@"
// for each NUL).
func boundAbstract(name string, ino uint64) bool {
	f, err := os.Open("/proc/self/net/unix")
	if err != nil {
		return false
	}
	defer f.Close()
	want := "@" + strings.ReplaceAll(name, "\x00", "@")
	inode := strconv.FormatUint(ino, 10)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path: the inode is
		// padded, the path follows it after one space.
		rest, field := sc.Text(), ""
		for i := 0; i < 7; i++ {
			rest = strings.TrimLeft(rest, " ")
			field, rest, _ = strings.Cut(rest, " ")
		}
		if field == inode && rest == want {
			return true
		}
	}
	return false
}

// boundName is the abstract name sock is bound to, without its leading NUL,
// and the socket's inode.
func boundName(sock int) (string, uint64, bool) {
	var buf [unix.SizeofSockaddrAny]byte
	n := uint32(len(buf))
	if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(sock), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n))); e != 0 {
		return "", 0, false
	}
	var st unix.Stat_t
	if n <= 3 || n > uint32(len(buf)) || buf[2] != 0 || unix.Fstat(sock, &st) != nil {
		return "", 0, false
	}
	return string(buf[3:n]), st.Ino, true
}

// refusal is what a mediator records for t.
func (t *target) refusal() *Refusal {
	return &Refusal{Path: t.refused, Reason: t.reason, Errno: refusedSocket}
}

// connect(fd, addr, addrlen). A connect on a blocking stream socket may
// take long (a TCP handshake, a listener's full backlog): it is finished on
// a goroutine of its own, so the answering goroutine goes on answering.
func (s *sockets) connect(c *Call) *Refusal {
	k, e := s.open(c)
	if e != 0 {
		return nil // gone
	}
	var cl cleanup
	defer cl.run()
	cl.add(k.close)
	sa, e := k.sockaddr(c.Args[1], c.Args[2])
	if e != 0 {
		return answer(c, 0, e)
	}
	t := s.judge(k, sa)
	cl.add(t.close)
	if t.errno != 0 || t.refused != "" {
		return s.deny(c, &t)
	}
	sock, e := k.fd(c.Args[0])
	if e != 0 {
		return answer(c, 0, e)
	}
	cl.add(func() { unix.Close(sock) })
	if !c.Valid() {
		return nil
	}
	do := func(cl cleanup) {
		defer cl.run()
		_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(sock), addrPtr(t.addr), uintptr(len(t.addr)))
		s.kube.noteConnect(sock, t.addr) // before the reply: the caller's next call may be its first write
		c.Reply(0, e)
	}
	switch {
	case nonblocking(sock) || datagram(sock):
		do(cl.handOff())
	case s.reserve(0):
		go func(cl cleanup) {
			defer s.release(0)
			do(cl)
		}(cl.handOff())
	default:
		c.Reply(0, unix.ENOBUFS)
	}
	return nil
}

// nonblocking says whether the open file fd has O_NONBLOCK: the caller's
// own socket, so its calls return at once.
func nonblocking(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// datagram says whether fd is a datagram socket, whose connect only sets
// the peer and never waits (DNS resolvers connect one for every query).
func datagram(fd int) bool {
	t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	return err == nil && t == unix.SOCK_DGRAM
}

// cleanup is what a mediator closes when it is done, or hands off to the
// goroutine that finishes a call which may block.
type cleanup []func()

func (cl *cleanup) add(f func()) { *cl = append(*cl, f) }

func (cl *cleanup) run() {
	for i := len(*cl) - 1; i >= 0; i-- {
		(*cl)[i]()
	}
	*cl = nil
}

func (cl *cleanup) handOff() cleanup {
	out := *cl
	*cl = nil
	return out
}

// deny answers a call whose address was refused or could not be used.
func (s *sockets) deny(c *Call, t *target) *Refusal {
	if !c.Valid() {
		return nil // what was read may be another process's
	}
	if t.refused != "" {
		c.Reply(0, refusedSocket)
		return t.refusal()
	}
	c.Reply(0, t.errno)
	return nil
}

// answer replies errno after checking the call is still the caller's.
func answer(c *Call, val int64, e syscall.Errno) *Refusal {
	if c.Valid() {
		c.Reply(val, e)
	}
	return nil
}

func addrPtr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// bind(fd, addr, addrlen). On the host's network the session's abstract
// names are recorded, so that its own connects to them can be let through:
// the supervisor binds those itself. Every other bind continues: paths are
// judged by the kernel's read-only mounts and Landlock, and a caller that
// swaps an abstract address in after the check only gets a name that was
// not recorded, which connects are then refused (fail closed).
func (s *sockets) bind(c *Call) *Refusal {
	if s.ownNet {
		c.Continue() // every abstract name here is the session's own
		return nil
	}
	k, e := s.open(c)
	if e != 0 {
		return nil
	}
	defer k.close()
	sa, e := k.sockaddr(c.Args[1], c.Args[2])
	if e != 0 || len(sa) < 2 || binary.NativeEndian.Uint16(sa) != unix.AF_UNIX || (len(sa) > 2 && sa[2] != 0) {
		if c.Valid() {
			c.Continue()
		}
		return nil
	}
	sock, e := k.fd(c.Args[0])
	if e != 0 {
		return answer(c, 0, e)
	}
	defer unix.Close(sock)
	if !c.Valid() {
		return nil
	}
	_, _, e = unix.Syscall(unix.SYS_BIND, uintptr(sock), addrPtr(sa), uintptr(len(sa)))
	if e == 0 {
		// The name the kernel gave (autobind: an address of the family
		// alone) and the socket holding it.
		if name, ino, ok := boundName(sock); ok {
			s.mu.Lock()
			s.abstract[name] = ino
			s.mu.Unlock()
		}
	}
	c.Reply(0, e)
	return nil
}
