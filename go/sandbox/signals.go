package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
	cinit "ronly.dev/ronly/init"
)

// Signal mediation. Landlock scopes signals from ABI 6 on; below it an
// identity-mapped user namespace is no wall for them (the kernel compares
// uids only), so root inside could kill host root's processes. A session
// that shares the host's PID namespace there (the debug profile, where
// `ps` must show the host) gets the notify-signals program: kill, tkill,
// tgkill and pidfd_send_signal come here ("mediate signals" in
// bpf/syscalls.policy), and the supervisor delivers each signal itself, by
// pidfd, and only to processes of the session.
//
// A process is the session's when it is in the session's cgroup, or, where
// the session has none, when the supervisor (a child subreaper, so every
// orphan of the session comes back to it) is its ancestor. Neither can be
// left from inside: /sys/fs/cgroup is read-only there, and a process is
// only ever reparented towards the supervisor.
//
// Race-free against pid reuse: the target is pinned by a pidfd first, its
// /proc entry is read after that, and the pidfd is then checked to be alive:
// had the pid been freed and reused in between, the pidfd's process would
// be dead. The signal goes through the pidfd, so it reaches that process or
// none.
//
// A call that names the caller itself (kill of its own pid, tgkill within
// its own thread group, tkill of its own thread) continues: those ids are
// register arguments, and they cannot be reused while the caller waits in
// the call. Go's runtime preempts goroutines with tgkill on its own
// threads: that stays one round trip.
//
// Differences from the kernel's own delivery: the target sees the
// supervisor as the sender (si_pid, si_uid of SI_USER); a process group or
// kill(-1) is signalled member by member, as Landlock's scoping does, the
// members outside the session skipped; a signal for one thread of another
// process reaches its thread group on kernels without thread pidfds (6.9).
// Refusals fail with EPERM, as the kernel answers a signal it does not
// permit, and are counted and audited.

// pidfdSignalProcessGroup is PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9).
const pidfdSignalProcessGroup = 1 << 2

// signals is the signal policy of one session.
type signals struct {
	// cgroup is the content of /proc/<pid>/cgroup of every process in the
	// session's cgroup, as read from its init once it is there; "" where
	// the session has no cgroup: then its process tree decides.
	cgroup string
	// self is the supervisor's pid, the top of the session's tree.
	self int
	// on: the session got the notify-signals program (signalProgram).
	// rt_(tg)sigqueueinfo is mediated in every session; only then does
	// the supervisor deliver it to another process itself.
	on bool
	// scoped: Landlock (ABI 6) or a PID namespace of the session's own
	// confines its signals, so rt_(tg)sigqueueinfo may continue.
	scoped bool
}

func newSignals() *signals { return &signals{self: os.Getpid()} }

// learn takes the session's cgroup from its init, which confine has put
// there; nothing to learn when the session has no cgroup.
func (g *signals) learn(initPID int, hasCgroup bool) error {
	g.cgroup = ""
	if !hasCgroup {
		return nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(initPID) + "/cgroup")
	if err != nil {
		return err
	}
	g.cgroup = string(b)
	return nil
}

// register adds the signal calls' mediators for the calls the policy
// marks "mediate signals"; the reasons of refusals come from its rules.
func (g *signals) register(m map[int]mediator, t bpf.Table) {
	for nr, f := range map[int]func(*Call) verdict{
		unix.SYS_KILL:              g.kill,
		unix.SYS_TKILL:             g.tkill,
		unix.SYS_TGKILL:            g.tgkill,
		unix.SYS_PIDFD_SEND_SIGNAL: g.pidfdSendSignal,
		unix.SYS_RT_SIGQUEUEINFO:   g.sigqueue,
		unix.SYS_RT_TGSIGQUEUEINFO: g.sigqueue,
	} {
		e, ok := t[nr]
		if !ok || !e.Mediate {
			continue
		}
		m[nr] = func(c *Call) *Refusal {
			v := f(c)
			if v.cont {
				c.Continue()
				return nil
			}
			c.Reply(0, v.errno)
			if v.errno != unix.EPERM {
				return nil
			}
			r := &Refusal{Errno: unix.EPERM}
			if rule, ok := e.Match(c.Args); ok {
				r.Reason = rule.Reason
			}
			if v.target != 0 {
				r.Reason += " (target " + strconv.Itoa(v.target) + ")"
			}
			return r
		}
	}
}

