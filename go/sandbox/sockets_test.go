package sandbox

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestBoundSockets(t *testing.T) {
	// As the kernel prints it (net/unix/af_unix.c, unix_seq_show): a
	// listener, an abstract name, an unnamed socket, a path with a space.
	in := `Num       RefCount Protocol Flags    Type St Inode Path
ffff8880047d4400: 00000002 00000000 00010000 0001 01 21054 /run/systemd/private
ffff8880047d4c00: 00000002 00000000 00010000 0001 01 17210 @/tmp/.X11-unix/X0
ffff888004e0a000: 00000003 00000000 00000000 0001 03 22101
ffff888004e0b800: 00000002 00000000 00010000 0001 01 30522 /var/lib/my app/api.sock
`
	got := boundSockets(strings.NewReader(in))
	want := []string{"/run/systemd/private", "/var/lib/my app/api.sock"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("boundSockets = %q, want %q", got, want)
	}
}

// TestCoveredSockets binds real sockets and checks which the sandbox
// covers: anything bound outside the mirrored and fresh directories.
func TestCoveredSockets(t *testing.T) {
	// Short: a socket's path has room for 107 bytes, less than Bazel's
	// $TMPDIR leaves. Passed as neither mirrored nor fresh.
	base, err := os.MkdirTemp("/tmp", "ronly-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	mirrored, fresh, other := filepath.Join(base, "run"), filepath.Join(base, "tmp"), filepath.Join(base, "var")
	var paths []string
	for _, d := range []string{mirrored, fresh, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "api.sock")
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		paths = append(paths, p)
	}
	got := coveredSockets([]string{mirrored}, []string{"", fresh})
	has := map[string]bool{}
	for _, p := range got {
		has[p] = true
	}
	real := func(p string) string { r, _ := filepath.EvalSymlinks(p); return r }
	if !has[real(paths[2])] {
		t.Errorf("a socket bound outside the mirrored and fresh directories is not covered: %s not in %q", paths[2], got)
	}
	for _, p := range paths[:2] {
		if has[real(p)] {
			t.Errorf("%s is covered although its directory is mirrored or fresh", p)
		}
	}
}

func TestSplitCrowded(t *testing.T) {
	socks := []string{
		"/var/lib/a/1.sock", "/var/lib/a/2.sock", "/var/lib/a/3.sock", "/var/lib/a/4.sock", "/var/lib/a/5.sock", // crowded
		"/var/lib/a/b/1.sock", "/var/lib/a/b/2.sock", "/var/lib/a/b/3.sock", "/var/lib/a/b/4.sock", "/var/lib/a/b/5.sock", // crowded, below a
		"/srv/x/1.sock", "/srv/x/2.sock", "/srv/x/3.sock", "/srv/x/4.sock", // four: covered one by one
		"/1.sock", "/2.sock", "/3.sock", "/4.sock", "/5.sock", // never the root
		"/k/1.sock", "/k/2.sock", "/k/3.sock", "/k/4.sock", "/k/5.sock", // an ancestor of a kept directory
	}
	crowded, rest := splitCrowded(socks, []string{"/k/run"})
	if want := []string{"/var/lib/a"}; !reflect.DeepEqual(crowded, want) {
		t.Errorf("crowded = %q, want %q", crowded, want)
	}
	want := append(append(append([]string{}, socks[10:14]...), socks[14:19]...), socks[19:]...)
	if !reflect.DeepEqual(rest, want) {
		t.Errorf("rest = %q, want %q", rest, want)
	}
}

func TestMirrorTree(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(base, "a", "f")
	os.WriteFile(file, nil, 0o644)
	points := []string{"/", filepath.Join(base, "a/b/c"), filepath.Join(base, "a/d"), file, filepath.Join(base, "e"), base + "/ab"}
	got := mirrorTree(filepath.Join(base, "a"), points)
	want := []string{filepath.Join(base, "a"), filepath.Join(base, "a/d"), filepath.Join(base, "a/b/c")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mirrorTree = %q, want %q (the directory, then directories mounted below it, parents first)", got, want)
	}
}
