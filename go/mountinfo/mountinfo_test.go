package mountinfo

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x`: "/tab\tx", `/end\`: `/end\`} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// The root and /proc are mounted wherever the tests run.
func TestRead(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, m := range ms {
		found[m.Point] = m.FSType
	}
	if _, ok := found["/"]; !ok {
		t.Errorf("no mount at /: %v", found)
	}
	if found["/proc"] != "proc" {
		t.Errorf("/proc is %q, want proc", found["/proc"])
	}
}

// TestReadSeesChanges: Read parses the table once, and again only after the
// mounts changed. Run in a mount namespace of its own (a helper: this test
// binary under unshare -m), so the host's table is not touched.
func TestReadSeesChanges(t *testing.T) {
	if os.Getenv("MOUNTINFO_TEST_HELPER") == "" {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatal("needs root (CI runs as root)")
			}
			t.Skip("needs root for a mount namespace")
		}
		if b, err := os.ReadFile("/proc/self/status"); err == nil && strings.Contains(string(b), "\nSeccomp:\t2") {
			// A new mount namespace is what ronly's own filter refuses
			// (tests/bazel_in_ronly.sh); CI runs this on the host too.
			t.Skip("under a seccomp filter (inside a sandbox); this runs on the host in CI's go test step")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Fatal("unshare (util-linux) not found")
		}
		cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^TestReadSeesChanges$", "-test.v")
		cmd.Env = append(os.Environ(), "MOUNTINFO_TEST_HELPER=1")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return
	}
	dir := t.TempDir()
	has := func() bool {
		ms, err := Read()
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(ms, func(m Mount) bool { return m.Point == dir })
	}
	if has() {
		t.Fatalf("%s is a mount point before the test mounted it", dir)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	if !has() {
		t.Errorf("the tmpfs mounted on %s is not in the next Read", dir)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if has() {
		t.Errorf("the tmpfs unmounted from %s is still in the next Read", dir)
	}
}
