package sandbox

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/cgroup"
	"ronly.dev/ronly/go/writewatch/rawtp"
	"ronly.dev/ronly/go/writewatch/remote"
	cinit "ronly.dev/ronly/init"
)

// PendingCounter is a write counter being attached (StartWriteCounter),
// until a session claims it or it is closed.
type PendingCounter struct {
	events bool
	done   chan struct{}
	w      counter
	err    error

	mu    sync.Mutex
	owner owner
	ended chan struct{} // closed once Close has ended the helper
	// watched: watchWrites took the helper (the session's goroutine
	// only); abandon leaves it to watchWrites' stop then.
	watched bool
}

// owner is who ends a PendingCounter's helper.
type owner int

const (
	ownerCaller  owner = iota // StartWriteCounter's caller, with Close
	ownerSession              // a session's start claimed it: watchWrites or abandon
	ownerClosing              // Close is ending it
)

// counter is a write counter a session points at its cgroup: the helper,
// ronly-writewatch (remote.Watch), or the shared program held by this
// process (sharedHere).
type counter interface {
	Add(cgroupID uint64) error
	Events(func(remote.Event))
	Hook() string
	Remove() (map[string]uint64, error)
	Close() error
	Pid() int // the helper's, 0 for none
}

// sharedHere is the counting program every counting session shares,
// joined or attached by this process with bare bpf(2) calls (rawtp): on a
// kernel that cannot run fexit programs it is the program the helper
// would attach, and a session that only counts gets it without the
// helper's start, a second Go runtime's. Events (an audit log) and fexit
// programs need the helper.
type sharedHere struct {
	w  *rawtp.Watch
	id uint64
}

func (c *sharedHere) Add(id uint64) error {
	c.id = id
	return c.w.Add(id)
}

// Events is never asked of it: a session that wants events has a helper.
func (c *sharedHere) Events(func(remote.Event))          {}
func (c *sharedHere) Hook() string                       { return c.w.Hook() }
func (c *sharedHere) Remove() (map[string]uint64, error) { return c.w.Remove(c.id) }
func (c *sharedHere) Close() error                       { return c.w.Close() }
func (c *sharedHere) Pid() int                           { return 0 }

// countHere says whether a counter counts in this process: without events
// and where the kernel cannot run fexit programs, whose set (80-odd
// programs, one per write-class syscall, and the kernel's BTF to find
// them) stays the helper's.
func countHere(events bool) bool { return !events && !rawtp.FexitPossible() }

// StartWriteCounter begins attaching a write counter on a goroutine, for a
// session Run will start: the helper's start (a Go runtime, the eBPF
// library's init, loading and attaching the programs), or joining or
// loading the shared program here (sharedHere), then overlaps
// whatever the caller does before Run, parsing its flags for one, instead
// of running after them. events asks for each refusal (an audit log,
// Options.Refused); without, the counter counts only. Pass the result as
// Options.WriteCounter. nil when this process cannot count (not root).
//
// The caller owns it until a session claims it and must Close it once Run
// has returned, or when it calls no Run: Close does nothing to a counter
// a session claimed (the session closes that), and otherwise ends the
// helper and waits for it.
//
// When the C side already started the helper, before the Go runtime, for
// a command line that asked for counting (cinit.EarlyCounter), the counter
// adopts it: its start then also overlaps ronly's own runtime start and
// package init. One started with other programs than events asks for is
// ended, and another started.
func StartWriteCounter(events bool) *PendingCounter {
	early := cinit.TakeEarlyCounter()
	if os.Geteuid() != 0 {
		EndEarlyCounter(early)
		return nil
	}
	pc := &PendingCounter{events: events, done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(pc.done)
		if early != nil && early.Events == events {
			pc.set(remote.Adopt(early.Pid, early.Stdin, early.Stdout, early.Stderr))
			return
		}
		EndEarlyCounter(early)
		if countHere(events) {
			w, err := rawtp.Shared()
			pc.set(&sharedHere{w: w}, err)
			return
		}
		pc.set(remote.Start(events))
	}()
	return pc
}

