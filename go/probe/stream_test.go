package probe

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// These run no operation of the battery: only made-up ones, on canaries of
// the test's own.

func TestProbeSocketOpsExist(t *testing.T) {
	names := map[string]bool{}
	for _, op := range All() {
		names[op.Name] = true
	}
	for _, m := range []map[string]bool{socketOps, seeCanaryOps} {
		for n := range m {
			if !names[n] {
				t.Errorf("%q is not an operation of the battery", n)
			}
		}
	}
}

func TestProbeCanariesLifecycle(t *testing.T) {
	c := newTestCanaries(t)
	tg := c.Targets()
	if err := tg.Validate(); err != nil {
		t.Fatalf("targets: %v", err)
	}
	if !Alive(c.Proc.Process.Pid) || len(c.Inherit) != 4 || c.Socket == "" {
		t.Fatalf("canaries incomplete: %+v", c)
	}
	before, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if changes := c.Verify(before); len(changes) != 0 {
		t.Errorf("nothing happened, yet: %q", changes)
	}
	// Change everything Verify watches, as a breach would.
	os.WriteFile(filepath.Join(c.Dir, File2Name), []byte("changed"), 0o644)
	os.WriteFile(filepath.Join(c.Dir, "new"), nil, 0o644)
	if conn, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
		unix.Connect(conn, &unix.SockaddrUnix{Name: "@" + c.Abstract})
		unix.Close(conn)
	}
	c.Proc.Process.Kill()
	c.Proc.Process.Wait()
	changes := strings.Join(c.VerifyOwn(before), "\n")
	for _, want := range []string{File2Name + "\n", "new entry " + filepath.Join(c.Dir, "new"), "is dead", "abstract socket"} {
		if !strings.Contains(changes, want) {
			t.Errorf("Verify did not see %q:\n%s", want, changes)
		}
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(c.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", c.Root, err)
	}
	if _, err := os.Stat(c.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket %s: %v", c.Socket, err)
	}
}

func TestProbeRunStream(t *testing.T) {
	c := newTestCanaries(t)
	ran := map[string]bool{}
	op := func(name string, kind Kind, run func(Targets) error) Op {
		return Op{Name: name, Kind: kind, Want: wantPerm, Run: func(t Targets) error { ran[name] = true; return run(t) }}
	}
	ops := []Op{
		op("refused", Hostile, func(Targets) error { return unix.EPERM }),
		op("kills the canary", Hostile, func(t Targets) error { return unix.Kill(t.Pid, unix.SIGKILL) }),
		op("after the kill", Hostile, func(Targets) error { return unix.EPERM }),
		op("connect hidden unix socket under /run", Hostile, func(Targets) error { return unix.EPERM }),
	}
	var out bytes.Buffer
	if err := RunStream(&out, ops, []int{0, 1, 2}, c.Targets()); err != nil {
		t.Fatal(err)
	}
	events, rest, err := ReadStream(&out)
	if err != nil || len(rest) != 0 {
		t.Fatalf("ReadStream: %v, rest %q", err, rest)
	}
	var got []string
	for _, e := range events {
		switch {
		case e.Start:
			got = append(got, fmt.Sprintf("start %d", e.Index))
		case e.Result != nil:
			got = append(got, fmt.Sprintf("result %d %s", e.Index, OutcomeOf(*e.Result)))
		case e.Stop != "":
			got = append(got, fmt.Sprintf("stop %d", e.Index))
			if !strings.Contains(e.Stop, "canary process") {
				t.Errorf("stop says %q, not that the canary process changed", e.Stop)
			}
		}
	}
	want := "start 0,result 0 refused,start 1,result 1 through,stop 2"
	if strings.Join(got, ",") != want {
		t.Errorf("events %q, want %q", strings.Join(got, ","), want)
	}
	if ran["after the kill"] {
		t.Error("an operation ran after the canary died")
	}

	// Without a socket file, the operations that need one are skipped.
	c2 := newTestCanaries(t)
	tg := c2.Targets()
	tg.Socket = ""
	out.Reset()
	if err := RunStream(&out, ops, []int{3}, tg); err != nil {
		t.Fatal(err)
	}
	events, _, _ = ReadStream(&out)
	if len(events) != 2 || events[1].Result == nil || events[1].Result.Skipped == "" || ran["connect hidden unix socket under /run"] {
		t.Errorf("a socket operation without a socket: %+v", events)
	}

	// Bad targets or indices: nothing runs.
	bad := c2.Targets()
	bad.Pid = 1
	if err := RunStream(&out, ops, []int{0}, bad); err == nil {
		t.Error("RunStream accepted pid 1")
	}
	if err := RunStream(&out, ops, []int{0, 9}, c2.Targets()); err == nil {
		t.Error("RunStream accepted an index out of range")
	}
}

func TestProbeCheckConfinedRefusesOnHost(t *testing.T) {
	if CheckInside() == nil {
		t.Skip("this test runs inside a sandbox")
	}
	var st unix.Statfs_t
	if unix.Statfs("/", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		t.Skip("the root is read-only here")
	}
	if err := CheckConfined(); !errors.Is(err, ErrOnHost) {
		t.Errorf("CheckConfined() = %v on the host, want ErrOnHost", err)
	}
}

func newTestCanaries(t *testing.T) *Canaries {
	t.Helper()
	if CheckConfined() == nil {
		// Inside ronly (tests/bazel_in_ronly.sh) its filter refuses the
		// SO_REUSEPORT canary; CI runs these on the host too.
		t.Skip("inside a sandbox, whose filter refuses the SO_REUSEPORT canary; these run on the host in CI's go test step")
	}
	if _, err := exec.LookPath("sleep"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no sleep(1); CI=true, so this fails instead of skipping")
		}
		t.Skip("no sleep(1)")
	}
	// The socket's directory is short: a test's temporary directory may
	// be too long a path for a unix socket (108 bytes).
	sockDir, err := os.MkdirTemp("/tmp", "ronly-unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	c, err := NewCanaries(CanaryOptions{UID: os.Geteuid(), Parent: t.TempDir(), Prefix: "ronly-unit-", SocketDir: sockDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
