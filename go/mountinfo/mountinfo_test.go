package mountinfo

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

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
	ms, err := Read(nil)
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
		if b, err := os.ReadFile("/proc/self/status"); err == nil && strings.Contains(string(b), "\nSeccomp:\t2") && strings.Contains(string(b), "\nNoNewPrivs:\t1") {
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
		ms, err := Read(nil)
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

// Parse takes each line's fields by position, around the optional fields
// (zero or more, ended by "-"), and undoes the kernel's escapes in paths.
func TestParse(t *testing.T) {
	table := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 master:3 - proc proc rw
31 22 0:27 /sub /mnt/with\040space ro,relatime - tmpfs my\040tmpfs ro,size=64k
40 22 0:30 / /no/optional rw - cgroup2 cgroup2 rw,nsdelegate
short line
41 22 0:31 / /no/separator rw shared:4
`
	ms, err := Parse(strings.NewReader(table), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 22, Opts: "rw,relatime", Root: "/", Point: "/", FSType: "ext4", Source: "/dev/vda", SuperOpts: "rw"},
		{ID: 25, Opts: "rw,nosuid,nodev,noexec,relatime", Root: "/", Point: "/proc", FSType: "proc", Source: "proc", SuperOpts: "rw"},
		{ID: 31, Opts: "ro,relatime", Root: "/sub", Point: "/mnt/with space", FSType: "tmpfs", Source: "my tmpfs", SuperOpts: "ro,size=64k"},
		{ID: 40, Opts: "rw", Root: "/", Point: "/no/optional", FSType: "cgroup2", Source: "cgroup2", SuperOpts: "rw,nsdelegate"},
		{ID: 41, Opts: "rw", Root: "/", Point: "/no/separator"},
	}
	if !slices.Equal(ms, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", ms, want)
	}
}

// TestParseInPieces: a table read in pieces of any size, with lines across
// the pieces, a line longer than the buffer and a last line without its
// newline, parses as it does read whole, and keep keeps the same mounts in
// the same order.
func TestParseInPieces(t *testing.T) {
	var b strings.Builder
	for i := range 3000 { // about 250 KB: several of Parse's pieces
		fmt.Fprintf(&b, "%d 22 0:%d / /var/lib/kubelet/pods/%d/volumes/kubernetes.io~projected/kube-api-access rw,relatime - tmpfs tmpfs rw,size=64k\n", 100+i, i, i)
		if i == 1500 {
			fmt.Fprintf(&b, "99999 22 0:1 /%s /long rw - ext4 /dev/vdb rw\n", strings.Repeat("x", 3*chunk))
		}
	}
	b.WriteString("7 22 0:5 / /last rw - cgroup2 cgroup2 rw")
	table := b.String()
	whole := parseLines(table, nil, nil)
	if len(whole) != 3002 || whole[1501].ID != 99999 || len(whole[1501].Root) != 3*chunk+1 || whole[3001].Point != "/last" {
		t.Fatalf("the table read whole: %d mounts", len(whole))
	}
	keep := func(m *Mount) bool { return m.ID%7 == 0 || m.FSType != "tmpfs" }
	var kept []Mount
	for _, m := range whole {
		if keep(&m) {
			kept = append(kept, m)
		}
	}
	for name, r := range map[string]func() io.Reader{
		"whole":                   func() io.Reader { return strings.NewReader(table) },
		"one byte":                func() io.Reader { return iotest.OneByteReader(strings.NewReader(table)) },
		"halves":                  func() io.Reader { return iotest.HalfReader(strings.NewReader(table)) },
		"EOF with the last bytes": func() io.Reader { return iotest.DataErrReader(strings.NewReader(table)) },
	} {
		if got, err := Parse(r(), nil); err != nil || !slices.Equal(got, whole) {
			t.Errorf("%s: Parse: %d mounts, %v; want %d", name, len(got), err, len(whole))
		}
		if got, err := Parse(r(), keep); err != nil || !slices.Equal(got, kept) {
			t.Errorf("%s: Parse with keep: %d mounts, %v; want %d", name, len(got), err, len(kept))
		}
	}
	if _, err := Parse(iotest.TimeoutReader(strings.NewReader(table)), nil); err == nil {
		t.Error("Parse: a read error was not returned")
	}
}
