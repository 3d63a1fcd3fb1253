package cinit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"syscall"

	"ronly.dev/ronly/shims"
)

// These mirror records.h.
const (
	magic          = 0x594c4e52
	recordsVersion = 8
	pathMax        = 4096
	// MaxMounts is how many mount records the init takes.
	MaxMounts = 1024
	// MaxUsernsLimits is how many user namespace limits the init takes.
	MaxUsernsLimits = 16
)

// Flags of Config.
const (
	FlagUserNS        uint32 = 0x1  // create a user namespace; the parent writes the id maps
	FlagNetNS         uint32 = 0x2  // private network namespace with lo up
	FlagKeepDACRead   uint32 = 0x4  // keep CAP_DAC_READ_SEARCH inside
	FlagSeccompNotify uint32 = 0x8  // load the filter with a user-notification listener
	FlagPIDNS         uint32 = 0x10 // private PID namespace with its own /proc and a tiny PID 1
	// FlagPTY puts a pty of the sandbox's own devpts on stdin, as the
	// controlling terminal of a new session; its master comes back in a
	// MsgPTY. FlagPTYOut and FlagPTYErr put it on stdout and stderr too.
	FlagPTY    uint32 = 0x20
	FlagPTYOut uint32 = 0x40
	FlagPTYErr uint32 = 0x80
)

// MountKind says what the init does with a Mount.
type MountKind uint32

// Mount kinds, applied in record order.
const (
	// 1, 4 and 6 were the socket covers, retired (the supervisor
	// mediates connect now); their numbers are not reused.
	MountTmpfs  MountKind = 2 // fresh writable tmpfs
	MountBindRW MountKind = 3 // host directory bound writable at the same path
	// MountShim puts this binary at /dev/ronly-shims/NAME (Path "/NAME").
	MountShim MountKind = 5
	// MountBindRO binds Path, a directory or file inside a writable bind
	// made by an earlier record, read-only onto itself: the init opens it
	// without following symlinks and mounts through that descriptor.
	MountBindRO MountKind = 7
	// MountPin is MountBindRO left writable: a mount point cannot be
	// renamed, removed or replaced from inside.
	MountPin MountKind = 8
	// MountHide binds an empty read-only file over Path, a regular file
	// (a kubeconfig, a client key: go/sandbox/creds.go).
	MountHide MountKind = 9
	// MountHideDir covers Path, a directory (a service-account token
	// volume), with a read-only tmpfs of mode Mode that holds what the
	// MountShow records right after it name.
	MountHideDir MountKind = 10
	// MountShow is the name filepath.Base(Path) in the MountHideDir
	// before it: Source, a host file, bound read-only, or an empty file
	// when Source is "".
	MountShow MountKind = 11
)

// ShimDir is where the init puts the shims inside the sandbox.
const ShimDir = shims.Dir

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
}

// UsernsLimit is one /proc/sys/user limit of the session's user namespace.
type UsernsLimit struct {
	Name  string // max_inotify_instances, max_user_namespaces…
	Value uint64
}

type header struct {
	Magic, Version, Flags, NMounts, BPFLen, LandlockABI uint32
	FallbackLen, ReportFD                               uint32
	UsernsLimits                                        [MaxUsernsLimits]usernsLimitRecord
}

type usernsLimitRecord struct {
	Name  [32]byte
	Value uint64
}

type mountRecord struct {
	Kind, Mode uint32
	Size       uint64
	Dev, Ino   uint64
	Path       [pathMax]byte
	Source     [pathMax]byte
}

