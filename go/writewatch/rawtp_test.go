package writewatch

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/writewatch/rawtp"
)

var update = flag.Bool("update", false, "rewrite rawtp/program_gen.go from the shared program")

// rawtpSource is the Go source of rawtp/program_gen.go: the shared
// counting program as rawtp loads it, with its name and maps.
func rawtpSource() ([]byte, error) {
	insns, err := program(false, nil).instructions(nil)
	if err != nil {
		return nil, err
	}
	code, err := program(false, nil).encode()
	if err != nil {
		return nil, err
	}
	name, err := progName()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("// Code generated from go/writewatch's shared program by `go test ./go/writewatch -run TestRawtpProgram -update`. DO NOT EDIT.\n\n")
	b.WriteString("package rawtp\n\n")
	b.WriteString("// progName is the program's name, a hash of its instructions: another\n// version of ronly has its own.\n")
	fmt.Fprintf(&b, "const progName = %q\n\n", name)
	b.WriteString("// The maps, by index into Watch.maps.\nconst (\n")
	for i, m := range sharedMaps {
		n := mapSpecs[m].Name
		fmt.Fprintf(&b, "map%s%s = %d\n", strings.ToUpper(n[:1]), n[1:], i)
	}
	fmt.Fprintf(&b, "numMaps = %d\n)\n\n", len(sharedMaps))
	b.WriteString("var mapSpecs = [numMaps]mapSpec{\n")
	for _, m := range sharedMaps {
		s := mapSpecs[m]
		fmt.Fprintf(&b, "{%q, %d, %d, %d, %d},\n", s.Name, uint32(s.Type), s.KeySize, s.ValueSize, s.MaxEntries)
	}
	b.WriteString("}\n\n")
	b.WriteString("// mapLoads are the program's map loads: the instruction (in 8-byte units)\n// and the map whose fd goes into it.\n")
	b.WriteString("var mapLoads = []struct{ insn, m int }{\n")
	at := 0
	for _, ins := range insns {
		if ins.IsLoadFromMap() {
			i := slices.IndexFunc(sharedMaps, func(m int) bool { return mapSpecs[m].Name == ins.Reference() })
			if i < 0 {
				return nil, fmt.Errorf("the shared program loads map %q, which it does not share", ins.Reference())
			}
			fmt.Fprintf(&b, "{%d, %d},\n", at, i)
		}
		at += int(ins.Size()) / 8
	}
	b.WriteString("}\n\n")
	b.WriteString("// progInsns is the program, its map loads' fds zero.\nconst progInsns = \"\" +\n")
	for len(code) > 0 {
		n := min(len(code), 16)
		var line strings.Builder
		for _, c := range code[:n] {
			fmt.Fprintf(&line, "\\x%02x", c)
		}
		code = code[n:]
		sep := " +"
		if len(code) == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "\"%s\"%s\n", line.String(), sep)
	}
	return format.Source(b.Bytes())
}

