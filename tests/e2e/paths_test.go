package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Paths ronly binds or writes on the host are never followed through a
// symlink a session could have planted: each test plants them as the red
// team did, and checks the host from outside afterwards.

// hostCanary is a host file and a host directory a hostile session would
// like ronly to write: root's, outside every --rw directory.
type hostCanary struct {
	file, dir string
}

func newHostCanary(t *testing.T) hostCanary {
	t.Helper()
	base := userDir(t, 0, "ronly-e2e-canary-")
	c := hostCanary{file: filepath.Join(base, "file"), dir: filepath.Join(base, "dir")}
	writeFile(t, 0, c.file, "canary\n", 0o644)
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, 0, filepath.Join(c.dir, "keep"), "keep\n", 0o644)
	return c
}

// check fails t if the canary file or directory changed.
func (c hostCanary) check(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(c.file); err != nil || string(b) != "canary\n" {
		t.Errorf("canary file %s changed: %q, %v", c.file, b, err)
	}
	if fi, err := os.Lstat(c.file); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("canary file %s: %v, %v", c.file, fi, err)
	}
	if names := dirNames(t, c.dir); len(names) != 1 || names[0] != "keep" {
		t.Errorf("canary directory %s holds %v, want only keep", c.dir, names)
	}
}

func oneLine(t *testing.T, r result, words ...string) {
	t.Helper()
	if r.code != 125 {
		t.Errorf("want exit 125:\n%s", r)
	}
	if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || lines[0] == "" {
		t.Errorf("want exactly one line on stderr, got %d:\n%s", len(lines), r.stderr)
	}
	for _, w := range words {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr does not name %q: %q", w, r.stderr)
		}
	}
}

// TestRWSymlinkRefused: a symlink at a --rw path, or above it, or at the
// ci profile's workspace, is refused up front: exit 125, one line naming
// the flag and the path, and the directory it points to is not bound (the
// command's touch never reaches it).
func TestRWSymlinkRefused(t *testing.T) {
	b := setup(t)
	c := newHostCanary(t)
	planted := userDir(t, 0, "ronly-e2e-planted-")
	link := filepath.Join(planted, "rw")
	if err := os.Symlink(c.dir, link); err != nil {
		t.Fatal(err)
	}
	above := filepath.Join(planted, "above")
	if err := os.Symlink(filepath.Dir(c.dir), above); err != nil {
		t.Fatal(err)
	}
	under := filepath.Join(above, "dir") // c.dir, through a symlinked parent
	for _, tc := range []struct {
		name, flag, path string
		flags            []string
	}{
		{"at the path", "--rw", link, []string{"--rw", link}},
		{"above the path", "--rw", under, []string{"--rw", under}},
		{"ci workspace", "--workspace", link, []string{"--profile", "ci", "--workspace", link}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.sh(t, opts{}, tc.flags, "touch "+tc.path+"/x")
			oneLine(t, r, tc.flag, tc.path)
			c.check(t)
		})
	}
}

