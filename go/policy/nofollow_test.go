package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The walk ronly falls back to where openat2 is refused must refuse a
// symlink in any component, as RESOLVE_NO_SYMLINKS does, and open the rest.
func TestOpenWalkRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC
	for _, p := range []string{filepath.Join(dir, "link"), filepath.Join(dir, "link", "sub")} {
		if fd, err := openWalk(p, flags); !errors.Is(err, unix.ELOOP) {
			unix.Close(fd)
			t.Errorf("%s: %v, want ELOOP", p, err)
		}
	}
	fd, err := openWalk(filepath.Join(real, "sub"), flags)
	if err != nil {
		t.Fatalf("a path without symlinks: %v", err)
	}
	defer unix.Close(fd)
	var got, want unix.Stat_t
	unix.Fstat(fd, &got)
	unix.Stat(filepath.Join(real, "sub"), &want)
	if got.Ino != want.Ino || got.Dev != want.Dev {
		t.Errorf("opened another directory than %s", filepath.Join(real, "sub"))
	}
}
