package sandbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/policy"
)

// File metadata in landlock-only mode. Landlock (up to ABI 7) has no
// right for a file's mode, owner, times or extended attributes, and
// before ABI 3 none for truncate(2): in the other modes the read-only
// mounts refuse those, here nothing would. So in this mode the seccomp
// program is prefixed with a few instructions that send these calls to
// the supervisor, which does each itself:
//
//   - it resolves the path in the caller's directory (or takes the
//     caller's descriptor with pidfd_getfd) to an O_PATH descriptor of its
//     own, without magic links, and judges that inode by the path the
//     kernel gives for it: only beneath the session's scratch directory
//     and --rw directories is it the session's (Landlock keeps host files
//     from being linked or moved in there);
//   - elsewhere the call fails with EROFS, as a read-only mount would
//     answer, counted and audited as a refused write;
//   - in the session's places it makes the call on that descriptor, with
//     the arguments it copied, from a thread that took the caller's ids
//     and capabilities (and dies afterwards): the kernel's own permission
//     checks are the caller's. The call never continues, so nothing the
//     caller changes after the decision counts.
//
// Set-id modes and security.capability are refused as the policy refuses
// them in the other modes. chattr's flags (FS_IOC_SETFLAGS,
// FS_IOC_FSSETXATTR), which an owner may set on a file opened read-only,
// are refused outright.

// metaOp is what a metadata call does.
type metaOp int

const (
	opChmod metaOp = iota
	opChown
	opUtime
	opSetxattr
	opRemovexattr
	opTruncate
)

// metaCall says where a metadata call's arguments are. -1: none.
type metaCall struct {
	op     metaOp
	name   string
	fd     int // argument holding a descriptor the call acts on (fchmod…)
	dirfd  int // argument holding the directory a relative path starts at
	path   int // argument holding the path
	follow bool
	flags  int // argument holding AT_* flags
	a, b   int // mode (chmod); uid, gid (chown); times (utime); name, value (xattr); length (truncate)
	size   int // xattr value size; xattr flags follow it
	times  int // utime: 0 utimbuf, 1 timeval[2], 2 timespec[2]
}

var metaCalls = map[int]metaCall{
	unix.SYS_CHMOD:         {op: opChmod, name: "chmod", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1},
	unix.SYS_FCHMOD:        {op: opChmod, name: "fchmod", fd: 0, dirfd: -1, path: -1, flags: -1, a: 1},
	unix.SYS_FCHMODAT:      {op: opChmod, name: "fchmodat", fd: -1, dirfd: 0, path: 1, follow: true, flags: -1, a: 2},
	unix.SYS_FCHMODAT2:     {op: opChmod, name: "fchmodat2", fd: -1, dirfd: 0, path: 1, follow: true, flags: 3, a: 2},
	unix.SYS_CHOWN:         {op: opChown, name: "chown", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1, b: 2},
	unix.SYS_LCHOWN:        {op: opChown, name: "lchown", fd: -1, dirfd: -1, path: 0, flags: -1, a: 1, b: 2},
	unix.SYS_FCHOWN:        {op: opChown, name: "fchown", fd: 0, dirfd: -1, path: -1, flags: -1, a: 1, b: 2},
	unix.SYS_FCHOWNAT:      {op: opChown, name: "fchownat", fd: -1, dirfd: 0, path: 1, follow: true, flags: 4, a: 2, b: 3},
	unix.SYS_UTIME:         {op: opUtime, name: "utime", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1, times: 0},
	unix.SYS_UTIMES:        {op: opUtime, name: "utimes", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1, times: 1},
	unix.SYS_FUTIMESAT:     {op: opUtime, name: "futimesat", fd: -1, dirfd: 0, path: 1, follow: true, flags: -1, a: 2, times: 1},
	unix.SYS_UTIMENSAT:     {op: opUtime, name: "utimensat", fd: -1, dirfd: 0, path: 1, follow: true, flags: 3, a: 2, times: 2},
	unix.SYS_SETXATTR:      {op: opSetxattr, name: "setxattr", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1, b: 2, size: 3},
	unix.SYS_LSETXATTR:     {op: opSetxattr, name: "lsetxattr", fd: -1, dirfd: -1, path: 0, flags: -1, a: 1, b: 2, size: 3},
	unix.SYS_FSETXATTR:     {op: opSetxattr, name: "fsetxattr", fd: 0, dirfd: -1, path: -1, flags: -1, a: 1, b: 2, size: 3},
	unix.SYS_REMOVEXATTR:   {op: opRemovexattr, name: "removexattr", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1},
	unix.SYS_LREMOVEXATTR:  {op: opRemovexattr, name: "lremovexattr", fd: -1, dirfd: -1, path: 0, flags: -1, a: 1},
	unix.SYS_FREMOVEXATTR:  {op: opRemovexattr, name: "fremovexattr", fd: 0, dirfd: -1, path: -1, flags: -1, a: 1},
	unix.SYS_TRUNCATE:      {op: opTruncate, name: "truncate", fd: -1, dirfd: -1, path: 0, follow: true, flags: -1, a: 1},
	unix.SYS_SETXATTRAT:    {op: opSetxattr, name: "setxattrat", fd: -1, dirfd: -1, path: -1, flags: -1}, // refused: rare, and its arguments are a struct
	unix.SYS_REMOVEXATTRAT: {op: opRemovexattr, name: "removexattrat", fd: -1, dirfd: -1, path: -1, flags: -1},
}

