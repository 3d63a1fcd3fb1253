package sandbox

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
)

// RefusalKind says what kind of action was refused; the audit log, the
// report's blocked counts and the metrics carry it as its string.
type RefusalKind string

// Kinds of refusal.
const (
	RefusedSyscall RefusalKind = "syscall" // a system call the seccomp filter or the supervisor refused
	RefusedWrite   RefusalKind = "write"   // a write to the read-only host (counted by writewatch, or refused by the supervisor)
	RefusedCommand RefusalKind = "command" // a shimmed tool's subcommand (the kind of shims.Report's lines)
	RefusedAPI     RefusalKind = "api"     // a call the Docker or Kubernetes API guard refused
)

// Refusal is one action the sandbox refused, for counts and the audit log.
type Refusal struct {
	Time   time.Time
	PID    int
	Comm   string // the process's command name, as /proc/<pid>/comm has it
	Kind   RefusalKind
	What   string // the syscall name
	Path   string // the path the refused call named, as given, where known ("write" refusals)
	Reason string // the policy line's reason
	Errno  syscall.Errno
}

// struct seccomp_notif and seccomp_notif_resp (linux/seccomp.h); the
// kernel writes and reads them whole, so TestNotifSizes checks their sizes
// against SECCOMP_GET_NOTIF_SIZES.
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// notifier answers the seccomp listener of one session: every notified
// call is refused with its rule's errno and counted. It never lets a call
// continue, so nothing it reads from the caller's memory can be raced.
//
// It waits in a blocking NOTIF_RECV, the cheapest way to wait: a poll
// first costs one more syscall per refused call. Once the last process of
// the session is gone, the listener polls as hung up and, from Linux 6.6
// on, a waiting RECV fails with ENOENT: the goroutine ends there. Before
// 6.6 a waiting RECV sleeps on a semaphore that only a new notification
// or a signal wakes, so stop interrupts it (see stop).
type notifier struct {
	listener int
	table    bpf.Table
	record   func(Refusal)
	detailed bool // fill in Comm and Reason (for the audit log)
	// mediators answer the calls the policy marks "mediate", by syscall
	// number. A mediated call without one is refused with EPERM.
	mediators map[int]mediator
	// done is closed when the answering goroutine ends: after the last
	// process of the session is gone and every refusal is recorded.
	done chan struct{}
	// tid is the thread the answering goroutine is locked to, for stop's
	// tgkill; 0 until it runs.
	tid atomic.Int32
	// killable: the filter was loaded with WAIT_KILLABLE_RECV (Linux
	// 5.19), so only a fatal signal can interrupt a call once it is
	// received. Without it any signal can, and the kernel restarts the
	// call as a new notification: the one received is then not counted
	// when its answer fails. A signal that wakes the caller just before
	// the answer arrives is not seen here: the kernel drops that answer
	// though SEND succeeded, and the restarted call counts again.
	killable bool
	// received, when set (tests), is called with each notification's id
	// between its RECV and its answer.
	received func(id uint64)
	// stopping asks the goroutine to stop waiting in RECV; it sets
	// draining once it has seen that and waits in poll instead.
	stopping, draining atomic.Bool
}

// stop waits at most d for the answering goroutine to end, so that the
// counts and the audit log hold every refusal once the session is over.
// The command has exited: the goroutine ends once the last process of the
// session is gone, but before Linux 6.6 a RECV already waiting is not
// woken by that (it sleeps on the listener's semaphore, which only a new
// notification raises). So stop asks the goroutine to wait in poll,
// which the hang-up wakes on every kernel, and interrupts its RECV with
// SIGURG on its thread until it has seen the request: the kernel fails
// that RECV with EINTR (down_interruptible, not restarted under Go's
// SA_RESTART), and Go ignores a SIGURG it did not ask for. From 6.6 on the
// signal restarts the RECV (-ERESTARTSYS), which the hang-up ends by
// itself. Nothing here runs per call: the hot path only loads stopping.
func (n *notifier) stop(d time.Duration) {
	n.stopping.Store(true)
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	// The signal can land between the goroutine's look at stopping and its
	// RECV, so it is repeated until the goroutine says it saw the request.
	for wait := 500 * time.Microsecond; !n.draining.Load(); wait = min(2*wait, 50*time.Millisecond) {
		if tid := n.tid.Load(); tid != 0 {
			unix.Tgkill(os.Getpid(), int(tid), unix.SIGURG)
		}
		select {
		case <-n.done:
			return
		case <-deadline.C:
			return
		case <-time.After(wait):
		}
	}
	select {
	case <-n.done:
	case <-deadline.C:
	}
}