// verdict is the answer to one signal call: continue it (it names only
// the caller), or fail with errno (0: delivered); target is the pid (or
// -pgid) a refusal was about, for the audit log.
type verdict struct {
	cont   bool
	errno  syscall.Errno
	target int
}

var proceed = verdict{cont: true}

// callerIn says whether the calling thread tid belongs to process tgid:
// its own thread group, which cannot change or be reused while it waits.
// A stat, cheaper than reading its status: this is on every signal a Go
// runtime sends its own threads.
func callerIn(tgid, tid int) bool {
	if tgid <= 0 {
		return false
	}
	if tgid == tid {
		return true
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(tgid) + "/task/" + strconv.Itoa(tid))
	return err == nil
}

func fail(e syscall.Errno) verdict { return verdict{errno: e} }

// errnoFrom is err's errno: 0 for nil.
func errnoFrom(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return unix.EIO
}

// validSignal is the kernel's valid_signal: 0 (a check) up to _NSIG.
func validSignal(sig int32) bool { return sig >= 0 && sig <= 64 }

// kill(pid, sig): a process, the caller's process group (0), a process
// group (-pgid) or every process (-1). It returns the answer and, for a
// refusal, the pid it was about.
func (g *signals) kill(c *Call) verdict {
	pid, sig := int32(c.Args[0]), int32(c.Args[1])
	if !validSignal(sig) {
		return fail(unix.EINVAL)
	}
	if pid > 0 && callerIn(int(pid), int(c.PID)) {
		return proceed
	}
	tgid := tgidOf(int(c.PID))
	switch {
	case pid > 0 && int(pid) == tgid:
		return proceed
	case pid > 0:
		return verdict{errno: g.signalProcess(int(pid), sig), target: int(pid)}
	case pid == -1:
		return verdict{errno: g.signalAll(tgid, sig), target: -1}
	case pid == 0:
		pgid, ok := pgrpOf(tgid)
		if !ok {
			return fail(unix.ESRCH)
		}
		return verdict{errno: g.signalGroup(pgid, sig), target: -pgid}
	default:
		pgid := -int64(pid) // int64: -INT_MIN is no pid at all
		if pgid > 1<<22 {
			return fail(unix.ESRCH)
		}
		return verdict{errno: g.signalGroup(int(pgid), sig), target: int(pid)}
	}
}

// tkill(tid, sig): one thread, of any process.
func (g *signals) tkill(c *Call) verdict {
	tid, sig := int32(c.Args[0]), int32(c.Args[1])
	if tid <= 0 || !validSignal(sig) {
		return fail(unix.EINVAL)
	}
	if int(tid) == int(c.PID) {
		return proceed
	}
	if own := tgidOf(int(c.PID)); tgidOf(int(tid)) == own {
		// Another thread of the caller's own process: tgkill on the
		// caller's thread group, whose id cannot be reused while it
		// waits, reaches tid only if tid is still one of its threads.
		return fail(errnoFrom(unix.Tgkill(own, int(tid), syscall.Signal(sig))))
	}
	return verdict{errno: g.signalThread(tgidOf(int(tid)), int(tid), sig), target: int(tid)}
}

// tgkill(tgid, tid, sig): thread tid of process tgid.
func (g *signals) tgkill(c *Call) verdict {
	tgid, tid, sig := int32(c.Args[0]), int32(c.Args[1]), int32(c.Args[2])
	if tgid <= 0 || tid <= 0 || !validSignal(sig) {
		return fail(unix.EINVAL)
	}
	if callerIn(int(tgid), int(c.PID)) {
		// The kernel checks that tid belongs to tgid, the caller's own.
		return proceed
	}
	return verdict{errno: g.signalThread(int(tgid), int(tid), sig), target: int(tgid)}
}

