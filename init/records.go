package cinit

/*
#include "records.h"

// The sizes of the char arrays in the records, for Go constants: cgo
// gives enum values as constants, sizeof of a member it cannot.
enum {
	ronly_userns_name_len = sizeof(((struct ronly_userns_limit *)0)->name),
	ronly_msg_step_len = sizeof(((struct ronly_msg *)0)->step),
	ronly_msg_detail_len = sizeof(((struct ronly_msg *)0)->detail),
};
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"syscall"
)

// Every number of the protocol comes from records.h through cgo: nothing is
// copied by hand, so the two sides cannot drift apart in value.
// TestRecordLayout checks that the encoders below put each field at the
// offset the C compiler gives it.
const (
	magic          = C.RONLY_MAGIC
	recordsVersion = C.RONLY_RECORDS_VERSION
	pathMax        = C.RONLY_PATH_MAX
	// maxExecBytes bounds Argv and Env, each, in bytes with their NULs.
	maxExecBytes = C.RONLY_MAX_EXEC_BYTES
	// MaxMounts is how many mount records the init takes.
	MaxMounts = C.RONLY_MAX_MOUNTS
	// MaxUsernsLimits is how many user namespace limits the init takes.
	MaxUsernsLimits = C.RONLY_MAX_USERNS_LIMITS
	usernsNameLen   = C.ronly_userns_name_len
	msgStepLen      = C.ronly_msg_step_len
	msgDetailLen    = C.ronly_msg_detail_len
)

// Exit codes, as the shell and docker use them: the init's own, the shims'
// and ronly's; anything else is the command's.
const (
	ExitRonly    = C.RONLY_EXIT_RONLY     // ronly itself, the init or a shim, failed
	ExitNotExec  = C.RONLY_EXIT_NOT_EXEC  // the command was found but cannot be executed
	ExitNotFound = C.RONLY_EXIT_NOT_FOUND // the command was not found
)

// Flags of Config.
const (
	FlagUserNS        uint32 = C.RONLY_F_USERNS         // create a user namespace; the parent writes the id maps
	FlagNetNS         uint32 = C.RONLY_F_NETNS          // private network namespace with lo up
	FlagKeepDACRead   uint32 = C.RONLY_F_KEEP_DAC_READ  // keep CAP_DAC_READ_SEARCH inside
	FlagSeccompNotify uint32 = C.RONLY_F_SECCOMP_NOTIFY // load the filter with a user-notification listener
	FlagPIDNS         uint32 = C.RONLY_F_PIDNS          // private PID namespace with its own /proc and a tiny PID 1
	// FlagPTY puts a pty of the sandbox's own devpts on stdin, as the
	// controlling terminal of a new session; its master comes back in a
	// MsgPTY. FlagPTYOut and FlagPTYErr put it on stdout and stderr too.
	FlagPTY    uint32 = C.RONLY_F_PTY
	FlagPTYOut uint32 = C.RONLY_F_PTY_OUT
	FlagPTYErr uint32 = C.RONLY_F_PTY_ERR
	// FlagNoNS makes no namespace, mount or pivot_root: the command sees
	// the host's tree, and Landlock alone keeps it read-only. Only
	// MountBindRW records are taken, each a directory that gets a write
	// rule (nothing is bound).
	FlagNoNS uint32 = C.RONLY_F_NO_NS
	// FlagListenerHelper: pidfd_getfd is refused here (Docker's default
	// seccomp profile allows it only with CAP_SYS_PTRACE), so a helper the
	// init starts before its filter, sharing its descriptors, sends the
	// listener over with SCM_RIGHTS (MsgListener with the descriptor).
	FlagListenerHelper uint32 = C.RONLY_F_LISTENER_HELPER
)

// MountKind says what the init does with a Mount.
type MountKind uint32

// Mount kinds, applied in record order.
const (
	// 1, 4 and 6 were the socket covers, retired (the supervisor
	// mediates connect now); their numbers are not reused.
	MountTmpfs  MountKind = C.RONLY_M_TMPFS   // fresh writable tmpfs
	MountBindRW MountKind = C.RONLY_M_BIND_RW // host directory bound writable at the same path
	// MountShim puts this binary at /dev/ronly-shims/NAME (Path "/NAME").
	MountShim MountKind = C.RONLY_M_SHIM
	// MountBindRO binds Path, a directory or file inside a writable bind
	// made by an earlier record, read-only onto itself: the init opens it
	// without following symlinks and mounts through that descriptor.
	MountBindRO MountKind = C.RONLY_M_BIND_RO
	// MountPin is MountBindRO left writable: a mount point cannot be
	// renamed, removed or replaced from inside.
	MountPin MountKind = C.RONLY_M_PIN
	// MountHide binds an empty read-only file over Path, a regular file
	// (a kubeconfig, a client key: go/sandbox/creds.go).
	MountHide MountKind = C.RONLY_M_HIDE
	// MountHideDir covers Path, a directory (a service-account token
	// volume), with a read-only tmpfs of mode Mode that holds what the
	// MountShow records right after it name.
	MountHideDir MountKind = C.RONLY_M_HIDE_DIR
	// MountShow is the name filepath.Base(Path) in the MountHideDir
	// before it: Source, a host file, bound read-only, or an empty file
	// when Source is "".
	MountShow MountKind = C.RONLY_M_SHOW
)

// Mount is one mount step for the init.
type Mount struct {
	Kind   MountKind
	Path   string
	Size   uint64 // tmpfs bytes
	Mode   uint32 // tmpfs root mode
	Source string // MountShow: the host file shown; "" for an empty one
	// Dev and Ino identify the file the supervisor checked at Path
	// (MountBindRW): the init opens it without
	// following symlinks and refuses any other file found there.
	Dev, Ino uint64
}

// Config is everything the init needs, sent once as fixed records.
type Config struct {
	Flags       uint32
	LandlockABI uint32 // ABI to enforce; 0 for none
	Mounts      []Mount
	BPF         []byte // struct sock_filter[]; empty for no filter
	// Fallback is loaded instead of BPF when FlagSeccompNotify is set but
	// no listener can be installed (nested under another listener: EBUSY).
	Fallback []byte
	// ReportFD is an inherited descriptor (≥ 3) the init keeps open for
	// the command's reports; 0 for none.
	ReportFD uint32
	// UsernsLimits are written to /proc/sys/user/<name> inside the
	// session's user namespace (FlagUserNS only), before its capabilities
	// are dropped: that namespace's own limits, on top of the host's.
	UsernsLimits []UsernsLimit
	// Argv is the command the init execs once the sandbox is sealed,
	// looked up on Env's PATH inside; empty: the init returns to the Go
	// runtime instead (the seam's tests). Env is its whole environment.
	Argv, Env []string
}

// UsernsLimit is one /proc/sys/user limit of the session's user namespace.
type UsernsLimit struct {
	Name  string // max_inotify_instances, max_user_namespaces…
	Value uint64
}

// Record sizes, as the C compiler lays records.h out.
const (
	headerSize = C.sizeof_struct_ronly_header
	mountSize  = C.sizeof_struct_ronly_mount
)

// MarshalBinary encodes c as records.h lays it out, field by field: no
// reflection on the way to every session.
func (c *Config) MarshalBinary() ([]byte, error) {
	if len(c.BPF)%8 != 0 || len(c.Fallback)%8 != 0 {
		return nil, fmt.Errorf("BPF programs of %d and %d bytes are not whole numbers of instructions", len(c.BPF), len(c.Fallback))
	}
	if len(c.Mounts) > MaxMounts {
		return nil, fmt.Errorf("%d mount records, more than the init takes (%d)", len(c.Mounts), MaxMounts)
	}
	if len(c.UsernsLimits) > MaxUsernsLimits {
		return nil, fmt.Errorf("%d user namespace limits, more than the init takes (%d)", len(c.UsernsLimits), MaxUsernsLimits)
	}
	argv, err := cstrings("argument", c.Argv)
	if err != nil {
		return nil, err
	}
	env, err := cstrings("environment variable", c.Env)
	if err != nil {
		return nil, err
	}
	if len(c.Argv) == 0 && len(c.Env) > 0 {
		return nil, fmt.Errorf("an environment without a command")
	}
	le := binary.LittleEndian
	b := make([]byte, 0, headerSize+len(c.Mounts)*mountSize+len(c.BPF)+len(c.Fallback)+len(argv)+len(env))
	for _, v := range []uint32{magic, recordsVersion, c.Flags, uint32(len(c.Mounts)), uint32(len(c.BPF)), c.LandlockABI,
		uint32(len(c.Fallback)), c.ReportFD} {
		b = le.AppendUint32(b, v)
	}
	for i := 0; i < MaxUsernsLimits; i++ {
		var l UsernsLimit
		if i < len(c.UsernsLimits) {
			l = c.UsernsLimits[i]
			if l.Name == "" || len(l.Name) >= usernsNameLen || strings.ContainsAny(l.Name, "/.\x00") {
				return nil, fmt.Errorf("user namespace limit %q: not a file name in /proc/sys/user", l.Name)
			}
		}
		b = appendPadded(b, l.Name, usernsNameLen)
		b = le.AppendUint64(b, l.Value)
	}
	b = le.AppendUint32(b, uint32(len(argv)))
	b = le.AppendUint32(b, uint32(len(env)))
	for _, m := range c.Mounts {
		if len(m.Path) == 0 || m.Path[0] != '/' || len(m.Path) >= pathMax || len(m.Source) >= pathMax {
			return nil, fmt.Errorf("mount path %q: must be absolute and shorter than %d bytes", m.Path, pathMax)
		}
		b = le.AppendUint32(b, uint32(m.Kind))
		b = le.AppendUint32(b, m.Mode)
		b = le.AppendUint64(b, m.Size)
		b = le.AppendUint64(b, m.Dev)
		b = le.AppendUint64(b, m.Ino)
		b = appendPadded(b, m.Path, pathMax)
		b = appendPadded(b, m.Source, pathMax)
	}
	b = append(b, c.BPF...)
	b = append(b, c.Fallback...)
	b = append(b, argv...)
	return append(b, env...), nil
}

// appendPadded appends s and NULs to n bytes; len(s) < n.
func appendPadded(b []byte, s string, n int) []byte {
	b = append(b, s...)
	return append(b, make([]byte, n-len(s))...)
}

// cstrings is ss as NUL-terminated strings, one after the other.
func cstrings(what string, ss []string) ([]byte, error) {
	var n int
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("%s %q contains a NUL byte", what, s)
		}
		n += len(s) + 1
	}
	if n > maxExecBytes {
		return nil, fmt.Errorf("%d bytes of %ss, more than the init takes (%d)", n, what, maxExecBytes)
	}
	b := make([]byte, 0, n)
	for _, s := range ss {
		b = append(append(b, s...), 0)
	}
	return b, nil
}

// MsgType is the type of a message from the init.
type MsgType uint32

// Message types.
const (
	MsgNeedIDMap MsgType = C.RONLY_MSG_NEED_IDMAP // init is in its user namespace; write its id maps
	MsgIDMapDone MsgType = C.RONLY_MSG_IDMAP_DONE // parent → init
	MsgError     MsgType = C.RONLY_MSG_ERROR      // a step failed
	MsgReady     MsgType = C.RONLY_MSG_READY      // sandbox built; Value is the Landlock ABI enforced
	MsgWarn      MsgType = C.RONLY_MSG_WARN       // non-fatal degradation
	MsgPTY       MsgType = C.RONLY_MSG_PTY        // the master of the session's pty rides along
	// MsgListener names the seccomp listener's descriptor in the sender
	// (Value), which the supervisor takes with pidfd_getfd: once the
	// filter is loaded, sendmsg is mediated and cannot carry it.
	MsgListener MsgType = C.RONLY_MSG_LISTENER
	// MsgListenerTaken answers MsgListener (Err: why not).
	MsgListenerTaken MsgType = C.RONLY_MSG_LISTENER_TAKEN
)

// Flags of a MsgReady.
const (
	ReadyListener uint32 = C.RONLY_READY_LISTENER // the seccomp listener was handed over (MsgListener)
	ReadyFallback uint32 = C.RONLY_READY_FALLBACK // a listener was refused; plain errnos, uncounted
	ReadyKillable uint32 = C.RONLY_READY_KILLABLE // a notified call is not interrupted by a signal once received
)

// Msg is one message between the init and the supervisor.
type Msg struct {
	Type   MsgType
	Err    syscall.Errno
	Value  int32
	Flags  uint32
	Step   string
	Detail string
}

// MsgSize is the size of one message record: type, err, value, flags,
// step, detail.
const MsgSize = C.sizeof_struct_ronly_msg

// msgStepOff is where a message's step begins, after its four 32-bit
// fields; the detail follows the step.
const msgStepOff = 4 * 4

// DecodeMsg decodes one message record.
func DecodeMsg(b []byte) (Msg, error) {
	if len(b) < MsgSize {
		return Msg{}, fmt.Errorf("short message from init: %d bytes of %d", len(b), MsgSize)
	}
	le := binary.LittleEndian
	return Msg{Type: MsgType(le.Uint32(b)), Err: syscall.Errno(int32(le.Uint32(b[4:]))), Value: int32(le.Uint32(b[8:])),
		Flags: le.Uint32(b[12:]), Step: cstring(b[msgStepOff : msgStepOff+msgStepLen]),
		Detail: cstring(b[msgStepOff+msgStepLen : msgStepOff+msgStepLen+msgDetailLen])}, nil
}

// WriteMsg encodes m to w.
func WriteMsg(w io.Writer, m Msg) error {
	le := binary.LittleEndian
	b := make([]byte, msgStepOff, MsgSize)
	le.PutUint32(b, uint32(m.Type))
	le.PutUint32(b[4:], uint32(int32(m.Err)))
	le.PutUint32(b[8:], uint32(m.Value))
	le.PutUint32(b[12:], m.Flags)
	b = appendPadded(b, truncate(m.Step, msgStepLen-1), msgStepLen)
	b = appendPadded(b, truncate(m.Detail, msgDetailLen-1), msgDetailLen)
	_, err := w.Write(b)
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Error is a failed init step, as the init reported it.
type Error struct {
	Step, Detail string
	Errno        syscall.Errno
}

func (e *Error) Error() string {
	s := e.Step
	if e.Detail != "" {
		s += " " + e.Detail
	}
	if e.Errno != 0 {
		s += ": " + e.Errno.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Errno }