// A mediator decides one mediated call and answers it (Call.Reply,
// Call.Continue), exactly once. It runs on the answering goroutine, which
// answers nothing else meanwhile: a call that may wait (a connect on a
// blocking socket) is finished on a goroutine of the mediator's own
// (mediate_sock.go). Handing every call to a new goroutine instead costs a
// wake-up of another thread per call, tens of microseconds on a busy host.
// It returns the refusal to record, or nil when the call was not refused.
type mediator func(c *Call) *Refusal

// Call is one notified syscall being mediated.
type Call struct {
	seccompNotif
	listener int
	// lost: the answer failed with ENOENT, the caller no longer waits in
	// this call (see notifier.killable).
	lost atomic.Bool
}

// Valid reports whether the caller is still waiting in this call: its
// memory and descriptors were read from the right process.
func (c *Call) Valid() bool {
	id := c.ID
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.listener), unix.SECCOMP_IOCTL_NOTIF_ID_VALID, uintptr(unsafe.Pointer(&id)))
	return e == 0
}

// Reply answers the call: it returns val, or fails with errno when errno
// is not 0.
func (c *Call) Reply(val int64, errno syscall.Errno) {
	resp := seccompNotifResp{ID: c.ID, Val: val, Error: -int32(errno)}
	c.send(&resp)
}

func (c *Call) send(resp *seccompNotifResp) {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c.listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(resp)))
	if e == unix.ENOENT {
		c.lost.Store(true)
	}
}

// Continue lets the kernel run the call as the caller made it. Only for
// calls whose decision rests on nothing the caller can change afterwards
// (register arguments, not memory), or where the kernel's own checks are
// the wall and the supervisor only counts.
func (c *Call) Continue() {
	resp := seccompNotifResp{ID: c.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	c.send(&resp)
}

// seccompIoctlNotifSetFlags is SECCOMP_IOCTL_NOTIF_SET_FLAGS,
// _IOW('!', 4, __u64) in linux/seccomp.h (Linux 6.6).
const seccompIoctlNotifSetFlags = 0x40082104

// startNotifier answers listener (see notifier) until stopped.
func startNotifier(listener int, table bpf.Table, mediators map[int]mediator, record func(Refusal), detailed, killable bool) *notifier {
	n := newNotifier(listener, table, mediators, record, detailed, killable)
	n.start()
	return n
}

func newNotifier(listener int, table bpf.Table, mediators map[int]mediator, record func(Refusal), detailed, killable bool) *notifier {
	return &notifier{listener: listener, table: table, record: record, detailed: detailed, mediators: mediators,
		killable: killable, done: make(chan struct{})}
}

// start answers the listener on a goroutine of its own until the session
// is over (see stop).
func (n *notifier) start() {
	// Ask the kernel to switch straight to us when a call is notified and
	// straight back when we answer, on the same CPU, instead of waking
	// us through the scheduler: the refused caller waits less. Older
	// kernels refuse the ioctl; the wake-up is then the ordinary one.
	unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), seccompIoctlNotifSetFlags, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	go func() {
		defer close(n.done)
		// Locked for good, so that stop can signal the thread that waits
		// in RECV; the thread ends with the goroutine.
		runtime.LockOSThread()
		n.tid.Store(int32(unix.Gettid()))
		for !n.stopping.Load() {
			if !n.answer() {
				return
			}
		}
		n.drain()
	}()
}

