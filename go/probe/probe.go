// Package probe is ronly's battery of operations, run from inside a sandbox
// to show what the kernel lets through. Each Op performs one operation with
// raw system calls and reports nil when it succeeded or the errno it got.
//
// Hostile operations try to change the host (write a canary file, signal a
// canary process, remount the root read-write, reach a hidden socket...):
// each must fail with one of the errnos in its Want list. Everyday
// operations are the normal work an agent does in its scratch space: each
// must succeed.
//
// Every operation is written so that, if the sandbox lets it through, the
// harm stays on test-owned canaries or is undone at once: open-for-write
// only opens, setters write the value already there, kernel calls get an
// argument the kernel rejects after its permission check. The canaries are
// then checked from outside by the caller.
package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kind says whether an operation must fail or must succeed.
type Kind string

// Kinds.
const (
	Hostile  Kind = "hostile"  // must fail with an errno in Want
	Everyday Kind = "everyday" // must succeed
)

// Names inside Targets.Dir.
const (
	SubName   = "sub"   // a subdirectory of the canary directory
	File2Name = "file2" // a second file in the canary directory
)

// Targets are the host's canaries, set up by whoever runs the probe.
type Targets struct {
	// File is a canary file on the host, non-empty.
	File string `json:"file"`
	// Dir is a canary directory holding SubName (a directory) and File2Name.
	Dir string `json:"dir"`
	// Pid is a canary process owned by the test, started with Dir as its
	// working directory and File open read-write as descriptor PidFD.
	Pid   int `json:"pid"`
	PidFD int `json:"pid_fd"`
	// Socket is the path of a listening unix socket on the host (under /run,
	// so the sandbox should hide it).
	Socket string `json:"socket"`
	// SocketLink is a hard link to Socket, made on the host; Dgram is a
	// datagram socket beside it. Both "" when there is no Socket.
	SocketLink string `json:"socket_link,omitempty"`
	Dgram      string `json:"dgram,omitempty"`
	// Abstract is the name of a listening abstract unix socket, without the
	// leading NUL.
	Abstract string `json:"abstract"`
	// FDs are descriptor numbers the launcher of ronly passed on, each open
	// read-write on File; DirFD is one open on Dir. The sandbox must close them.
	FDs   []int `json:"fds"`
	DirFD int   `json:"dir_fd"`
	// RWDir is a host directory passed with --rw (empty: none).
	RWDir string `json:"rw_dir"`
	// Writable are other directories the sandbox makes writable on
	// purpose (--writable, --rw, the ci profile's workspace and HOME).
	Writable []string `json:"writable,omitempty"`
	// Marker makes the names the probe creates unique, so the caller can
	// look for them on the host (/dev/shm) afterwards.
	Marker string `json:"marker"`
	// Stdio are the host objects the runner gave ronly as descriptors 0-2
	// (a file, an O_APPEND log, its terminal), by number: the sandbox
	// must give the command streams of its own instead (stdio.go).
	Stdio map[int]FileID `json:"stdio,omitempty"`
	// ReusePort is a TCP port on 127.0.0.1 where a host listener set
	// SO_REUSEPORT (0: none; the operation that needs it is skipped).
	ReusePort int `json:"reuse_port,omitempty"`
	// NoNS: the session makes no namespaces (landlock-only mode). Its
	// scratch space is $TMPDIR, a directory of its own, not a private
	// /tmp, and /dev and every mount are the host's.
	NoNS bool `json:"no_ns,omitempty"`
}

// Tmp is the session's scratch directory: /tmp, or in landlock-only mode
// the $TMPDIR the supervisor gave the session.
func (t Targets) Tmp() string {
	if d := os.Getenv("TMPDIR"); t.NoNS && filepath.IsAbs(d) {
		return d
	}
	return "/tmp"
}

func (t Targets) sub() string   { return filepath.Join(t.Dir, SubName) }
func (t Targets) file2() string { return filepath.Join(t.Dir, File2Name) }

// ShmName is the file the probe creates in the sandbox's /dev/shm; it must
// not appear in the host's.
func (t Targets) ShmName() string { return "ronly-probe-" + t.Marker }

// Op is one operation.
type Op struct {
	Name string
	Kind Kind
	// Run performs the operation and returns nil if it succeeded, else the
	// errno (a syscall.Errno), or a SkipError when it does not apply here.
	Run func(t Targets) error
	// Want lists the errnos a hostile operation may fail with.
	Want []unix.Errno
}

// SkipError says an operation does not apply on this machine.
type SkipError string

func (e SkipError) Error() string { return "skipped: " + string(e) }

func skip(format string, a ...any) error { return SkipError(fmt.Sprintf(format, a...)) }

// Result is what one operation did.
type Result struct {
	Name    string   `json:"name"`
	Kind    Kind     `json:"kind"`
	Errno   string   `json:"errno,omitempty"`   // "" when it succeeded
	Error   string   `json:"error,omitempty"`   // the error's text, if any
	Want    []string `json:"want,omitempty"`    // for hostile operations
	Skipped string   `json:"skipped,omitempty"` // why it did not run
	Detail  string   `json:"detail,omitempty"`  // what a successful operation reached
	Pass    bool     `json:"pass"`
}

// Succeeded says whether the operation went through.
func (r Result) Succeeded() bool { return r.Error == "" && r.Skipped == "" }

// breachError is an operation that went through, with what it reached: Run
// reports it like nil.
type breachError string

func (e breachError) Error() string { return string(e) }

func breach(format string, a ...any) error { return breachError(fmt.Sprintf(format, a...)) }

