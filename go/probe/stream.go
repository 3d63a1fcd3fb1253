package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A streamed run (RunStream) writes one JSON Event per line as it goes, so
// that whoever reads it knows which operation was running if the run ends
// early: an operation that lets a sandbox kill its own supervisor ends it.
// It also stops as soon as the canaries change: an operation that a
// partial sandbox let through (a signal that killed the canary process)
// must not make every later operation aimed at the canaries fail for the
// wrong reason (ESRCH). The caller makes fresh canaries and runs the rest.

// Event is one line of a streamed run.
type Event struct {
	// Index is the operation's position in the list the run was given
	// (All(), for ronly).
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	// Start: the operation is about to run.
	Start bool `json:"start,omitempty"`
	// Result: what it did.
	Result *Result `json:"result,omitempty"`
	// Stop: the run stopped before this operation, because the canaries
	// changed since it began; the text says how.
	Stop string `json:"stop,omitempty"`
}

// socketOps need Targets.Socket, a listening socket file under /run. When
// the caller could make none (no writable directory under /run), Socket is
// empty and RunStream skips them.
var socketOps = map[string]bool{
	"connect hidden unix socket under /run":         true,
	"connect hidden socket via /proc/<canary>/root": true,
	"connect hidden socket via /proc/<parent>/root": true,
	"umount2 the cover of the hidden socket":        true,
	"connect canary socket by a hard link":          true,
	"connect canary socket by a symlink in /tmp":    true,
	"connect canary socket by a relative path":      true,
	"sendto datagram canary socket":                 true,
	"sendmsg datagram canary socket":                true,
	"sendmmsg datagram canary socket":               true,
	"connect datagram canary socket":                true,
}

// settle is how long RunStream waits before it looks at the canaries a
// second time.
const settle = 300 * time.Microsecond

// seeCanaryOps are everyday operations that need to see the canary
// process: a sandbox with a PID namespace of its own (ronly's ci profile,
// or Landlock below ABI 6) hides it on purpose, and RunStream skips them.
var seeCanaryOps = map[string]bool{
	"see the canary in /proc": true,
}

// RunStream runs ops[i] for each i in indices, in that order, writing
// Events to w. It returns an error, having run nothing, for invalid
// targets or indices; a write error stops it.
func RunStream(w io.Writer, ops []Op, indices []int, t Targets) error {
	tv := t
	noSocket := t.Socket == ""
	if noSocket {
		tv.Socket = "/run/ronly-probe-no-socket" // for Validate only
	}
	if err := tv.Validate(); err != nil {
		return err
	}
	for _, i := range indices {
		if i < 0 || i >= len(ops) {
			return fmt.Errorf("no operation %d (there are %d)", i, len(ops))
		}
	}
	emit := func(e Event) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	start := fingerprint(t)
	hidden := canaryState(t.Pid) == "gone"
	for _, i := range indices {
		op := ops[i]
		now := fingerprint(t)
		if slices.Equal(now, start) {
			// Once more after a moment, for a kill caught between its
			// signal leaving the pending set and PF_EXITING being set.
			time.Sleep(settle)
			now = fingerprint(t)
		}
		if !slices.Equal(now, start) {
			return emit(Event{Index: i, Name: op.Name, Stop: "the canaries changed: " + fingerprintDiff(start, now)})
		}
		if err := emit(Event{Index: i, Name: op.Name, Start: true}); err != nil {
			return err
		}
		var r Result
		switch {
		case noSocket && socketOps[op.Name]:
			r = Result{Name: op.Name, Kind: op.Kind, Skipped: "no canary socket: no writable directory under /run"}
		case hidden && seeCanaryOps[op.Name]:
			r = Result{Name: op.Name, Kind: op.Kind, Skipped: "this sandbox has a PID namespace of its own: the host's processes are hidden on purpose"}
		default:
			r = runOne(op, tv)
		}
		if err := emit(Event{Index: i, Name: op.Name, Result: &r}); err != nil {
			return err
		}
	}
	return nil
}

// ReadStream reads the Events a streamed run wrote, to the end of r.
// Lines that are not Events (a line cut short when the run was killed,
// what else shared the stream) are returned as rest, in order.
func ReadStream(r io.Reader) (events []Event, rest []string, err error) {
	b, err := io.ReadAll(r)
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var e Event
		if json.Unmarshal([]byte(l), &e) != nil || e.Name == "" {
			rest = append(rest, l)
			continue
		}
		events = append(events, e)
	}
	return events, rest, err
}

// fingerprint describes the canaries as seen from inside: each canary
// path's inode, size, owner, mode and times, and whether the canary
// process is alive. Reading does not change it.
func fingerprint(t Targets) []string {
	var out []string
	for _, p := range []string{t.File, t.Dir, t.file2(), t.sub()} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			out = append(out, p+": "+err.Error())
			continue
		}
		out = append(out, fmt.Sprintf("%s: ino=%d mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%d.%09d ctime=%d.%09d",
			p, st.Ino, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
	}
	// Not visible at all (a PID namespace) stays "gone" throughout.
	return append(out, fmt.Sprintf("canary process %d: %s", t.Pid, canaryState(t.Pid)))
}

// pfExiting is PF_EXITING in the flags of /proc/<pid>/stat.
const pfExiting = 0x4

// canaryState is "alive" for a canary process that runs and is not about
// to die. A SIGKILL takes a moment to kill: until the process is a zombie,
// the signal shows as pending (SigPnd, ShdPnd) and then the process as
// exiting (PF_EXITING), so that an operation that killed it is seen before
// the next one runs, not after (when the next one would fail with ESRCH
// only because the canary is gone).
func canaryState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 7 {
		return "unreadable"
	}
	if f[0] != "S" && f[0] != "R" && f[0] != "D" {
		return "state " + f[0]
	}
	if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&pfExiting != 0 {
		return "exiting"
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "gone"
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && m&(1<<(unix.SIGKILL-1)) != 0 {
			return "SIGKILL pending"
		}
	}
	return "alive"
}

func fingerprintDiff(a, b []string) string {
	var diffs []string
	for i := range a {
		if i < len(b) && a[i] != b[i] {
			diffs = append(diffs, fmt.Sprintf("%s -> %s", a[i], b[i]))
		}
	}
	return strings.Join(diffs, "; ")
}

// CheckConfined is CheckInside for a sandbox that may lack some of ronly's
// layers, as `ronly probe` builds to tell which layer refuses what: without
// seccomp, and as root without a user namespace, neither PID 1's nor the
// parent's namespaces can be read to compare. It returns nil when
// CheckInside does, or when this process bears the marks ronly's init
// always leaves: no_new_privs, no capability in its bounding set but
// CAP_DAC_READ_SEARCH, and a read-only root. A host shell has none of them.
func CheckConfined() error {
	inside := CheckInside()
	if inside == nil {
		return nil
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return inside
	}
	var nnp bool
	bnd := ^uint64(0)
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "NoNewPrivs:":
			nnp = f[1] == "1"
		case "CapBnd:":
			if v, err := strconv.ParseUint(f[1], 16, 64); err == nil {
				bnd = v
			}
		}
	}
	var st unix.Statfs_t
	roRoot := unix.Statfs("/", &st) == nil && st.Flags&unix.ST_RDONLY != 0
	if nnp && bnd&^(1<<unix.CAP_DAC_READ_SEARCH) == 0 && roRoot {
		return nil
	}
	return fmt.Errorf("%w; and not confined either: no_new_privs=%t, capability bounding set %#x, read-only root=%t", inside, nnp, bnd, roRoot)
}