// nonsIPC are the System V IPC and POSIX message queue calls. Their
// objects live in the IPC namespace, which landlock-only mode shares with
// the host, and Landlock does not judge them: a session could attach to a
// host process's shared memory of its own user (or root's) and write it,
// remove it, or empty its queues. So they are refused, by number.
var nonsIPC = map[int]string{
	unix.SYS_SHMGET: "shmget", unix.SYS_SHMAT: "shmat", unix.SYS_SHMCTL: "shmctl",
	unix.SYS_SEMGET: "semget", unix.SYS_SEMOP: "semop", unix.SYS_SEMTIMEDOP: "semtimedop", unix.SYS_SEMCTL: "semctl",
	unix.SYS_MSGGET: "msgget", unix.SYS_MSGSND: "msgsnd", unix.SYS_MSGRCV: "msgrcv", unix.SYS_MSGCTL: "msgctl",
	unix.SYS_MQ_OPEN: "mq_open", unix.SYS_MQ_UNLINK: "mq_unlink",
}

// The write operations of the refused-write counts (writes.go's labels).
var metaWriteOp = map[metaOp]string{opChmod: "chmod", opChown: "chown", opUtime: "utime", opSetxattr: "xattr", opRemovexattr: "xattr", opTruncate: "truncate"}

// ioctls an owner may make on a file opened read-only, which Landlock does
// not judge: chattr's flags (FS_IOC_SETFLAGS, and its 32-bit number) and
// FS_IOC_FSSETXATTR (project id, flags).
var metaIoctls = []uint32{0x40086602, 0x40046602, 0x401c5820}

// The classic BPF the seccomp prefixes below (nonsPrefix, sockfdPrefix)
// are written in: each goes in front of the session's program and falls
// through to it.
const (
	bpfLd        = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq       = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJge       = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfRet       = unix.BPF_RET | unix.BPF_K
	auditArchX86 = 0xc000003e // AUDIT_ARCH_X86_64
)

// encodeFilter is p as the bytes of struct sock_filter[] the init loads.
func encodeFilter(p []unix.SockFilter) []byte {
	b := make([]byte, 0, len(p)*8)
	for _, f := range p {
		b = binary.NativeEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.NativeEndian.AppendUint32(b, f.K)
	}
	return b
}

