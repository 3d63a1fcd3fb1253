package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStdioAndEnv: stdin reaches the command, its stdout and stderr come
// back, the environment passes through.
func TestStdioAndEnv(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			r := b.run(t, opts{uid: u.uid, stdin: "line one\nline two\n"}, append(u.flags, "--", "cat")...)
			if r.code != 0 || r.stdout != "line one\nline two\n" {
				t.Errorf("stdin to stdout through cat:\n%s", r)
			}
			r = b.sh(t, opts{uid: u.uid}, u.flags, `echo to-stderr >&2`)
			if r.code != 0 || r.stderr != "to-stderr\n" || r.stdout != "" {
				t.Errorf("stderr pass-through:\n%s", r)
			}
			r = b.run(t, opts{uid: u.uid, env: []string{"RONLY_E2E_VAR=value with spaces"}}, append(u.flags, "--", "printenv", "RONLY_E2E_VAR")...)
			if r.code != 0 || r.stdout != "value with spaces\n" {
				t.Errorf("environment pass-through:\n%s", r)
			}
		})
	}
}

// TestStdoutToFile: a regular file as stdout (a redirect on the host) is
// written, through the descriptor and through /dev/stdout (appending, as
// `>` would truncate the file).
func TestStdoutToFile(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-out-")
	out := filepath.Join(dir, "out.txt")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(b.ronly, "--", "/bin/sh", "-c", "echo first; echo second >> /dev/stdout")
	cmd.Dir, cmd.Stdout = "/", f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ronly: %v\n%s", err, stderr.String())
	}
	got, _ := os.ReadFile(out)
	if string(got) != "first\nsecond\n" {
		t.Errorf("stdout file has %q, want %q", got, "first\nsecond\n")
	}
}

// TestRWPersists: changes in a --rw directory are made on the host.
func TestRWPersists(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			dir := userDir(t, u.uid, "ronly-e2e-rw-")
			writeFile(t, u.uid, filepath.Join(dir, "edit.txt"), "old\n", 0o644)
			writeFile(t, u.uid, filepath.Join(dir, "remove.txt"), "bye\n", 0o644)
			script := fmt.Sprintf(`cd %s && echo new > created.txt && sed -i s/old/edited/ edit.txt && rm remove.txt && mkdir sub && mv created.txt sub/moved.txt`, dir)
			r := b.sh(t, opts{uid: u.uid}, append(u.flags, "--rw", dir), script)
			if r.code != 0 {
				t.Fatalf("script failed:\n%s", r)
			}
			for path, want := range map[string]string{"sub/moved.txt": "new\n", "edit.txt": "edited\n"} {
				if got, err := os.ReadFile(filepath.Join(dir, path)); err != nil || string(got) != want {
					t.Errorf("%s on the host: %q, %v; want %q", path, got, err, want)
				}
			}
			for _, gone := range []string{"remove.txt", "created.txt"} {
				if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
					t.Errorf("%s still on the host", gone)
				}
			}
		})
	}
}

// TestWritableIsScratch: a --writable directory starts empty and its
// changes vanish; the host's directory is untouched.
func TestWritableIsScratch(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			c := newCanaries(t, u.uid)
			before := c.snapshot(t)
			script := fmt.Sprintf(`cd %s && ls -A | wc -l | tr -d ' ' && echo x > new.txt && mkdir d && cat new.txt`, c.dir)
			r := b.sh(t, opts{uid: u.uid}, append(u.flags, "--writable", c.dir), script)
			if r.code != 0 || r.stdout != "0\nx\n" {
				t.Errorf("want an empty writable directory inside:\n%s", r)
			}
			c.verify(t, before)
		})
	}
}

