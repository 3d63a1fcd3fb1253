package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/audit"
)

// mountFlood calls mount(2) for the given seconds, as fast as Python goes
// (each call refused by the seccomp policy), and prints how many calls it
// made and how many were not refused with EPERM.
const mountFlood = `python3 -B -c '
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
n = bad = 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(100):
        if libc.syscall(165, b"none", b"/", b"tmpfs", 0, None) == 0 or ctypes.get_errno() != 1:
            bad += 1
        n += 1
print(n, bad)
' `

// TestAuditFlood: a session that provokes refusals in a loop for 5 s gets
// an audit log bounded by the rate limit, and every refusal is accounted
// for: counted in the metrics = written to the log + dropped, where the
// dropped ones are summed in "dropped" lines (one a second while dropping,
// and one at the end) and in ronly_audit_lines_dropped_total.
func TestAuditFlood(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	dir := userDir(t, 0, "ronly-e2e-flood-")
	auditLog, textfile := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "ronly.prom")
	const seconds = 5
	began := time.Now()
	r := b.sh(t, opts{}, []string{"--audit-log", auditLog, "--metrics-textfile", textfile}, mountFlood+strconv.Itoa(seconds))
	wall := time.Since(began).Seconds() // longer than the session: a generous bound
	var calls, bad uint64
	if _, err := fmt.Sscan(r.stdout, &calls, &bad); r.code != 0 || err != nil || bad != 0 {
		t.Fatalf("want every mount refused with EPERM:\n%s", r)
	}
	lim := audit.DefaultLimit
	if maxWritten := float64(lim.Burst) + lim.Rate*wall; float64(calls) < 2*maxWritten {
		t.Fatalf("only %d refusals in %.1f s: not a flood (the limit writes up to %.0f), the test proves nothing", calls, wall, maxWritten)
	}

	data, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	var written, dropped uint64
	var droppedLines int
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var e struct {
			Session, Kind string
			Count         *uint64
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if len(line) > 512 {
			t.Errorf("audit line of %d bytes: %q", len(line), line)
		}
		if e.Kind == "dropped" {
			if e.Count == nil || *e.Count == 0 || e.Session == "" {
				t.Errorf("dropped line without a count or session: %q", line)
				continue
			}
			dropped += *e.Count
			droppedLines++
			continue
		}
		written++
	}
	maxLines := float64(lim.Burst) + lim.Rate*wall + 1
	if float64(written) > maxLines {
		t.Errorf("%d entries written in %.1f s, more than the limit's %.0f (burst %d + %.0f/s)", written, wall, maxLines, lim.Burst, lim.Rate)
	}
	// One dropped line a second while dropping, and one at the end.
	if droppedLines < seconds-2 || float64(droppedLines) > wall+2 {
		t.Errorf("%d dropped lines in a %.1f s session, want about one a second", droppedLines, wall)
	}
	if maxSize := (maxLines + wall + 2) * 512; float64(len(data)) > maxSize {
		t.Errorf("audit log of %d bytes, more than %.0f", len(data), maxSize)
	}

	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	metric := func(name string) (sum uint64) {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\d+)$`)
		for _, m := range re.FindAllStringSubmatch(string(prom), -1) {
			v, _ := strconv.ParseUint(m[2], 10, 64)
			sum += v
		}
		return sum
	}
	if got := metric(`ronly_blocked_syscalls_total{syscall="mount"}`); got != calls {
		t.Errorf("ronly_blocked_syscalls_total{syscall=\"mount\"} %d, want the %d calls made", got, calls)
	}
	counted := metric("ronly_blocked_syscalls_total") + metric("ronly_blocked_writes_total") +
		metric("ronly_blocked_commands_total") + metric("ronly_blocked_api_calls_total")
	if written+dropped != counted {
		t.Errorf("%d refusals counted, but %d written + %d dropped = %d", counted, written, dropped, written+dropped)
	}
	if got := metric("ronly_audit_lines_dropped_total"); got != dropped {
		t.Errorf("ronly_audit_lines_dropped_total %d, the dropped lines say %d:\n%s", got, dropped, prom)
	}
}

// holdInotify runs script in a session (as root: a user namespace that
// maps every id), which takes inotify instances or watches until the
// kernel refuses, prints "<taken> <errno>" and holds them until its stdin
// closes. While it holds them, check runs on the host.
func holdInotify(t *testing.T, b bins, script string, check func(taken int, errno int)) {
	t.Helper()
	cmd := exec.Command(b.ronly, "--tmpfs-size", "256M", "--", "python3", "-B", "-c", script)
	cmd.Dir = "/"
	stdin, stdout, stderr := startPiped(t, cmd)
	defer func() {
		stdin.Close()
		io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			t.Errorf("session: %v\n%s", err, stderr.String())
		}
	}()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var taken, errno int
	if _, err := fmt.Sscan(line, &taken, &errno); err != nil {
		t.Fatalf("session said %q: %v\n%s", line, err, stderr.String())
	}
	check(taken, errno)
}

func hostLimit(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/user/" + name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestInotifyShare: a session that takes inotify instances until refused
// gets at most half of the host's per-user limit, and while it holds them
// root on the host can still create one. The session tries for more than
// the host's whole limit, so without a share of its own it would take
// them all.
func TestInotifyShare(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	max := hostLimit(t, "max_inotify_instances")
	script := fmt.Sprintf(`
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
fds, err = [], 0
while len(fds) < %d:
    fd = libc.inotify_init1(0)
    if fd < 0:
        err = ctypes.get_errno()
        break
    fds.append(fd)
print(len(fds), err, flush=True)
sys.stdin.read()
`, max+10)
	holdInotify(t, b, script, func(taken, errno int) {
		if taken > max/2 || taken == 0 || errno != int(unix.EMFILE) {
			t.Errorf("the session took %d of the host's %d inotify instances before errno %d; want at most %d, then EMFILE", taken, max, errno, max/2)
		}
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			t.Errorf("root on the host cannot create an inotify instance while the session holds %d: %v", taken, err)
			return
		}
		unix.Close(fd)
	})
}

// TestInotifyWatchesShare: the same for watches, a quarter of the host's
// limit: the session creates more files than that and watches each.
func TestInotifyWatchesShare(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	max := hostLimit(t, "max_inotify_watches")
	want := max / 4
	script := fmt.Sprintf(`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
os.mkdir("/tmp/w")
n, err = 0, 0
while n < %d:
    p = b"/tmp/w/%%d" %% n
    open(p, "wb").close()
    if libc.inotify_add_watch(fd, p, 2) < 0:
        err = ctypes.get_errno()
        break
    n += 1
print(n, err, flush=True)
sys.stdin.read()
`, want+1000)
	holdInotify(t, b, script, func(taken, errno int) {
		if taken > want || taken == 0 || errno != int(unix.ENOSPC) {
			t.Errorf("the session placed %d inotify watches (host limit %d) before errno %d; want at most %d, then ENOSPC", taken, max, errno, want)
		}
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			t.Fatalf("inotify_init1 on the host: %v", err)
		}
		defer unix.Close(fd)
		if _, err := unix.InotifyAddWatch(fd, t.TempDir(), unix.IN_MODIFY); err != nil {
			t.Errorf("root on the host cannot add an inotify watch while the session holds %d: %v", taken, err)
		}
	})
}