// nonsPrefix is the BPF that goes in front of the session's seccomp
// program in landlock-only mode: the metadata calls go to the supervisor
// (notify; errno for the fallback program, where no supervisor can be
// asked), the ioctls above fail with EPERM, and everything else falls
// through to the program, which starts again from the architecture check.
func nonsPrefix(notify bool, abi int) []byte {
	var nrs []int
	for nr, m := range metaCalls {
		if m.op == opTruncate && abi >= 3 {
			continue // Landlock's truncate right (ABI 3) judges it
		}
		nrs = append(nrs, nr)
	}
	for nr := range nonsIPC {
		nrs = append(nrs, nr)
	}
	sort.Ints(nrs)
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	if !notify {
		action = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	}
	// Layout: [0] ld arch, [1] jne → out, [2] ld nr, [3] jge x32 → out,
	// [4..4+n) jeq nr → notify, [4+n] jeq ioctl else → out, [5+n] ld arg1,
	// [6+n..6+n+k) jeq cmd → eperm, [6+n+k] ja out, notify:, eperm:, out: (the program).
	n, k := len(nrs), len(metaIoctls)
	notifyAt := 6 + n + k + 1
	epermAt := notifyAt + 1
	out := epermAt + 1
	var p []unix.SockFilter
	jump := func(from, to int) uint8 { return uint8(to - from - 1) }
	p = append(p, unix.SockFilter{Code: bpfLd, K: 4})
	p = append(p, unix.SockFilter{Code: bpfJeq, K: auditArchX86, Jt: 0, Jf: jump(1, out)})
	p = append(p, unix.SockFilter{Code: bpfLd, K: 0})
	p = append(p, unix.SockFilter{Code: bpfJge, K: 0x40000000, Jt: jump(3, out), Jf: 0})
	for i, nr := range nrs {
		at := 4 + i
		p = append(p, unix.SockFilter{Code: bpfJeq, K: uint32(nr), Jt: jump(at, notifyAt), Jf: 0})
	}
	p = append(p, unix.SockFilter{Code: bpfJeq, K: unix.SYS_IOCTL, Jt: 0, Jf: jump(4+n, out)})
	p = append(p, unix.SockFilter{Code: bpfLd, K: 24}) // arg1, low half: the kernel truncates the request to 32 bits
	for i, cmd := range metaIoctls {
		at := 6 + n + i
		p = append(p, unix.SockFilter{Code: bpfJeq, K: cmd, Jt: jump(at, epermAt), Jf: 0})
	}
	p = append(p, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(out - (6 + n + k) - 1)})
	p = append(p, unix.SockFilter{Code: bpfRet, K: action})
	p = append(p, unix.SockFilter{Code: bpfRet, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)})
	return encodeFilter(p)
}

// nonsTable is the policy table with the metadata calls mediated.
func nonsTable(t bpf.Table) bpf.Table {
	out := bpf.Table{}
	for nr, e := range t {
		out[nr] = e
	}
	for nr, m := range metaCalls {
		e := out[nr]
		e.Name, e.Mediate, e.Quiet = m.name, true, false
		if e.Errno == 0 {
			e.Errno = unix.EPERM
		}
		out[nr] = e
	}
	for nr, name := range nonsIPC {
		out[nr] = bpf.Entry{Name: name, Errno: unix.EPERM, Rules: []bpf.Rule{{Syscall: name, Nr: nr, Errno: unix.EPERM,
			Reason: "landlock-only mode: System V IPC and POSIX message queues are the host's (no IPC namespace)"}}}
	}
	return out
}

// addNonsMediators registers mediateMeta for the metadata calls.
func (s *session) addNonsMediators() {
	for nr := range metaCalls {
		s.mediators[nr] = s.mediateMeta
	}
}