// TestRWSwapRace: while a goroutine swaps a --rw path between a real
// directory and a symlink to the canary directory (atomically, with
// RENAME_EXCHANGE), 50 sessions touch a file through it. Each session binds
// the real directory or stops; from outside, the canary directory never
// gets the file.
func TestRWSwapRace(t *testing.T) {
	b := setup(t)
	c := newHostCanary(t)
	base := userDir(t, 0, "ronly-e2e-swap-")
	rw, spare := filepath.Join(base, "rw"), filepath.Join(base, "spare")
	if err := os.Mkdir(rw, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.dir, spare); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var swaps sync.WaitGroup
	swaps.Add(1)
	go func() {
		defer swaps.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Renameat2(unix.AT_FDCWD, rw, unix.AT_FDCWD, spare, unix.RENAME_EXCHANGE)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	const n, parallel = 50, 5
	codes, stops := make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			r := b.sh(t, opts{}, []string{"--rw", rw}, "touch "+rw+"/x 2>/dev/null")
			codes[i] = r.code
			if r.code == 125 {
				// Which check stopped it: validation, or the init
				// finding a symlink or another directory.
				stops[i] = "validation: " + r.stderr
				if strings.Contains(r.stderr, "no symlinks") || strings.Contains(r.stderr, "replaced since") {
					stops[i] = "init: " + r.stderr
				}
			}
			// 1: the bind was made, but the path was swapped again
			// while the session ran, so its touch went elsewhere (to
			// the read-only canary, or a bind the swap detached).
			if r.code != 0 && r.code != 1 && r.code != 125 {
				t.Errorf("session %d: want exit 0, 1 or 125:\n%s", i, r)
			}
		}(i)
	}
	wg.Wait()
	close(stop)
	swaps.Wait()
	c.check(t)
	tally, stopped, sample := map[int]int{}, map[string]int{}, map[string]string{}
	for i, code := range codes {
		tally[code]++
		if by, msg, ok := strings.Cut(stops[i], ": "); ok {
			stopped[by]++
			sample[by] = msg
		}
	}
	t.Logf("exit codes of %d sessions: %v; exit 125 by %v, e.g. %q", n, tally, stopped, sample)
}