// pidfdSendSignal(pidfd, sig, info, flags): the caller's pidfd, taken out
// of its descriptor table, is judged by the process it names, and the
// supervisor signals through that very pidfd with a copy of the siginfo.
func (g *signals) pidfdSendSignal(c *Call) verdict {
	sig, infoAddr, flags := int32(c.Args[1]), c.Args[2], uint32(c.Args[3])
	if !validSignal(sig) {
		return fail(unix.EINVAL)
	}
	k, e := openCaller(c)
	if e != 0 {
		return fail(e)
	}
	defer k.close()
	fd, e := k.fd(c.Args[0])
	if e != 0 {
		return fail(e)
	}
	defer unix.Close(fd)
	var info []byte
	if infoAddr != 0 {
		// sizeof(siginfo_t); the kernel validates what it says.
		if info, e = k.read(infoAddr, 128); e != 0 {
			return fail(e)
		}
	}
	// The descriptor and the siginfo are the caller's only if it still
	// waits in this call.
	if !c.Valid() {
		return fail(unix.ESRCH)
	}
	pid, ok := pidfdPid(fd)
	switch {
	case !ok:
		return fail(unix.EBADF)
	case pid < 0:
		return fail(unix.ESRCH)
	case pid == 0 || !g.member(pid, fd):
		// 0: a process of another PID namespace, never the session's.
		return verdict{errno: unix.EPERM, target: pid}
	}
	if flags&pidfdSignalProcessGroup != 0 {
		pgid, ok := pgrpOf(pid)
		if !ok {
			return fail(unix.ESRCH)
		}
		return verdict{errno: g.signalGroup(pgid, sig), target: -pgid}
	}
	var p unsafe.Pointer
	if info != nil {
		p = unsafe.Pointer(&info[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_PIDFD_SEND_SIGNAL, uintptr(fd), uintptr(sig), uintptr(p), uintptr(flags), 0, 0)
	return fail(errno)
}

// sigqueue is rt_sigqueueinfo(tgid, sig, info) and rt_tgsigqueueinfo(tgid,
// tid, sig, info): a signal with a siginfo of the caller's making. To the
// caller's own process it continues (the kernel reads the siginfo; the
// target is a register and the caller's own, which cannot be reused while
// it waits), and so it does where Landlock or a PID namespace confines the
// session's signals. Where the supervisor confines them, it delivers the
// signal as kill's, with a copy of the siginfo, which the kernel checks as
// it would the caller's (no si_code of the kernel's own to another
// process). Where nothing confines them (no Landlock), it is refused.
func (g *signals) sigqueue(c *Call) verdict {
	thread := c.Nr == unix.SYS_RT_TGSIGQUEUEINFO
	tgid, tid, sigArg := int32(c.Args[0]), int32(c.Args[0]), 1
	if thread {
		tid, sigArg = int32(c.Args[1]), 2
	}
	sig, infoAddr := int32(c.Args[sigArg]), c.Args[sigArg+1]
	if !validSignal(sig) {
		return fail(unix.EINVAL)
	}
	// The caller's ids in its own PID namespace, where the kernel looks
	// the target up (the ci profile has one).
	if _, own, ok := ownIDs(int(c.PID)); ok && int(tgid) == own {
		return proceed
	}
	if g.scoped {
		// The kernel finds the target where Landlock's scope or the
		// session's PID namespace confines it.
		return proceed
	}
	if !g.on {
		return verdict{errno: unix.EPERM, target: int(tgid)}
	}
	if tgid <= 0 || tid <= 0 {
		return fail(unix.ESRCH)
	}
	k, e := openCaller(c)
	if e != 0 {
		return fail(e)
	}
	info, e := k.read(infoAddr, 128) // sizeof(siginfo_t)
	k.close()
	if e != 0 {
		return fail(e)
	}
	if !c.Valid() {
		return fail(unix.ESRCH)
	}
	// rt_sigqueueinfo takes the signal from its argument; pidfd_send_signal
	// wants the siginfo to say the same.
	*(*int32)(unsafe.Pointer(&info[0])) = sig
	send := func(fd int) syscall.Errno {
		_, _, errno := unix.Syscall6(unix.SYS_PIDFD_SEND_SIGNAL, uintptr(fd), uintptr(sig), uintptr(unsafe.Pointer(&info[0])), 0, 0, 0)
		return errno
	}
	fd, err := unix.PidfdOpen(int(tgid), 0)
	if err != nil {
		return fail(unix.ESRCH)
	}
	defer unix.Close(fd)
	if !g.member(int(tgid), fd) {
		return verdict{errno: unix.EPERM, target: int(tgid)}
	}
	if !thread || tid == tgid {
		return fail(send(fd))
	}
	task := "/proc/" + strconv.Itoa(int(tgid)) + "/task/" + strconv.Itoa(int(tid))
	tfd, err := unix.PidfdOpen(int(tid), pidfdThread)
	if err != nil {
		// No thread pidfds before 6.9: the thread group gets it.
		if _, err := os.Stat(task); err != nil {
			return fail(unix.ESRCH)
		}
		return fail(send(fd))
	}
	defer unix.Close(tfd)
	if _, err := os.Stat(task); err != nil || tgidOf(int(tid)) != int(tgid) || !alive(tfd) {
		return fail(unix.ESRCH)
	}
	return fail(send(tfd))
}

// signalProcess signals process (or thread) pid if it is the session's.
func (g *signals) signalProcess(pid int, sig int32) syscall.Errno {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.EINVAL {
		// pid names a thread that does not lead its group: kill()
		// signals its thread group, as here.
		return g.signalThreadGroupOf(pid, sig)
	}
	if err != nil {
		return unix.ESRCH
	}
	defer unix.Close(fd)
	if !g.member(pid, fd) {
		return unix.EPERM
	}
	return errnoFrom(unix.PidfdSendSignal(fd, syscall.Signal(sig), nil, 0))
}

// signalThreadGroupOf signals the thread group of thread tid.
func (g *signals) signalThreadGroupOf(tid int, sig int32) syscall.Errno {
	tgid := tgidOf(tid)
	fd, err := unix.PidfdOpen(tgid, 0)
	if err != nil {
		return unix.ESRCH
	}
	defer unix.Close(fd)
	// The thread is the pidfd's only if it is one of its threads now,
	// with the process still alive (checked by member, after this).
	if _, err := os.Stat("/proc/" + strconv.Itoa(tgid) + "/task/" + strconv.Itoa(tid)); err != nil {
		return unix.ESRCH
	}
	if !g.member(tgid, fd) {
		return unix.EPERM
	}
	return errnoFrom(unix.PidfdSendSignal(fd, syscall.Signal(sig), nil, 0))
}

// signalThread signals thread tid of process tgid if the process is the
// session's: by a thread pidfd where the kernel has them (6.9), else to
// the thread group, which is the most a pidfd could reach before.
func (g *signals) signalThread(tgid, tid int, sig int32) syscall.Errno {
	fd, err := unix.PidfdOpen(tgid, 0)
	if err != nil {
		return unix.ESRCH // not a process, or not one that leads its group
	}
	defer unix.Close(fd)
	task := "/proc/" + strconv.Itoa(tgid) + "/task/" + strconv.Itoa(tid)
	if _, err := os.Stat(task); err != nil {
		return unix.ESRCH
	}
	if !g.member(tgid, fd) {
		return unix.EPERM
	}
	tfd, err := unix.PidfdOpen(tid, pidfdThread)
	if err != nil {
		return errnoFrom(unix.PidfdSendSignal(fd, syscall.Signal(sig), nil, 0))
	}
	defer unix.Close(tfd)
	// The thread pidfd is tgid's thread only if tid is still one of its
	// threads, with the thread alive, after it was opened.
	if _, err := os.Stat(task); err != nil || tgidOf(tid) != tgid || !alive(tfd) {
		return unix.ESRCH
	}
	return errnoFrom(unix.PidfdSendSignal(tfd, syscall.Signal(sig), nil, 0))
}

// signalGroup signals the members of process group pgid that are the
// session's, as Landlock's scoping does: a member outside is skipped. It
// fails with EPERM when every member is outside, ESRCH when there is none.
func (g *signals) signalGroup(pgid int, sig int32) syscall.Errno {
	return g.signalEach(func(pid int) bool {
		pg, ok := pgrpOf(pid)
		return ok && pg == pgid
	}, sig)
}

// signalAll is kill(-1): every process of the session but the caller's.
func (g *signals) signalAll(callerTgid int, sig int32) syscall.Errno {
	return g.signalEach(func(pid int) bool { return pid != callerTgid && pid != g.self }, sig)
}

func (g *signals) signalEach(want func(pid int) bool, sig int32) syscall.Errno {
	found, sent := false, false
	last := unix.ESRCH
	for _, pid := range processes() {
		if pid <= 1 || !want(pid) {
			continue
		}
		found = true
		e := g.signalProcess(pid, sig)
		if e == 0 {
			sent = true
		} else if e != unix.EPERM && e != unix.ESRCH {
			last = e
		}
	}
	switch {
	case sent:
		return 0
	case last != unix.ESRCH:
		return last
	case found:
		return unix.EPERM
	}
	return unix.ESRCH
}

// member says whether pid, pinned by pidfd fd, is a process of the
// session. Its /proc entry is read after the pidfd was opened and trusted
// only if the pidfd is alive afterwards.
func (g *signals) member(pid, fd int) bool {
	if g.cgroup == "" {
		return g.inTree(pid, fd)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	return err == nil && string(b) == g.cgroup && alive(fd)
}

// inTree says whether the supervisor is an ancestor of pid. Each link is
// checked the same way: the parent's pidfd is opened, then the child is
// seen to still have that parent while alive; only then is the parent's
// own parent read.
func (g *signals) inTree(pid, fd int) bool {
	cur, curfd := pid, fd
	defer func() {
		if curfd != fd {
			unix.Close(curfd)
		}
	}()
	for depth := 0; depth < 1<<16; depth++ {
		pp, ok := ppidOf(cur)
		if !ok || !alive(curfd) {
			return false
		}
		if pp == g.self {
			return true
		}
		if pp <= 1 {
			return false
		}
		pfd, err := unix.PidfdOpen(pp, 0)
		if err != nil {
			return false
		}
		if again, ok := ppidOf(cur); !ok || again != pp || !alive(curfd) {
			unix.Close(pfd)
			return false
		}
		if curfd != fd {
			unix.Close(curfd)
		}
		cur, curfd = pp, pfd
	}
	return false
}

// alive says whether the process of a pidfd still exists (a zombie does:
// its pid is not free yet).
func alive(fd int) bool { return unix.PidfdSendSignal(fd, 0, nil, 0) == nil }

// pidfdPid is the pid a pidfd of ours names, from its fdinfo: -1 once the
// process is gone, 0 when it lives in a PID namespace we cannot see.
func pidfdPid(fd int) (int, bool) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

// statFields are the fields of /proc/<pid>/stat after the command name,
// which may hold spaces and parentheses: state is [0], ppid [1], pgrp [2].
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	return f, len(f) > 2
}

func ppidOf(pid int) (int, bool) { return statInt(pid, 1) }
func pgrpOf(pid int) (int, bool) { return statInt(pid, 2) }

func statInt(pid, field int) (int, bool) {
	f, ok := statFields(pid)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(f[field])
	return n, err == nil
}

// processes lists the pids in /proc (thread groups, not threads).
func processes() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// signalProgram gives cfg the notify-signals program when the session
// needs its signals confined by the supervisor: Landlock below ABI 6, the
// host's PID namespace, and a seccomp filter to hear the calls in. It has
// no fallback program: where no listener can be had (a nested sandbox),
// the init stops with EBUSY and Run starts again with a PID namespace.
func (s *session) signalProgram(cfg cinit.Config) cinit.Config {
	l, p := s.layers, s.p
	l.SignalMediation, s.sigs.on = false, false
	s.sigs.scoped = l.PIDNS || (!p.SkipLandlock && l.LandlockABI >= 6)
	if l.PIDNS || p.SkipSeccomp || p.SkipLandlock || l.LandlockABI >= 6 || s.withSignals == nil {
		return cfg
	}
	cfg.BPF, cfg.Fallback = s.withSignals, nil
	l.SignalMediation, s.sigs.on = true, true
	return cfg
}
