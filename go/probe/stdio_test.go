package probe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The stdio operations act only on the object the runner named: run here,
// outside a sandbox, against descriptors that are something else, they
// must touch nothing and say EBADF (the named object is not there) or
// skip (none named).
func TestStdioOpsActOnlyOnTheNamedObject(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, err := IDOf(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	ops := stdioHostile()
	if len(ops) != 21 {
		t.Fatalf("%d stdio operations, want 7 for each of fds 0-2", len(ops))
	}
	for _, op := range ops {
		if !strings.Contains(op.Name, "stdio fd ") || op.Kind != Hostile {
			t.Errorf("%q: not a hostile stdio operation", op.Name)
		}
		if r := runOne(op, Targets{}); r.Skipped == "" {
			t.Errorf("%q with no stdio canary: %+v, want skipped", op.Name, r)
		}
		named := Targets{Stdio: map[int]FileID{0: other, 1: other, 2: other}}
		if r := runOne(op, named); r.Errno != "EBADF" || !r.Pass {
			t.Errorf("%q on a descriptor that is not the canary: %+v, want EBADF", op.Name, r)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Size != 0 {
		t.Errorf("the other file changed: %+v %v", st, err)
	}
}

func TestStdioTargetsValidate(t *testing.T) {
	tg := Targets{Pid: 2, File: "/f", Dir: "/d", Socket: "/s", Abstract: "a", Marker: "m",
		Stdio: map[int]FileID{3: {}}}
	if err := tg.Validate(); err == nil {
		t.Error("descriptor 3 accepted as stdio")
	}
	tg.Stdio = map[int]FileID{0: {}, 2: {}}
	if err := tg.Validate(); err != nil {
		t.Errorf("stdio 0 and 2: %v", err)
	}
}