// TestWritableInsideRW: a --writable inside a --rw directory is an empty
// throwaway there too (a node_modules or a build directory in a writable
// checkout). Mounted before the --rw bind, which then hid it, it left the
// session writing into the host's directory.
func TestWritableInsideRW(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			dir := userDir(t, u.uid, "ronly-e2e-rw-nested-")
			cache := hostPlace(t, u.uid, dir)
			script := fmt.Sprintf(`cd %s && ls -A %s | wc -l | tr -d ' ' && echo x > %[2]s/new.txt && echo y > kept.txt`, dir, cache)
			// Either order of the flags.
			for _, flags := range [][]string{{"--writable", cache, "--rw", dir}, {"--rw", dir, "--writable", cache}} {
				r := b.sh(t, opts{uid: u.uid}, append(slices.Clone(u.flags), flags...), script)
				if r.code != 0 || r.stdout != "0\n" {
					t.Errorf("%v: want an empty writable cache inside:\n%s", flags, r)
				}
				if names := dirNames(t, cache); !slices.Equal(names, []string{"host.txt"}) {
					t.Errorf("%v: the host's cache holds %v, want only host.txt", flags, names)
				}
				if got, err := os.ReadFile(filepath.Join(dir, "kept.txt")); err != nil || string(got) != "y\n" {
					t.Errorf("%v: the --rw directory's kept.txt on the host: %q, %v", flags, got, err)
				}
				os.Remove(filepath.Join(dir, "kept.txt"))
			}
		})
	}
}

// hostPlace makes a directory in parent owned by uid and holding
// host.txt: a host directory a session covers, which must stay as it is.
func hostPlace(t *testing.T, uid int, parent string) string {
	t.Helper()
	dir := userDirIn(t, uid, parent, "ronly-e2e-place-")
	writeFile(t, uid, filepath.Join(dir, "host.txt"), "host\n", 0o644)
	return dir
}

// TestNestedFreshPlaces: a --writable inside another, or inside /tmp, is
// an empty tmpfs of its own there (the init makes its directory in the
// empty one outside); the host's directories stay as they were.
func TestNestedFreshPlaces(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			outer := userDir(t, u.uid, "ronly-e2e-nested-")
			inner, inTmp := hostPlace(t, u.uid, outer), hostPlace(t, u.uid, "/tmp")
			script := fmt.Sprintf(`for d in %[1]s %[2]s %[3]s; do echo "$(ls -A $d | tr '\n' ' ')"; done
				echo x > %[1]s/a && echo x > %[2]s/b && echo x > %[3]s/c && echo wrote`, outer, inner, inTmp)
			r := b.sh(t, opts{uid: u.uid}, append(slices.Clone(u.flags), "--writable", inner, "--writable", outer, "--writable", inTmp), script)
			// outer holds only the directory made for inner; inner and
			// the one in /tmp are empty.
			if want := filepath.Base(inner) + " \n\n\nwrote\n"; r.code != 0 || r.stdout != want {
				t.Errorf("want empty writable places inside:\n%s", r)
			}
			for dir, want := range map[string][]string{outer: {filepath.Base(inner)}, inner: {"host.txt"}, inTmp: {"host.txt"}} {
				if names := dirNames(t, dir); !slices.Equal(names, want) {
					t.Errorf("the host's %s holds %v, want %v", dir, names, want)
				}
			}
		})
	}
}

// TestWorkingDirectoryCovered: started in a directory under /tmp, which
// starts empty inside, the command runs in / and the caller is told; it
// used to start in / without a word.
func TestWorkingDirectoryCovered(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			dir := hostPlace(t, u.uid, "/tmp")
			r := b.sh(t, opts{uid: u.uid, dir: dir}, u.flags, "pwd")
			if r.code != 0 || r.stdout != "/\n" {
				t.Errorf("want the command in /:\n%s", r)
			}
			if want := "the working directory " + dir + " is not there inside"; !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r)
			}
		})
	}
}