// mediateMeta decides one metadata call of landlock-only mode.
func (s *session) mediateMeta(c *Call) *Refusal {
	m, ok := metaCalls[int(c.Nr)]
	if !ok || (m.path < 0 && m.fd < 0) {
		c.Reply(0, unix.EPERM)
		return &Refusal{Errno: unix.EPERM, Reason: "landlock-only mode: " + m.name + " is not mediated"}
	}
	k, e := openCaller(c)
	if e != 0 {
		c.Reply(0, e)
		return nil
	}
	defer k.close()
	arg := func(i int) uint64 { return c.Args[i] }

	// Refused in every mode by the policy (bpf/syscalls.policy).
	if m.op == opChmod && arg(m.a)&0o6000 != 0 {
		c.Reply(0, unix.EPERM)
		return &Refusal{Errno: unix.EPERM, Reason: "set-user-ID or set-group-ID bit: a program that runs as its owner or with its group for any host user"}
	}
	var xname string
	var xvalue []byte
	if m.op == opSetxattr || m.op == opRemovexattr {
		var ok bool
		if xname, ok = memCString(k.tid, arg(m.a), xattrNameMax+1); !ok {
			c.Reply(0, unix.EFAULT)
			return nil
		}
		if m.op == opSetxattr {
			size := arg(m.size)
			if size > 64<<10 {
				c.Reply(0, unix.E2BIG)
				return nil
			}
			if size > 0 {
				if xvalue, e = memRead(k.tid, arg(m.b), int(size)); e != 0 {
					c.Reply(0, e)
					return nil
				}
			}
			if xname == capabilityXattr {
				c.Reply(0, unix.EPERM)
				return &Refusal{Errno: unix.EPERM, Reason: "security.capability: file capabilities any host user who runs the file gets"}
			}
		}
	}
	var times []byte
	if m.op == opUtime && arg(m.a) != 0 {
		n := map[int]int{0: 16, 1: 32, 2: 32}[m.times]
		if times, e = memRead(k.tid, arg(m.a), n); e != 0 {
			c.Reply(0, e)
			return nil
		}
	}

	// The target, held as a descriptor of ours.
	var target int
	var path string
	flags := 0
	if m.flags >= 0 {
		flags = int(arg(m.flags))
	}
	switch {
	case m.fd >= 0:
		if target, e = k.fdOrPath(arg(m.fd)); e != 0 {
			c.Reply(0, e)
			return nil
		}
	default:
		var p string
		if arg(m.path) != 0 {
			var ok bool
			if p, ok = memCString(k.tid, arg(m.path), unix.PathMax); !ok {
				c.Reply(0, unix.EFAULT)
				return nil
			}
		}
		path = p
		follow := m.follow && flags&unix.AT_SYMLINK_NOFOLLOW == 0
		empty := p == "" && (arg(m.path) == 0 && m.op == opUtime || flags&unix.AT_EMPTY_PATH != 0)
		if empty && (m.dirfd < 0 || int32(arg(m.dirfd)) == unix.AT_FDCWD) && arg(m.path) == 0 {
			c.Reply(0, unix.EFAULT) // utimensat(AT_FDCWD, NULL, …), as the kernel answers
			return nil
		}
		if target, e = k.resolve(m.dirfd, arg, p, follow, empty); e != 0 {
			c.Reply(0, e)
			return nil
		}
	}
	defer unix.Close(target)
	if !c.Valid() {
		return nil // the caller is gone, or was interrupted: nothing to answer
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(target))
	if path == "" {
		path = real
	}
	if err != nil || !s.socks.underByPathString(real) {
		c.Reply(0, unix.EROFS)
		return &Refusal{Kind: RefusedWrite, What: metaWriteOp[m.op], Path: path, Errno: unix.EROFS}
	}
	cr, err := callerCreds(int(c.PID))
	if err != nil {
		c.Reply(0, unix.ESRCH)
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(target, &st); err != nil {
		c.Reply(0, unix.EBADF)
		return nil
	}
	symlink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	self := "/proc/self/fd/" + strconv.Itoa(target)
	val := int64(0)
	errno := asCaller(cr, func() syscall.Errno {
		switch m.op {
		case opChmod:
			if symlink {
				return unix.EOPNOTSUPP
			}
			_, _, e := unix.Syscall(unix.SYS_FCHMODAT, atFDCWDArg, uintptr(unsafe.Pointer(cstring(self))), uintptr(arg(m.a)&0o7777))
			return e
		case opChown:
			_, _, e := unix.Syscall6(unix.SYS_FCHOWNAT, uintptr(target), uintptr(unsafe.Pointer(cstring(""))), uintptr(uint32(arg(m.a))), uintptr(uint32(arg(m.b))), unix.AT_EMPTY_PATH, 0)
			return e
		case opUtime:
			var ts []unix.Timespec
			if times != nil {
				ts = toTimespecs(m.times, times)
			}
			var tp uintptr
			if ts != nil {
				tp = uintptr(unsafe.Pointer(&ts[0]))
			}
			fl := uintptr(unix.AT_EMPTY_PATH)
			if symlink {
				fl |= unix.AT_SYMLINK_NOFOLLOW
			}
			_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(target), uintptr(unsafe.Pointer(cstring(""))), tp, fl, 0, 0)
			runtime.KeepAlive(ts)
			return e
		case opSetxattr, opRemovexattr:
			if symlink {
				return unix.EPERM // user.* attributes are not for symlinks; the rest needs capabilities
			}
			var err error
			if m.op == opSetxattr {
				err = unix.Setxattr(self, xname, xvalue, int(arg(m.size+1)))
			} else {
				err = unix.Removexattr(self, xname)
			}
			return errnoOf0(err)
		case opTruncate:
			if symlink {
				return unix.ELOOP
			}
			fd, err := unix.Open(self, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return errnoOf0(err)
			}
			defer unix.Close(fd)
			return errnoOf0(unix.Ftruncate(fd, int64(arg(m.a))))
		}
		return unix.ENOSYS
	})
	c.Reply(val, errno)
	return nil
}