// errnoOrNil turns a raw system call's errno into Run's convention.
func errnoOrNil(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Run runs each operation in order and says what happened. A panicking
// operation is reported as failed, not propagated. With invalid targets
// (see Validate) nothing runs and every result carries the reason.
func Run(ops []Op, t Targets) []Result {
	out := make([]Result, 0, len(ops))
	bad := t.Validate()
	for _, op := range ops {
		if bad != nil {
			out = append(out, Result{Name: op.Name, Kind: op.Kind, Error: bad.Error()})
			continue
		}
		out = append(out, runOne(op, t))
	}
	return out
}

func runOne(op Op, t Targets) (r Result) {
	r = Result{Name: op.Name, Kind: op.Kind}
	for _, w := range op.Want {
		r.Want = append(r.Want, ErrnoName(w))
	}
	defer func() {
		if p := recover(); p != nil {
			r.Error = fmt.Sprintf("panic: %v\n%s", p, debug.Stack())
			r.Errno, r.Pass = "", false
		}
	}()
	err := op.Run(t)
	var skipped SkipError
	var reached breachError
	switch {
	case err == nil:
		r.Pass = op.Kind == Everyday
	case errors.As(err, &reached):
		r.Detail, r.Pass = string(reached), op.Kind == Everyday
	case errors.As(err, &skipped):
		r.Skipped, r.Pass = string(skipped), true
	default:
		r.Error = err.Error()
		var en syscall.Errno
		if errors.As(err, &en) {
			r.Errno = ErrnoName(en)
			r.Pass = op.Kind == Hostile && wanted(en, op.Want)
		}
	}
	return r
}

func wanted(e unix.Errno, want []unix.Errno) bool {
	for _, w := range want {
		if e == w {
			return true
		}
	}
	return false
}

// ErrnoName is the symbolic name of e ("EPERM"), or its number.
func ErrnoName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// WriteJSON writes results as one JSON array.
func WriteJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

// ReadJSON reads what WriteJSON wrote.
func ReadJSON(r io.Reader) ([]Result, error) {
	var rs []Result
	err := json.NewDecoder(r).Decode(&rs)
	return rs, err
}

// ErrOnHost is CheckInside's answer when this process is not in a sandbox.
var ErrOnHost = errors.New("refusing to run: this process is not inside a sandbox")

// CheckInside returns nil only with positive evidence that this process is
// in a sandbox: its mount namespace differs from PID 1's or, when PID 1's
// cannot be read (inside a user namespace, but also on hosts whose PID 1 is
// protected), from its parent's. If neither can be read, it must at least
// run with no_new_privs under a seccomp filter, as a sandboxed process does.
func CheckInside() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("%w: cannot read my own mount namespace: %v", ErrOnHost, err)
	}
	for _, other := range []string{"/proc/1/ns/mnt", fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid())} {
		ns, err := os.Readlink(other)
		if err != nil {
			continue
		}
		if ns == self {
			return fmt.Errorf("%w: same mount namespace as %s", ErrOnHost, other)
		}
		return nil
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("%w: cannot read /proc/self/status: %v", ErrOnHost, err)
	}
	var nnp, filtered bool
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "NoNewPrivs:" {
			nnp = f[1] == "1"
		}
		if len(f) == 2 && f[0] == "Seccomp:" {
			filtered = f[1] == "2"
		}
	}
	if !nnp || !filtered {
		return fmt.Errorf("%w: no namespace to compare with, and not under no_new_privs and a seccomp filter", ErrOnHost)
	}
	return nil
}

// Validate refuses targets that would aim an operation at something other
// than a canary: a pid of 0 or 1 (kill(0) signals the whole process group),
// relative paths (resolved against the working directory), empty names.
func (t Targets) Validate() error {
	switch {
	case t.Pid <= 1:
		return fmt.Errorf("targets: pid %d is not a canary process", t.Pid)
	case !filepath.IsAbs(t.File) || !filepath.IsAbs(t.Dir) || !filepath.IsAbs(t.Socket):
		return fmt.Errorf("targets: file %q, dir %q and socket %q must be absolute paths", t.File, t.Dir, t.Socket)
	case t.RWDir != "" && !filepath.IsAbs(t.RWDir):
		return fmt.Errorf("targets: rw_dir %q must be an absolute path", t.RWDir)
	case slices.ContainsFunc(t.Writable, func(p string) bool { return !filepath.IsAbs(p) }):
		return fmt.Errorf("targets: writable %q must be absolute paths", t.Writable)
	case t.Abstract == "" || t.Marker == "":
		return fmt.Errorf("targets: abstract socket name and marker must be set")
	case t.PidFD < 0 || t.DirFD < 0:
		return fmt.Errorf("targets: negative descriptor number")
	}
	for fd := range t.Stdio {
		if fd < 0 || fd > 2 {
			return fmt.Errorf("targets: stdio descriptor %d is not 0, 1 or 2", fd)
		}
	}
	for _, fd := range t.FDs {
		if fd < 3 {
			return fmt.Errorf("targets: inherited descriptor %d is stdio, not a canary", fd)
		}
	}
	return nil
}

// All is the whole battery: hostile operations first, then everyday ones.
func All() []Op {
	var ops []Op
	for _, part := range [][]Op{fsHostile(), procHostile(), mountHostile(), kernelHostile(), netHostile(), gitHostile(), setidHostile(), schedHostile(), socketHostile(), stdioHostile(), metadataHostile(), everyday(), setidEveryday(), schedEveryday(), socketEveryday(), signalsEveryday()} {
		ops = append(ops, part...)
	}
	return ops
}