// TestOutputsNotRedirected: a session with --report, --audit-log and
// --metrics-textfile in a directory it can write plants symlinks to a host
// canary at those names and at temporary names, then renames the directory
// away and puts a symlink to a canary directory in its place. From
// outside: the canaries are unchanged, and the report, audit log and
// textfile are plain files in the directory the user named, which the
// session moved.
func TestOutputsNotRedirected(t *testing.T) {
	b := setup(t)
	needTool(t, "python3")
	c := newHostCanary(t)
	rw := userDir(t, 0, "ronly-e2e-outputs-")
	out, moved := filepath.Join(rw, "out"), filepath.Join(rw, "moved")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"report.json", "audit.log", "ronly.prom"}
	var plant []string
	for _, n := range names {
		plant = append(plant, n, n+".lock", "."+n+".tmp", "."+n+".tmp0", "."+n+".tmpaaaaaaaaaaaa")
	}
	// The audit log is open since the start: the session moves it aside
	// before planting its symlink, and ronly goes on writing the file it
	// opened, now audit.log.kept.
	script := "cd " + out + " && mv audit.log audit.log.kept && " +
		"for n in " + strings.Join(plant, " ") + "; do ln -s " + c.file + " $n || exit 3; done; " +
		"cd / && mv " + out + " " + moved + " && ln -s " + c.dir + " " + out + " || exit 4; " +
		refuse + "1 0"
	r := b.sh(t, opts{}, []string{"--rw", rw,
		"--report", filepath.Join(out, "report.json"),
		"--audit-log", filepath.Join(out, "audit.log"),
		"--metrics-textfile", filepath.Join(out, "ronly.prom")}, script)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("want the planting to work and one EPERM:\n%s", r)
	}
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("a write failed:\n%s", r)
	}
	c.check(t)
	if fi, err := os.Lstat(out); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s: %v, %v; want the session's symlink left as it was", out, fi, err)
	}
	for _, n := range []string{"report.json", "audit.log.kept", "ronly.prom"} {
		p := filepath.Join(moved, n)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			t.Errorf("%s: %v, %v; want a plain, non-empty file", p, fi, err)
		}
	}
	var rep struct{ Session string }
	if b, err := os.ReadFile(filepath.Join(moved, "report.json")); err != nil || json.Unmarshal(b, &rep) != nil || rep.Session == "" {
		t.Errorf("report: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(moved, "audit.log.kept")); !strings.Contains(string(b), `"what":"unshare"`) || !strings.Contains(string(b), rep.Session) {
		t.Errorf("audit log does not hold the session's refused unshare: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(moved, "ronly.prom")); !strings.Contains(string(b), `ronly_blocked_syscalls_total{syscall="unshare"} 1`) {
		t.Errorf("textfile does not count the refused unshare: %q", b)
	}
	// The temporary names the session planted are still its symlinks:
	// ronly skipped them rather than writing through or removing them.
	for _, n := range plant {
		if fi, err := os.Lstat(filepath.Join(moved, n)); n != "report.json" && n != "ronly.prom" &&
			(err != nil || fi.Mode()&os.ModeSymlink == 0) {
			t.Errorf("%s: %v, %v; want the planted symlink", n, fi, err)
		}
	}
}

// TestAuditLogSymlinkRefused: a symlink at the --audit-log name, planted
// before the session (by an earlier one), is refused up front: ronly
// appends to the log through the name, and would append to the canary.
func TestAuditLogSymlinkRefused(t *testing.T) {
	b := setup(t)
	c := newHostCanary(t)
	dir := userDir(t, 0, "ronly-e2e-auditlink-")
	log := filepath.Join(dir, "audit.log")
	if err := os.Symlink(c.file, log); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.log")
	if err := os.Link(c.file, hard); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{log, hard} {
		r := b.sh(t, opts{}, []string{"--audit-log", p}, "touch "+dir+"/ran")
		oneLine(t, r, "--audit-log", p)
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Errorf("%s holds %v: the command ran", dir, names)
	}
	c.check(t)
}

// TestSpoolNotRedirected: a session whose exporter is down spools its
// report into a spool it can write; it plants symlinks there and swaps
// the spool for a symlink to a canary directory. From outside: the
// canaries are unchanged and the report is a plain file in the spool the
// user named, which the session moved.
func TestSpoolNotRedirected(t *testing.T) {
	b := setup(t)
	c := newHostCanary(t)
	rw := userDir(t, 0, "ronly-e2e-spool-")
	spool, moved := filepath.Join(rw, "spool"), filepath.Join(rw, "moved")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	plant := []string{"lock", "dropped", ".dropped.tmp", ".tmp"}
	script := "cd " + spool + " && for n in " + strings.Join(plant, " ") + "; do ln -s " + c.file + " $n || exit 3; done; " +
		"cd / && mv " + spool + " " + moved + " && ln -s " + c.dir + " " + spool + " || exit 4"
	r := b.sh(t, opts{}, []string{"--rw", rw, "--metrics-spool", spool,
		"--metrics-socket", filepath.Join(rw, "no-exporter.sock")}, script)
	if r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("want the planting to work and the report spooled:\n%s", r)
	}
	c.check(t)
	var spooled []string
	for _, n := range dirNames(t, moved) {
		fi, err := os.Lstat(filepath.Join(moved, n))
		if err == nil && fi.Mode().IsRegular() && strings.HasSuffix(n, ".json") {
			spooled = append(spooled, n)
		}
	}
	if len(spooled) != 1 {
		t.Errorf("moved spool holds %v, want one spooled report", dirNames(t, moved))
	}
}

// TestMetricsSocketNotFollowed: a session plants a symlink at the
// --metrics-socket name, in a directory it can write, to another socket
// of the host. From outside: that socket is never connected to, and the
// report waits in the spool instead.
func TestMetricsSocketNotFollowed(t *testing.T) {
	b := setup(t)
	rw := userDir(t, 0, "ronly-e2e-socket-")
	spool := filepath.Join(rw, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	other := userDir(t, 0, "ronly-e2e-othersock-")
	ln, err := net.Listen("unix", filepath.Join(other, "canary.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	sock := filepath.Join(rw, "exporter.sock")
	r := b.sh(t, opts{}, []string{"--rw", rw, "--metrics-socket", sock, "--metrics-spool", spool},
		"ln -s "+filepath.Join(other, "canary.sock")+" "+sock)
	if r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("want the planting to work and the report spooled:\n%s", r)
	}
	time.Sleep(100 * time.Millisecond) // a connection in flight is counted
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host socket behind the planted symlink accepted %d connection(s)", n)
	}
	if names := dirNames(t, spool); len(names) != 1 || !strings.HasSuffix(names[0], ".json") {
		t.Errorf("spool holds %v, want the session's report", names)
	}
}
