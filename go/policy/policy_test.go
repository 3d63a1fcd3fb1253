package policy

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"64M": 64 << 20, "1G": 1 << 30, "512k": 512 << 10, "4096": 4096, "2T": 2 << 40}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1M", "abc", "1.5G", "64MB", "99999999999T"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted a bad size", in)
		}
	}
}

func valid() Policy {
	return Policy{TmpfsSize: DefaultTmpfsSize, Mode: ModeAuto, LandlockMinABI: 6}
}

func TestValidateNamesFlagAndValue(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	// Directories every host has, outside /tmp (which starts empty).
	scratch := "/usr"
	tmpSub, err := os.MkdirTemp("/tmp", "ronly-policy-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmpSub)
	sock := filepath.Join(tmpSub, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cases := []struct {
		edit      func(*Policy)
		flag, val string
	}{
		{func(p *Policy) { p.Writable = []string{"rel/path"} }, "--writable", "rel/path"},
		{func(p *Policy) { p.Writable = []string{dir + "/missing"} }, "--writable", dir + "/missing"},
		{func(p *Policy) { p.RW = []string{file} }, "--rw", file},
		{func(p *Policy) { p.RW = []string{"/"} }, "--rw", "/"},
		{func(p *Policy) { p.Writable = []string{"/proc/sys"} }, "--writable", "/proc/sys"},
		{func(p *Policy) { p.ExtraShims = []string{dir + "/nope"} }, "--extra-shims", dir + "/nope"},
		{func(p *Policy) { p.TmpfsSize = 1 }, "--tmpfs-size", "1"},
		{func(p *Policy) { p.LandlockMinABI = 99 }, "--landlock-min-abi", "99"},
		{func(p *Policy) { p.Writable = []string{dir}; p.RW = []string{dir} }, "--rw", dir},
		{func(p *Policy) { p.Mode = "bogus" }, "--mode", "bogus"},
		{func(p *Policy) { p.Mode = ModeLandlockOnly; p.Writable = []string{dir} }, "--mode", "landlock-only"},
		{func(p *Policy) { p.Mode = ModeLandlockOnly; p.NoNetwork = true }, "--mode", "landlock-only"},
		{func(p *Policy) { p.Mode = ModeLandlockOnly; p.PIDNS = true }, "--mode", "landlock-only"},
		// Shims inside a place that starts empty would not be on PATH
		// inside: refused, not ignored.
		{func(p *Policy) { p.ExtraShims = []string{tmpSub} }, "--extra-shims", tmpSub},
		{func(p *Policy) { p.ExtraShims = []string{"/tmp"} }, "--extra-shims", "/tmp"},
		// No name inside would reach the socket.
		{func(p *Policy) { p.AllowSocket = []string{sock} }, "--allow-socket", sock},
		{func(p *Policy) { p.Writable = []string{scratch}; p.ExtraShims = []string{scratch + "/share"} }, "--extra-shims", scratch + "/share"},
	}
	for _, c := range cases {
		p := valid()
		c.edit(&p)
		err := p.Validate()
		var fe *FlagError
		if !errors.As(err, &fe) || fe.Flag != c.flag || fe.Value != c.val {
			t.Errorf("want a FlagError for %s %q, got %v", c.flag, c.val, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}

// TestPlaces: the places in the order the sandbox makes them, a place
// inside another after it whatever the flags' order: the bind of a --rw
// repository first, then the empty tmpfs of a --writable inside it, which a
// bind made after it would hide (the session then wrote into the host's
// directory).
func TestPlaces(t *testing.T) {
	p := Policy{Writable: []string{"/repo/node_modules", "/cache"}, Home: "/home/ci", RW: []string{"/home/ci/.cache/go", "/repo"}}
	want := []Place{
		{Path: "/tmp", Fresh: true, Mode: 0o1777},
		{Path: "/cache", Fresh: true, Mode: 0o755},
		{Path: "/repo"},
		{Path: "/repo/node_modules", Fresh: true, Mode: 0o755},
		{Path: "/home/ci", Fresh: true, Mode: 0o700},
		{Path: "/home/ci/.cache/go"},
	}
	if got := p.Places(); !slices.Equal(got, want) {
		t.Errorf("Places() = %+v\nwant %+v", got, want)
	}
	// One tmpfs a path: the first place's (a --writable /tmp is /tmp).
	p = Policy{Writable: []string{"/tmp", "/home/ci"}, Home: "/home/ci"}
	want = []Place{{Path: "/tmp", Fresh: true, Mode: 0o1777}, {Path: "/home/ci", Fresh: true, Mode: 0o755}}
	if got := p.Places(); !slices.Equal(got, want) {
		t.Errorf("Places() = %+v\nwant %+v", got, want)
	}
}

// A --writable or the ci HOME inside /tmp or another --writable is valid:
// the init makes its directory in the empty tmpfs outside it. Shims in a
// --rw inside /tmp show through it.
func TestValidateNestedPlaces(t *testing.T) {
	p := valid()
	p.Writable, p.Home = []string{"/usr/share", "/usr"}, "/usr/lib"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	tmpSub, err := os.MkdirTemp("/tmp", "ronly-policy-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmpSub)
	p = valid()
	p.RW, p.ExtraShims = []string{tmpSub}, []string{tmpSub}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// landlock-only mode mounts nothing: /tmp inside is the host's.
	p = valid()
	p.Mode, p.ExtraShims = ModeLandlockOnly, []string{tmpSub}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateResolvesWritableSymlinks(t *testing.T) {
	dir := "/usr/share" // outside /tmp, which starts empty
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	p := valid()
	p.Writable = []string{link, dir}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(p.Writable) != 1 || p.Writable[0] != dir {
		t.Fatalf("Writable = %v, want [%s] (resolved, deduplicated)", p.Writable, dir)
	}
}

// A writable bind is never made through a symlink, at the path or above
// it: one planted by an earlier session would bind another directory.
func TestValidateRefusesSymlinksInRW(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	for _, rw := range []string{link, filepath.Join(link, "sub")} {
		p := valid()
		p.RW = []string{rw}
		err := p.Validate()
		var fe *FlagError
		if !errors.As(err, &fe) || fe.Flag != "--rw" || fe.Value != rw || !strings.Contains(fe.Reason, "symlink") {
			t.Errorf("--rw %s: %v, want a FlagError naming --rw, the path and the symlink", rw, err)
		}
	}
	p := valid()
	p.RW = []string{filepath.Join(dir, "sub")}
	if err := p.Validate(); err != nil {
		t.Errorf("a path without symlinks: %v", err)
	}
}