// TestLeftoverProcessesKilled: what the command leaves running in the
// background is killed when it exits, including a daemonised grandchild.
func TestLeftoverProcessesKilled(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			// A unique duration: sleep adds its arguments up, so the marker
			// changes nothing but makes the process findable from outside.
			marker := "0.000" + strconv.Itoa(os.Getpid()) + strconv.Itoa(len(u.name))
			// The cmdline is read until the child has exec'd sleep: read
			// during its exec, it is empty.
			script := fmt.Sprintf(`sleep 1000 %[1]s & p=$!
				(setsid sleep 1000 %[1]s &)
				i=0; while [ $i -lt 200 ]; do
					c=$(tr '\0' ' ' < /proc/$p/cmdline)
					case "$c" in *"sleep 1000"*) break;; esac
					i=$((i+1)); sleep 0.01
				done; echo "$c"`, marker)
			r := b.sh(t, opts{uid: u.uid}, u.flags, script)
			if r.code != 0 || !strings.Contains(r.stdout, "sleep 1000 "+marker) {
				t.Fatalf("the background sleep did not start:\n%s", r)
			}
			if pids := findCmdline("sleep 1000 " + marker); len(pids) > 0 {
				t.Errorf("background processes outlived the session: pids %v", pids)
				for _, p := range pids {
					syscallKill(p)
				}
			}
		})
	}
}

// TestCanaryVisibleNotKillable: ps inside shows the host's processes, yet
// the shell's kill cannot touch them.
func TestCanaryVisibleNotKillable(t *testing.T) {
	b := setup(t)
	needTool(t, "ps")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			c := newCanaries(t, u.uid)
			pid := c.proc.Process.Pid
			script := fmt.Sprintf(`ps -eo pid=,args= | grep -c '^ *%d sleep 100000$'; kill -KILL %d; echo kill=$?`, pid, pid)
			r := b.sh(t, opts{uid: u.uid}, u.flags, script)
			if r.stdout != "1\nkill=1\n" {
				t.Errorf("want the canary listed once and kill refused:\n%s", r)
			}
			if !alive(pid) {
				t.Errorf("HOST CHANGED: canary %d killed from inside", pid)
			}
		})
	}
}

// TestNoNetwork: --no-network leaves only loopback, and it is up.
func TestNoNetwork(t *testing.T) {
	b := setup(t)
	needTool(t, "ip")
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			r := b.run(t, opts{uid: u.uid}, append(u.flags, "--no-network", "--", "ip", "-o", "link", "show")...)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if r.code != 0 || len(lines) != 1 {
				t.Fatalf("want exactly one interface:\n%s", r)
			}
			f := strings.Fields(lines[0])
			if len(f) < 3 || f[1] != "lo:" || !strings.Contains(f[2], ",UP") {
				t.Errorf("want lo, up: %q", lines[0])
			}
		})
	}
}

// TestHostname: hostname NAME inside fails or renames only the sandbox.
func TestHostname(t *testing.T) {
	b := setup(t)
	needTool(t, "hostname")
	before, _ := os.Hostname()
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			r := b.sh(t, opts{uid: u.uid}, u.flags, `hostname ronly-e2e-renamed 2>/dev/null; echo rc=$?; hostname`)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			refused := len(lines) == 2 && lines[0] != "rc=0" && lines[1] == before
			private := len(lines) == 2 && lines[0] == "rc=0" && lines[1] == "ronly-e2e-renamed"
			if !refused && !private {
				t.Errorf("hostname inside neither refused nor private:\n%s", r)
			}
			if after, _ := os.Hostname(); after != before {
				t.Errorf("HOST CHANGED: hostname %q, was %q", after, before)
			}
		})
	}
}

// findCmdline lists processes whose command line contains s.
func findCmdline(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) && procState(pid) != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func syscallKill(pid int) { unix.Kill(pid, unix.SIGKILL) }

// TestBinaryUnderTmp: a ronly kept in the host's /tmp (a download, a CI
// artifact) still gets its shims, though /tmp inside is a fresh tmpfs that
// hides the binary's path.
func TestBinaryUnderTmp(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	dir, err := os.MkdirTemp("/tmp", "ronly-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ronly")
	if err := copyFile(b.ronly, bin); err != nil {
		t.Fatal(err)
	}
	inTmp := b
	inTmp.ronly = bin
	r := inTmp.sh(t, opts{}, nil, "test -x /dev/ronly-shims/docker && docker run x 2>&1; true")
	if r.code != 0 || !strings.Contains(r.stdout, "docker run is blocked") {
		t.Errorf("shim from a binary under /tmp:\n%s", r)
	}
}