// atFDCWDArg is AT_FDCWD as a system call argument.
var atFDCWDArg = func() uintptr { fd := int64(unix.AT_FDCWD); return uintptr(fd) }()

func errnoOf0(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return errnoOf(err)
}

func cstring(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

// toTimespecs converts a caller's utimbuf (kind 0), timeval[2] (1) or
// timespec[2] (2) to timespec[2].
func toTimespecs(kind int, b []byte) []unix.Timespec {
	le := binary.NativeEndian
	w := func(i int) int64 { return int64(le.Uint64(b[8*i:])) }
	switch kind {
	case 0:
		return []unix.Timespec{{Sec: w(0)}, {Sec: w(1)}}
	case 1:
		return []unix.Timespec{{Sec: w(0), Nsec: w(1) * 1000}, {Sec: w(2), Nsec: w(3) * 1000}}
	}
	return []unix.Timespec{{Sec: w(0), Nsec: w(1)}, {Sec: w(2), Nsec: w(3)}}
}

// resolve opens, O_PATH, what the caller names by path, relative to its
// directory descriptor argument dirArg (-1: its working directory), as the
// caller would find it: the caller's root is the host's in landlock-only
// mode. Magic links (/proc/<pid>/fd/N) are refused: the supervisor would
// follow them with its own privileges.
func (k *caller) resolve(dirArg int, arg func(int) uint64, path string, follow, empty bool) (int, syscall.Errno) {
	var dir int
	var e syscall.Errno
	if dirArg < 0 || int32(arg(dirArg)) == unix.AT_FDCWD {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/cwd", k.tid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, unix.ESRCH
		}
		dir = fd
	} else if dir, e = k.fdOrPath(arg(dirArg)); e != 0 {
		return -1, e
	}
	if empty {
		return dir, 0
	}
	defer unix.Close(dir)
	if path == "" {
		return -1, unix.ENOENT
	}
	flags := uint64(unix.O_PATH | unix.O_CLOEXEC)
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	how := unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dir, path, &how)
	for i := 0; err == unix.EAGAIN && i < 8; i++ {
		fd, err = unix.Openat2(dir, path, &how)
	}
	if err != nil {
		return -1, errnoOf(err)
	}
	return fd, 0
}

// underByPathString says whether the host path p lies beneath one of the
// session's writable directories (landlock-only mode).
func (s *sockets) underByPathString(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, " (deleted)") {
		return false
	}
	for _, d := range s.byPath {
		if policy.Within(p, d) && p != d {
			return true
		}
	}
	return false
}

// creds are a caller's ids and effective capabilities.
type creds struct {
	fsuid, fsgid int
	groups       []uint32
	capEff       uint64
}

func callerCreds(pid int) (creds, error) {
	var cr creds
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return cr, err
	}
	seen := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "Uid:", "Gid:":
			if len(f) != 5 {
				return cr, fmt.Errorf("status: %q", l)
			}
			v, err := strconv.Atoi(f[4]) // the file system id
			if err != nil {
				return cr, err
			}
			if f[0] == "Uid:" {
				cr.fsuid = v
			} else {
				cr.fsgid = v
			}
			seen++
		case "Groups:":
			for _, g := range f[1:] {
				v, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return cr, err
				}
				cr.groups = append(cr.groups, uint32(v))
			}
			seen++
		case "CapEff:":
			v, err := strconv.ParseUint(f[1], 16, 64)
			if err != nil {
				return cr, err
			}
			cr.capEff = v
			seen++
		}
	}
	if seen != 4 {
		return cr, fmt.Errorf("status of %d: incomplete", pid)
	}
	return cr, nil
}

// asCaller runs f on a thread of its own that took the caller's file
// system ids, groups and effective capabilities (raw system calls change
// only the calling thread; Go's wrappers would change them all). The
// thread is never given back to the Go runtime: it exits with the
// goroutine, and its credentials with it.
func asCaller(cr creds, f func() syscall.Errno) syscall.Errno {
	done := make(chan syscall.Errno, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: see above.
		if e := cr.assume(); e != 0 {
			done <- e
			return
		}
		done <- f()
	}()
	return <-done
}

