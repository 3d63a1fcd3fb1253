package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/creack/pty"

	"ronly.dev/ronly/go/probe"
)

// probeModes are the sandbox modes the battery runs in. The privileged mode
// has no user namespace: only capabilities, Landlock and seccomp stand
// between root and the host's processes there.
var probeModes = []struct {
	name  string
	uid   int
	flags []string
}{
	{"root", 0, nil},
	{"rootless", nobody, []string{"--rootless"}},
	{"privileged", 0, []string{"--privileged"}},
	// As on kernels whose Landlock cannot scope signals (Debian 12's 6.1):
	// the supervisor confines them, in the host's PID namespace.
	{"root-landlock5", 0, []string{"--landlock-max-abi", "5"}},
	{"rootless-landlock5", nobody, []string{"--rootless", "--landlock-max-abi", "5"}},
}

// TestProbeBattery runs every operation of package probe inside ronly and
// checks each hostile one failed with an expected errno, each everyday one
// succeeded, and then, from outside, that the host did not change.
func TestProbeBattery(t *testing.T) {
	b := setup(t)
	byMode := map[string][]probe.Result{}
	for _, m := range probeModes {
		t.Run(m.name, func(t *testing.T) {
			c := newCanaries(t, m.uid)
			// ronly's stdin is a canary file, its stderr a terminal of
			// the test's, as a user's: the stdio operations attack them.
			stdin, err := os.Open(c.Stdin)
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			term := newTestTerminal(t, m.uid)
			targets := c.targets()
			targets.Stdio = map[int]probe.FileID{0: fileID(t, stdin), 2: fileID(t, term.slave)}
			tg, err := json.Marshal(targets)
			if err != nil {
				t.Fatal(err)
			}
			before := c.snapshot(t)
			termBefore := stateOf(t, term.slave)
			args := append(append([]string{}, m.flags...), "--rw", c.rwDir, "--", b.probe, "-targets", string(tg))
			r := b.run(t, opts{uid: m.uid, extra: c.inherit, stdinFile: stdin, stderrFile: term.slave}, args...)
			r.stderr = term.output()
			if r.code != 0 {
				t.Fatalf("probe inside ronly failed:\n%s", r)
			}
			if after := stateOf(t, term.slave); after != termBefore {
				t.Errorf("HOST CHANGED: the terminal given as stderr:\n  before %+v\n  after  %+v", termBefore, after)
			}
			results, err := probe.ReadJSON(strings.NewReader(r.stdout))
			if err != nil {
				t.Fatalf("probe output: %v\n%s", err, r)
			}
			byMode[m.name] = results
			checkResults(t, results)
			c.verify(t, before)
			checkShmPrivate(t, c)
			checkRWDirWritten(t, c, results)
		})
	}
	logModeDifferences(t, byMode)
}

// logModeDifferences lists the operations whose outcome differs between
// modes: which wall stops them depends on the mode (a user namespace, or
// only capabilities, Landlock and seccomp).
func logModeDifferences(t *testing.T, byMode map[string][]probe.Result) {
	outcome := func(r probe.Result) string {
		switch {
		case r.Skipped != "":
			return "skipped"
		case r.Errno != "":
			return r.Errno
		case r.Succeeded():
			return "ok"
		}
		return "error"
	}
	base := byMode[probeModes[0].name]
	var lines []string
	for i, r := range base {
		row := []string{probeModes[0].name + "=" + outcome(r)}
		differs := false
		for _, m := range probeModes[1:] {
			rs := byMode[m.name]
			if i >= len(rs) || rs[i].Name != r.Name {
				continue
			}
			if outcome(rs[i]) != outcome(r) {
				differs = true
			}
			row = append(row, m.name+"="+outcome(rs[i]))
		}
		if differs {
			lines = append(lines, r.Name+": "+strings.Join(row, " "))
		}
	}
	if len(lines) > 0 {
		t.Logf("outcomes that differ between modes:\n  %s", strings.Join(lines, "\n  "))
	}
}

// checkResults fails for each operation that did not do what it must, and
// that the battery ran whole.
func checkResults(t *testing.T, results []probe.Result) {
	t.Helper()
	ops := probe.All()
	if len(results) != len(ops) {
		t.Errorf("the probe reported %d results for %d operations", len(results), len(ops))
	}
	var skipped []string
	for _, res := range results {
		switch {
		case res.Skipped != "":
			skipped = append(skipped, res.Name+" ("+res.Skipped+")")
		case res.Pass:
		case res.Kind == probe.Hostile && res.Succeeded():
			t.Errorf("SANDBOX BUG: hostile %q succeeded %s", res.Name, res.Detail)
		case res.Kind == probe.Hostile:
			t.Errorf("hostile %q failed with %s, want one of %v (%s)", res.Name, orNone(res.Errno), res.Want, res.Error)
		default:
			t.Errorf("SANDBOX BUG: everyday %q failed: %s", res.Name, res.Error)
		}
	}
	if len(skipped) > 0 {
		t.Logf("not applicable here: %s", strings.Join(skipped, "; "))
	}
}

func orNone(errno string) string {
	if errno == "" {
		return "a non-errno error"
	}
	return errno
}

// checkShmPrivate: the probe created a file in its /dev/shm; the host's
// must not have it.
func checkShmPrivate(t *testing.T, c *canaries) {
	t.Helper()
	name := probe.Targets{Marker: c.marker}.ShmName()
	if _, err := os.Lstat(filepath.Join("/dev/shm", name)); err == nil {
		t.Errorf("HOST CHANGED: the sandbox's /dev/shm/%s appeared in the host's /dev/shm", name)
		os.Remove(filepath.Join("/dev/shm", name))
	}
}

// checkRWDirWritten: the everyday operations in the --rw directory left
// their entries on the host, where they persist.
func checkRWDirWritten(t *testing.T, c *canaries, results []probe.Result) {
	t.Helper()
	ran := false
	for _, res := range results {
		if strings.HasSuffix(res.Name, " in --rw dir") && res.Pass && res.Skipped == "" {
			ran = true
		}
	}
	if !ran {
		t.Errorf("no everyday operation ran in the --rw directory")
		return
	}
	ents, _ := filepath.Glob(filepath.Join(c.rwDir, "ronly-probe-"+c.marker+"-*"))
	if len(ents) == 0 {
		t.Errorf("the probe's writes in --rw %s did not persist on the host", c.rwDir)
	}
	created := filepath.Join(c.rwDir, "ronly-probe-"+c.marker+"-00", "f")
	if _, err := os.Stat(created); err != nil {
		t.Errorf("the file the probe created in --rw is not on the host: %v", err)
	}
}

// testTerminal is a pseudo-terminal the test owns, given to ronly as a
// user's terminal would be; its output is collected.
type testTerminal struct {
	master, slave *os.File
	mu            sync.Mutex
	out           []byte
	done          chan struct{}
}

func newTestTerminal(t *testing.T, uid int) *testTerminal {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	// The user's own terminal, whose mode it could change.
	if err := s.Chown(uid, uid); err != nil {
		t.Fatal(err)
	}
	tt := &testTerminal{master: m, slave: s, done: make(chan struct{})}
	go func() {
		defer close(tt.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			tt.mu.Lock()
			tt.out = append(tt.out, buf[:n]...)
			tt.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		m.Close()
		<-tt.done
	})
	return tt
}

func (tt *testTerminal) output() string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return string(tt.out)
}

func fileID(t *testing.T, f *os.File) probe.FileID {
	t.Helper()
	id, err := probe.IDOf(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return id
}