// set records what starting the counter gave: w only without an error
// (a failed start's w is a nil pointer inside a non-nil interface).
func (pc *PendingCounter) set(w counter, err error) {
	if err != nil {
		pc.err = err
		return
	}
	pc.w = w
}

// EndEarlyCounter ends a helper the C side started that no session will
// use (the command line, parsed, does not count after all), and waits for
// it: no helper, nor a program it attached, outlives ronly. Safe on nil.
func EndEarlyCounter(early *cinit.EarlyCounter) {
	if early == nil {
		return
	}
	// Its start is let finish: stdin's EOF is how it is told to detach
	// whatever it attached and exit.
	if w, err := remote.Adopt(early.Pid, early.Stdin, early.Stdout, early.Stderr); err == nil {
		w.Close()
	}
}

// claim makes the counter the session's: false when it was claimed or
// closed before.
func (pc *PendingCounter) claim() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.owner != ownerCaller {
		return false
	}
	pc.owner = ownerSession
	return true
}

// Close ends the helper unless a session claimed it, and waits for it
// (until it has started, if it is still starting, then until it exits;
// or for the Close already ending it): neither it nor a program it
// attached is left behind. Safe on nil, more than once and at once.
func (pc *PendingCounter) Close() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	was := pc.owner
	if was == ownerCaller {
		pc.owner = ownerClosing
	}
	pc.mu.Unlock()
	switch was {
	case ownerCaller:
		pc.end()
		close(pc.ended)
	case ownerClosing:
		<-pc.ended
	}
}

// end ends the helper, once it has started.
func (pc *PendingCounter) end() {
	<-pc.done
	if pc.w != nil {
		pc.w.Close()
	}
}

// abandon ends the counter a start claimed if watchWrites never took it
// (the start failed before).
func (pc *PendingCounter) abandon() {
	if pc == nil || pc.watched {
		return
	}
	pc.end()
}

// startWrites begins attaching the write counter, when the policy asks
// for one, on a goroutine: loading and verifying the programs takes
// milliseconds, which overlap the cgroup's creation and the init's start
// instead of adding to them. nil when nothing is to be counted.
//
// The caller's Options.WriteCounter, begun earlier still, serves the first
// start that counts with the same events; a start after it (a fallback)
// begins its own, as the first did without one. One the session does not
// use is ended at once, on a goroutine (waiting for its start here would
// put it on the session's critical path): an unused helper must not keep
// programs attached while the session runs, nor be left to the killing
// of the session's leftovers. The caller's Close waits for that end.
//
// The counter sees every system call of a process in the session's cgroup
// that returns EROFS: with fexit programs on the write-class syscalls
// where the kernel has BPF trampolines (no other syscall on the host pays
// anything), else with a program at the sys_exit tracepoint (every syscall
// on the host pays while it is attached). The read-only mounts stay the
// enforcement; this only observes their answers, so nothing the sandboxed
// process controls decides anything. It needs root (CAP_BPF, CAP_PERFMON)
// and a cgroup v2 directory; without either, refused writes are refused
// but not counted, and the layers say so. An audit line carries the path
// the refused call named, as the process gave it (relative paths
// unresolved), read from its memory after the refusal: a record for
// people, which the process could falsify, and nothing here acts on it.
//
// Where the kernel cannot run fexit programs and no events are wanted
// (the usual case there), the supervisor holds the shared program itself
// (sharedHere). Else the counter runs in a process of its own,
// ronly-writewatch (see go/writewatch/remote), so that the session binary
// links no eBPF library; it is found beside ronly's executable or on PATH,
// and without it counting is unavailable and the layers and a warning say
// so.
//
// Without an audit log, which is the usual case, the session joins the
// counting programs every such session on the host shares: the cost is
// then one set's, however many sessions run. A session with an audit log
// needs its events and loads programs of its own.
func (s *session) startWrites() *PendingCounter {
	early := s.writeCounter
	s.writeCounter = nil // the first start's only
	pc := s.startCounter(early)
	if early != nil && pc != early {
		go early.Close()
	}
	return pc
}

