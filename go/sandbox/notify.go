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
)

// Refusal is one action the sandbox refused, for counts and the audit log.
type Refusal struct {
	Time   time.Time
	PID    int
	Comm   string // the process's command name, as /proc/<pid>/comm has it
	Kind   string // "syscall"
	What   string // the syscall name
	Reason string // the policy line's reason
	Errno  syscall.Errno
}

// struct seccomp_notif and seccomp_notif_resp (linux/seccomp.h).
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
type notifier struct {
	listener int
	table    bpf.Table
	record   func(Refusal)
	stop     [2]int // a pipe: closing stop[1] ends serve
	done     sync.WaitGroup
}

func startNotifier(listener int, table bpf.Table, record func(Refusal)) (*notifier, error) {
	n := &notifier{listener: listener, table: table, record: record}
	if err := unix.Pipe2(n.stop[:], unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	n.done.Add(1)
	go n.serve()
	return n, nil
}

// Close stops serving once every pending notification is answered. After
// it, a blocked call of a process still alive would get ENOSYS from the
// kernel: refused all the same.
func (n *notifier) Close() {
	unix.Close(n.stop[1])
	n.done.Wait()
	unix.Close(n.stop[0])
	unix.Close(n.listener)
}

func (n *notifier) serve() {
	defer n.done.Done()
	fds := []unix.PollFd{{Fd: int32(n.listener), Events: unix.POLLIN}, {Fd: int32(n.stop[0]), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			n.answer()
			continue
		}
		// No user of the filter is left (POLLHUP), or we are told to stop.
		if fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 || fds[1].Revents != 0 {
			return
		}
	}
}

func (n *notifier) answer() {
	var req seccompNotif
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); e != 0 {
		return // ENOENT: the caller died or was interrupted before we got it
	}
	e, ok := n.table[int(req.Nr)]
	errno := e.Errno
	if !ok || errno == 0 {
		errno = unix.EPERM // a notification the policy does not know: refuse all the same
	}
	resp := seccompNotifResp{ID: req.ID, Error: -int32(errno)}
	unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	name := e.Name
	if name == "" {
		name = bpf.SyscallName(int(req.Nr))
	}
	r := Refusal{Time: time.Now(), PID: int(req.PID), Kind: "syscall", What: name, Errno: errno, Comm: comm(int(req.PID))}
	if rule, ok := e.Match(req.Args); ok {
		r.Reason = rule.Reason
	}
	n.record(r)
}

func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Sizes the kernel expects; checked by a test against SECCOMP_GET_NOTIF_SIZES.
var (
	notifSize     = binary.Size(seccompNotif{})
	notifRespSize = binary.Size(seccompNotifResp{})
)