// drain answers what is still notified once the command has exited, and
// returns when no process is left: it waits in poll, which the hang-up
// wakes on every kernel, and receives only what poll says is there.
func (n *notifier) drain() {
	n.draining.Store(true)
	for {
		in, hup, err := n.poll(-1)
		if err != nil {
			if err == unix.EINTR {
				continue // a late SIGURG of stop's
			}
			return
		}
		switch {
		case in:
			// A notification waits: RECV takes it at once (or fails with
			// ENOENT if its caller died meanwhile).
			if !n.answer() {
				return
			}
		case hup:
			return
		}
	}
}

// poll polls the listener for timeout ms (-1: until something happens):
// in when a notification waits, hup when no process is left that the
// filter could notify.
func (n *notifier) poll(timeout int) (in, hup bool, err error) {
	fds := []unix.PollFd{{Fd: int32(n.listener), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, timeout); err != nil {
		return false, false, err
	}
	r := fds[0].Revents
	return r&unix.POLLIN != 0, r&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0, nil
}

// hungUp says whether no process is left that the filter could notify.
func (n *notifier) hungUp() bool {
	_, hup, err := n.poll(0)
	return err == nil && hup
}

// answer answers one notification; false when the listener is unusable.
func (n *notifier) answer() bool {
	var req seccompNotif
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); e != 0 {
		// EINTR: a signal. ENOENT: the caller died before we got it, or
		// the session is over: then the kernel answers every RECV with
		// ENOENT at once, and only POLLHUP tells the two apart.
		if e == unix.ENOENT {
			return !n.hungUp()
		}
		return e == unix.EINTR
	}
	if n.received != nil {
		n.received(req.ID)
	}
	e, ok := n.table[int(req.Nr)]
	if m := n.mediators[int(req.Nr)]; ok && e.Mediate && m != nil {
		n.mediate(m, &Call{seccompNotif: req, listener: n.listener}, e)
		return true
	}
	errno := e.Errno
	if !ok || errno == 0 {
		errno = unix.EPERM // a notification the policy does not know: refuse all the same
	}
	c := Call{seccompNotif: req, listener: n.listener}
	c.Reply(0, errno)
	if n.restarted(&c) {
		return true
	}
	name := e.Name
	if name == "" {
		name = bpf.SyscallName(int(req.Nr))
	}
	r := Refusal{Time: time.Now(), PID: int(req.PID), Kind: RefusedSyscall, What: name, Errno: errno}
	if n.detailed {
		// Only the audit log needs these, and /proc costs more than the
		// whole round trip.
		r.Comm = comm(int(req.PID))
		if rule, ok := e.Match(req.Args); ok {
			r.Reason = rule.Reason
		}
	}
	n.record(r)
	return true
}

// restarted says whether c's answer came too late for a call the kernel
// restarts: a signal interrupted it after we received it, and it comes
// back as a new notification, counted when answered (or its caller died).
// Counting this one too would count one attempt twice. With a killable
// wait only a fatal signal interrupts it, and the attempt counts.
func (n *notifier) restarted(c *Call) bool {
	return c.lost.Load() && !n.killable
}

func (n *notifier) mediate(m mediator, c *Call, e bpf.Entry) {
	r := m(c)
	if r == nil || n.restarted(c) {
		// Not refused; or answered too late (an answer a mediator's
		// goroutine gives later is counted all the same).
		return
	}
	r.Time, r.PID = time.Now(), int(c.PID)
	if r.Kind == "" {
		r.Kind = RefusedSyscall
	}
	if r.What == "" {
		r.What = e.Name
	}
	if n.detailed {
		r.Comm = comm(r.PID)
	}
	n.record(*r)
}

func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