// startCounter is the counter this start counts with (early, claimed,
// when it fits), and sets the layers' WriteCounter as far as known.
func (s *session) startCounter(early *PendingCounter) *PendingCounter {
	s.layers.WriteCounter = "off"
	if !s.p.CountWrites || s.p.NoWriteCounting {
		return nil
	}
	s.layers.WriteCounter = "unavailable"
	if os.Geteuid() != 0 {
		return nil
	}
	events := s.refused != nil
	if early != nil && early.events == events && early.claim() {
		return early
	}
	pc := StartWriteCounter(events) // not nil: root
	pc.claim()
	return pc
}

// watchWrites waits for the counter startWrites began and points it at the
// session's cgroup; the init is waiting for its records, so the command
// has not run yet and none of its refusals is missed.
//
// collect reads the counts, and end ends the helper, whose pid (0 for
// none) is returned so that the killing of the session's leftovers spares
// it. Both are called after that killing, for two reasons. The counts are
// then complete (the cgroup is empty, so no refusal of the session is
// still in flight, and those of its leftovers are counted too). And ending
// the helper can take long: the last counting session's helper detaches
// the fexit set, which on 6.1 takes it about 11 s (see
// writewatch.detachLater); the leftovers must not live on meanwhile. A
// helper killed while it detaches would also lose the hand-over to the
// kernel that makes that fast on 6.12.
func (s *session) watchWrites(g *cgroup.Group, pw *PendingCounter) (collect, end func(), helper int) {
	none := func() {}
	if pw == nil {
		return none, none, 0
	}
	pw.watched = true
	<-pw.done
	if pw.err != nil {
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", pw.err))
		return none, none, 0
	}
	w := pw.w
	if g == nil || g.ID() == 0 {
		w.Close()
		s.warn("refused writes are refused but not counted: the session has no cgroup v2 directory to count them by")
		return none, none, 0
	}
	if err := w.Add(g.ID()); err != nil {
		w.Close()
		s.warn(fmt.Sprintf("refused writes are refused but not counted: %v", err))
		return none, none, 0
	}
	if s.refused != nil {
		// The audit log wants each refusal; the counts come from the
		// program's map, which loses nothing when events are dropped.
		w.Events(func(e remote.Event) {
			s.refused(Refusal{Time: e.Time, PID: e.PID, Comm: e.Comm, Kind: RefusedWrite,
				What: writeOperation(e.Syscall), Path: e.Path, Errno: unix.EROFS})
		})
	}
	s.layers.WriteCounting = true
	s.layers.WriteCounter = w.Hook()
	return func() {
		counts, err := w.Remove()
		if err != nil {
			s.warn(fmt.Sprintf("refused writes: %v", err))
		}
		s.mu.Lock()
		for name, n := range counts {
			kind := string(RefusedWrite)
			if s.blocked[kind] == nil {
				s.blocked[kind] = map[string]uint64{}
			}
			s.blocked[kind][writeOperation(name)] += n
		}
		s.mu.Unlock()
	}, func() { w.Close() }, w.Pid()
}

// writeOperation names the operation a refused system call attempted,
// the label value of ronly_blocked_writes_total: the variants of one
// operation (unlink, unlinkat) count together.
func writeOperation(syscall string) string {
	switch syscall {
	case "open", "openat", "openat2", "creat":
		return "open"
	case "unlink", "unlinkat", "rmdir":
		return "unlink"
	case "rename", "renameat", "renameat2":
		return "rename"
	case "mkdir", "mkdirat":
		return "mkdir"
	case "link", "linkat":
		return "link"
	case "symlink", "symlinkat":
		return "symlink"
	case "chmod", "fchmod", "fchmodat", "fchmodat2":
		return "chmod"
	case "chown", "fchown", "lchown", "fchownat":
		return "chown"
	case "utime", "utimes", "utimensat", "futimesat":
		return "utime"
	case "truncate", "ftruncate":
		return "truncate"
	case "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "setxattrat", "removexattrat":
		return "xattr"
	case "mknod", "mknodat":
		return "mknod"
	}
	return syscall
}