// MarshalBinary encodes c as records.h lays it out.
func (c *Config) MarshalBinary() ([]byte, error) {
	if len(c.BPF)%8 != 0 || len(c.Fallback)%8 != 0 {
		return nil, fmt.Errorf("BPF programs of %d and %d bytes are not whole numbers of instructions", len(c.BPF), len(c.Fallback))
	}
	if len(c.Mounts) > MaxMounts {
		return nil, fmt.Errorf("%d mount records, more than the init takes (%d)", len(c.Mounts), MaxMounts)
	}
	var b bytes.Buffer
	h := header{Magic: magic, Version: recordsVersion, Flags: c.Flags, NMounts: uint32(len(c.Mounts)),
		BPFLen: uint32(len(c.BPF)), LandlockABI: c.LandlockABI, FallbackLen: uint32(len(c.Fallback)), ReportFD: c.ReportFD}
	if len(c.UsernsLimits) > MaxUsernsLimits {
		return nil, fmt.Errorf("%d user namespace limits, more than the init takes (%d)", len(c.UsernsLimits), MaxUsernsLimits)
	}
	for i, l := range c.UsernsLimits {
		if l.Name == "" || len(l.Name) >= len(h.UsernsLimits[i].Name) || strings.ContainsAny(l.Name, "/.") {
			return nil, fmt.Errorf("user namespace limit %q: not a file name in /proc/sys/user", l.Name)
		}
		copy(h.UsernsLimits[i].Name[:], l.Name)
		h.UsernsLimits[i].Value = l.Value
	}
	binary.Write(&b, binary.LittleEndian, &h)
	for _, m := range c.Mounts {
		if len(m.Path) == 0 || m.Path[0] != '/' || len(m.Path) >= pathMax || len(m.Source) >= pathMax {
			return nil, fmt.Errorf("mount path %q: must be absolute and shorter than %d bytes", m.Path, pathMax)
		}
		r := mountRecord{Kind: uint32(m.Kind), Mode: m.Mode, Size: m.Size, Dev: m.Dev, Ino: m.Ino}
		copy(r.Path[:], m.Path)
		copy(r.Source[:], m.Source)
		binary.Write(&b, binary.LittleEndian, &r)
	}
	b.Write(c.BPF)
	b.Write(c.Fallback)
	return b.Bytes(), nil
}

// MsgType is the type of a message from the init.
type MsgType uint32

// Message types.
const (
	MsgNeedIDMap MsgType = 1 // init is in its user namespace; write its id maps
	MsgIDMapDone MsgType = 2 // parent → init
	MsgError     MsgType = 3 // a step failed
	MsgReady     MsgType = 4 // sandbox built; Value is the Landlock ABI enforced
	MsgWarn      MsgType = 5 // non-fatal degradation
	MsgPTY       MsgType = 6 // the master of the session's pty rides along
	// MsgListener names the seccomp listener's descriptor in the sender
	// (Value), which the supervisor takes with pidfd_getfd: once the
	// filter is loaded, sendmsg is mediated and cannot carry it.
	MsgListener MsgType = 7
	// MsgListenerTaken answers MsgListener (Err: why not).
	MsgListenerTaken MsgType = 8
)

// Flags of a MsgReady.
const (
	ReadyListener uint32 = 0x1 // the seccomp listener was handed over (MsgListener)
	ReadyFallback uint32 = 0x2 // a listener was refused; plain errnos, uncounted
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

type msgRecord struct {
	Type   uint32
	Err    int32
	Value  int32
	Flags  uint32
	Step   [64]byte
	Detail [256]byte
}

// MsgSize is the size of one message record.
const MsgSize = 4*4 + 64 + 256

// DecodeMsg decodes one message record.
func DecodeMsg(b []byte) (Msg, error) {
	var r msgRecord
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &r); err != nil {
		return Msg{}, fmt.Errorf("short message from init: %w", err)
	}
	return Msg{Type: MsgType(r.Type), Err: syscall.Errno(r.Err), Value: r.Value, Flags: r.Flags,
		Step: cstring(r.Step[:]), Detail: cstring(r.Detail[:])}, nil
}

// WriteMsg encodes m to w.
func WriteMsg(w io.Writer, m Msg) error {
	r := msgRecord{Type: uint32(m.Type), Err: int32(m.Err), Value: m.Value, Flags: m.Flags}
	copy(r.Step[:len(r.Step)-1], m.Step)
	copy(r.Detail[:len(r.Detail)-1], m.Detail)
	return binary.Write(w, binary.LittleEndian, &r)
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