// startPinned runs start, which forks the init with a parent-death
// signal (launch), on a thread locked until that child has exited. The
// kernel sends Pdeathsig when the thread that forked the child exits, not
// when the process does; asCaller's threads exit, and Go may have forked
// on any of its threads, so a metadata call in landlock-only mode used to
// kill the sandbox now and then (SIGKILL, exit status 137) when asCaller's
// goroutine got the forking thread. A locked thread runs no other
// goroutine: asCaller can never be given this one.
func startPinned(start func() (*exec.Cmd, bool, error)) (*exec.Cmd, bool, error) {
	type started struct {
		cmd        *exec.Cmd
		bornInside bool
		err        error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd, bornInside, err := start()
		ch <- started{cmd, bornInside, err}
		if err != nil {
			return
		}
		// Until it exits: WNOWAIT leaves it for cmd.Wait to reap; ECHILD
		// (reaped already) ends the wait too.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
	}()
	r := <-ch
	return r.cmd, r.bornInside, r.err
}

func (cr creds) assume() syscall.Errno {
	var gp uintptr
	if len(cr.groups) > 0 {
		gp = uintptr(unsafe.Pointer(&cr.groups[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(cr.groups)), gp, 0); e != 0 && !(e == unix.EPERM && os.Geteuid() != 0) {
		// Only root may set groups; a user's supervisor has the
		// session's groups already (the session cannot change them).
		return unix.EPERM
	}
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(cr.fsgid), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(cr.fsuid), 0, 0)
	// setfs[ug]id answer the previous id: ask again to check.
	if u, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); int(u) != cr.fsuid {
		return unix.EPERM
	}
	if g, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); int(g) != cr.fsgid {
		return unix.EPERM
	}
	h := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	d := [2]unix.CapUserData{{Effective: uint32(cr.capEff), Permitted: uint32(cr.capEff)}, {Effective: uint32(cr.capEff >> 32), Permitted: uint32(cr.capEff >> 32)}}
	if _, _, e := unix.RawSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(&d[0])), 0); e != 0 {
		return unix.EPERM
	}
	return 0
}

// memRead copies n bytes at addr out of thread tid's memory: with
// process_vm_readv, else through /proc/<tid>/mem, which the supervisor may
// read as the caller's parent where a container's seccomp profile refuses
// process_vm_readv (Docker's default, without CAP_SYS_PTRACE). What it
// returns is trustworthy only once Call.Valid says the caller still waits.
func memRead(tid int, addr uint64, n int) ([]byte, syscall.Errno) {
	b := make([]byte, n)
	if n == 0 {
		return b, 0
	}
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(n)
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: n}}
	if got, err := unix.ProcessVMReadv(tid, local, remote, 0); err == nil && got == n {
		return b, 0
	} else if err != unix.EPERM && err != unix.ENOSYS {
		return nil, unix.EFAULT
	}
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/mem")
	if err != nil {
		return nil, unix.EFAULT
	}
	defer f.Close()
	if got, err := f.ReadAt(b, int64(addr)); err != nil || got != n {
		return nil, unix.EFAULT
	}
	return b, 0
}

// memCString reads a NUL-terminated string of at most max bytes at addr,
// page by page (a string may end just before an unmapped page).
func memCString(tid int, addr uint64, max int) (string, bool) {
	if addr == 0 {
		return "", false
	}
	page := uint64(unix.Getpagesize())
	var out []byte
	for len(out) < max {
		n := min(int(page-addr%page), max-len(out))
		b, e := memRead(tid, addr, n)
		if e != 0 {
			return "", false
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return string(append(out, b[:i]...)), true
		}
		out = append(out, b...)
		addr += uint64(n)
	}
	return "", false
}

// fdOrPath is the caller's descriptor n as one of ours: the same open file
// (pidfd_getfd), or where that is refused, the same file opened O_PATH
// through /proc/<tid>/fd/n (enough to judge it and change its metadata).
func (k *caller) fdOrPath(n uint64) (int, syscall.Errno) {
	fd, e := k.fd(n)
	if e == 0 || e != unix.EBADF || n > 1<<31-1 {
		return fd, e
	}
	f, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", k.tid, n), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, unix.EBADF
	}
	return f, 0
}