// rawtp loads the shared program without this package's library: its copy
// must be this package's program, name and maps, or the two would not
// join each other's.
func TestRawtpProgram(t *testing.T) {
	src, err := rawtpSource()
	if err != nil {
		t.Fatal(err)
	}
	const file = "rawtp/program_gen.go"
	if *update {
		if err := os.WriteFile(file, src, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want, err := os.ReadFile(file); err != nil || !bytes.Equal(src, want) {
		t.Errorf("%s is not as -update writes it (%v); run go test ./go/writewatch -run TestRawtpProgram -update", file, err)
	}
}

// rawtp's FexitPossible answers as this package's.
func TestRawtpFexitPossible(t *testing.T) {
	needRoot(t)
	if got, want := rawtp.FexitPossible(), fexitPossible() == nil; got != want {
		t.Errorf("rawtp.FexitPossible() = %t, writewatch's says %t", got, want)
	}
}

// A rawtp Watch and writewatch's Shared ones join the same program,
// whichever attached it, and each counts its own cgroup's refusals.
func TestRawtpJoinsShared(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	for _, first := range []string{"rawtp", "writewatch"} {
		t.Run(first+"_first", func(t *testing.T) {
			g1, g2 := newCgroup(t, ""), newCgroup(t, "")
			var r *rawtp.Watch
			var w *Watch
			var err error
			if first == "rawtp" {
				if r, err = rawtp.Shared(); err == nil {
					w, err = Shared(TracepointOnly)
				}
			} else {
				if w, err = Shared(TracepointOnly); err == nil {
					r, err = rawtp.Shared()
				}
			}
			if r != nil {
				defer r.Close()
			}
			if w != nil {
				defer w.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			var rinfo *ebpf.ProgramInfo
			if p, err := ebpf.NewProgramFromFD(dupFD(t, r.ProgramFD())); err != nil {
				t.Fatal(err)
			} else {
				rinfo, err = p.Info()
				p.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			rid, _ := rinfo.ID()
			if rid != progID(t, w) {
				t.Fatalf("rawtp holds program %d, writewatch %d: they did not join", rid, progID(t, w))
			}
			if first == "rawtp" && r.Joined() {
				t.Logf("rawtp joined another process's program: its load is not seen here")
			}
			if err := r.Add(g1.id); err != nil {
				t.Fatal(err)
			}
			if err := w.Add(g2.id); err != nil {
				t.Fatal(err)
			}
			for _, g := range []*cgroup{&g1, &g2, &g2} {
				if b, err := command(g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
					t.Fatalf("%v\n%s", err, b)
				}
			}
			got1, err := r.Remove(g1.id)
			if err != nil {
				t.Fatal(err)
			}
			got2, err := w.Remove(g2.id)
			if err != nil {
				t.Fatal(err)
			}
			want2 := map[string]uint64{}
			for k, v := range wantCounts {
				want2[k] = 2 * v
			}
			if !reflect.DeepEqual(got1, wantCounts) || !reflect.DeepEqual(got2, want2) {
				t.Errorf("counts: rawtp %v, writewatch %v; want %v and %v", got1, got2, wantCounts, want2)
			}
			if _, err := r.Remove(g1.id); err == nil {
				t.Errorf("a second Remove of the same cgroup succeeded")
			}
		})
	}
}

// A rawtp Watch's Close forgets the cgroups it was not told to remove, and
// the last holder's Close detaches the program: no link of it is left.
func TestRawtpCloseDetaches(t *testing.T) {
	needRoot(t)
	ro := readOnlyDir(t)
	g := newCgroup(t, "")
	r, err := rawtp.Shared()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(g.id); err != nil {
		r.Close()
		t.Fatal(err)
	}
	if b, err := command(&g, "/bin/sh", "-c", writes(ro)).CombinedOutput(); err != nil {
		r.Close()
		t.Fatalf("%v\n%s", err, b)
	}
	// A Shared Watch joins it to look: the cgroup is watched and counted.
	w, err := Shared(TracepointOnly)
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	defer w.Close()
	var one uint32
	if err := w.maps[mapSessions].Lookup(g.id, &one); err != nil {
		t.Errorf("the cgroup rawtp added is not watched: %v", err)
	}
	if n := len(slices.DeleteFunc(countKeys(t, w), func(k countKey) bool { return k.Cgroup != g.id })); n == 0 {
		t.Errorf("nothing counted for the cgroup rawtp added")
	}
	id := linkID(t, w)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.maps[mapSessions].Lookup(g.id, &one); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("the cgroup is still watched after rawtp's Close: %v", err)
	}
	for _, k := range countKeys(t, w) {
		if k.Cgroup == g.id {
			t.Errorf("counts of the closed Watch's cgroup are left: %+v", k)
		}
	}
	joined := w.joined
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !joined {
		t.Fatal("writewatch loaded a program of its own instead of joining rawtp's")
	}
	if l, err := link.NewFromID(id); err == nil {
		l.Close()
		// Another process may hold the same shared program (a session
		// counting meanwhile): only then may the link live on.
		t.Logf("link %d is still attached: another holder on the host", id)
	} else if !errors.Is(err, unix.ENOENT) {
		t.Errorf("link %d: %v", id, err)
	}
}

// A rawtp Watch that joins forgets the cgroups that are gone, with their
// counts (a Watch whose process was killed could not remove its own), and
// only those.
func TestRawtpPrunesGoneCgroups(t *testing.T) {
	checkJoinPrunes(t, TracepointOnly, func() (close func()) {
		r, err := rawtp.Shared()
		if err != nil {
			t.Fatal(err)
		}
		if !r.Joined() {
			r.Close()
			t.Fatal("rawtp loaded a program of its own instead of joining")
		}
		return func() { r.Close() }
	})
}

func linkID(t *testing.T, w *Watch) link.ID {
	t.Helper()
	info, err := w.links[0].Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func dupFD(t *testing.T, fd int) int {
	t.Helper()
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
