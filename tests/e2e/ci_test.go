package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sessionReport is the part of --report's JSON document the tests read.
type sessionReport struct {
	Version int      `json:"version"`
	Session string   `json:"session"`
	Command []string `json:"command"`
	Profile string   `json:"profile"`
	Error   string   `json:"error"`
	Exit    struct {
		Code   int    `json:"code"`
		Signal string `json:"signal"`
	} `json:"exit"`
	Usage struct {
		WallSeconds float64 `json:"wall_seconds"`
		UserSeconds float64 `json:"user_seconds"`
		SysSeconds  float64 `json:"sys_seconds"`
		MaxRSSBytes uint64  `json:"max_rss_bytes"`
	} `json:"usage"`
	Limits struct {
		TimeoutSeconds float64 `json:"timeout_seconds"`
		MemoryBytes    uint64  `json:"memory_bytes"`
		Pids           int     `json:"pids"`
	} `json:"limits"`
	LimitHit string                       `json:"limit_hit"`
	Refused  map[string]map[string]uint64 `json:"refused"`
	Timeline []struct {
		Step string  `json:"step"`
		MS   float64 `json:"ms"`
	} `json:"timeline"`
	Layers struct {
		Mode          string `json:"mode"`
		UserNS        bool   `json:"user_namespace"`
		PIDNS         bool   `json:"pid_namespace"`
		LandlockABI   int    `json:"landlock_abi"`
		Seccomp       string `json:"seccomp"`
		Counting      bool   `json:"counting"`
		WriteCounting bool   `json:"write_counting"`
		WriteCounter  string `json:"write_counter"`
		Network       string `json:"network"`
		Cgroup        string `json:"cgroup"`
	} `json:"layers"`
}

func readReport(t *testing.T, path string) sessionReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no report: %v", err)
	}
	var r sessionReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	if r.Version != 1 || r.Session == "" {
		t.Fatalf("report without version 1 and a session: %s", b)
	}
	return r
}

// sleepMarker is a random marker for `sleep 600.MARKER`: digits only, or
// sleep would refuse the argument and exit at once, and a test looking for
// leftovers would find none however careless the sandbox.
func sleepMarker(t *testing.T) string {
	t.Helper()
	m, err := strconv.ParseUint(randomMarker(t), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(m, 10)
}

// marked lists the host's processes whose command line contains marker.
func marked(marker string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// cgroupsOf lists the cgroup directories, in every hierarchy, named after
// the session.
func cgroupsOf(t *testing.T, session string) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/ronly/" + session + "-*", "/sys/fs/cgroup/*/ronly/" + session + "-*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

// checkNoLeftovers checks from outside that the session left nothing:
// no process, no cgroup, no mount.
func checkNoLeftovers(t *testing.T, marker, session string, mountsBefore []string) {
	t.Helper()
	if left := marked(marker); len(left) > 0 {
		t.Errorf("processes of the session outlived it: %v", left)
	}
	if left := cgroupsOf(t, session); len(left) > 0 {
		t.Errorf("cgroups of the session left behind: %v", left)
	}
	if after := mountLines(t); !slices.Equal(mountsBefore, after) {
		t.Errorf("the host's mount table changed: new %v, gone %v", newEntries(mountsBefore, after), newEntries(after, mountsBefore))
	}
}

// TestLimitsKillTheWholeTree: a session that hits a limit is killed with
// every process it started — including a double-forked daemon in its own
// session — the report names the limit, and nothing is left on the host.
func TestLimitsKillTheWholeTree(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	for _, profile := range []string{"debug", "ci"} {
		for _, tc := range []struct {
			name  string
			flags []string
			work  string // runs after the background processes started
			code  int    // the exit code ronly must give; 0: any
		}{
			{"timeout", []string{"--timeout", "1s"}, "sleep 600", 137},
			{"memory", []string{"--memory", "32M"}, "head -c 512M /dev/zero | tail > /dev/null", 0},
			{"pids", []string{"--pids", "16"}, "i=0; while [ $i -lt 64 ]; do sleep 600 & i=$((i+1)); done; wait", 0},
			{"cpu", []string{"--cpu-time", "300ms"}, "while :; do :; done", 137},
		} {
			t.Run(profile+"/"+tc.name, func(t *testing.T) {
				marker := sleepMarker(t)
				ws := userDir(t, 0, "ronly-limits-")
				rep := filepath.Join(ws, "report.json")
				mounts := mountLines(t)
				// Background processes that would outlive a careless
				// sandbox: a plain child and a daemon (setsid, orphaned).
				script := fmt.Sprintf("sleep 600.%s & setsid sh -c 'sleep 601.%s & exit' ; sleep 0.2; %s", marker, marker, tc.work)
				flags := append([]string{"--profile", profile, "--report", rep}, tc.flags...)
				r := b.sh(t, opts{dir: ws}, flags, script)
				if tc.code != 0 && r.code != tc.code {
					t.Errorf("want exit %d:\n%s", tc.code, r)
				}
				got := readReport(t, rep)
				if got.LimitHit != tc.name {
					t.Errorf("report's limit_hit = %q, want %q\n%s", got.LimitHit, tc.name, r)
				}
				if !strings.Contains(r.stderr, "session killed with all its processes") {
					t.Errorf("no message that the session was killed:\n%s", r)
				}
				if got.Layers.Cgroup == "none" {
					t.Errorf("root session without a cgroup")
				}
				checkNoLeftovers(t, marker, got.Session, mounts)
			})
		}
	}
}

// TestCIProfile: the workspace is writable and keeps what the job wrote;
// HOME is an empty tmpfs that vanishes; everything else stays read-only;
// the job has its own PID namespace and /proc (the host's processes are
// invisible); the environment is cleared but for a short list, --keepenv
// and --setenv.
func TestCIProfile(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	c := newCanaries(t, 0)
	c.startProcess(t)
	before := c.snapshot(t)
	ws := userDir(t, 0, "ronly-ws-")
	home := userDir(t, 0, "ronly-home-")
	writeFile(t, 0, filepath.Join(home, ".secret-config"), "host home\n", 0o600)
	rep := filepath.Join(ws, "report.json")
	script := strings.Join([]string{
		"set -e",
		"echo built > artifact",                               // the workspace
		"echo cache > $HOME/.cache-entry",                     // the tmpfs HOME
		"test ! -e $HOME/.secret-config",                      // which starts empty
		"! touch " + c.file + " 2>/dev/null",                  // the rest: read-only
		"test ! -e /proc/" + strconv.Itoa(c.proc.Process.Pid), // host processes: invisible
		"test \"$(ls /proc | grep -c '^[0-9]')\" -lt 10",      // only the job's own
		"echo pid=$$",
		"echo secret=${CI_SECRET:-unset} kept=${KEEP_ME:-unset} set=${SET_ME:-unset} path=$PATH",
	}, "\n")
	r := b.run(t, opts{dir: ws, env: []string{"HOME=" + home, "CI_SECRET=hunter2", "KEEP_ME=yes"}},
		"--profile", "ci", "--report", rep, "--keepenv", "KEEP_ME", "--setenv", "SET_ME=fine", "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("ci job failed:\n%s", r)
	}
	for _, want := range []string{"pid=2\n", "secret=unset kept=yes set=fine path=/dev/ronly-shims:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ws, "artifact")); err != nil || string(b) != "built\n" {
		t.Errorf("the workspace did not keep the artifact: %q %v", b, err)
	}
	if names := dirNames(t, home); !slices.Equal(names, []string{".secret-config"}) {
		t.Errorf("the host's HOME changed: %v", names)
	}
	got := readReport(t, rep)
	if got.Profile != "ci" || !got.Layers.PIDNS || got.Exit.Code != 0 {
		t.Errorf("report: profile %q pid_namespace %t exit %d", got.Profile, got.Layers.PIDNS, got.Exit.Code)
	}
	c.verify(t, before)
}

// TestCIHomeInsideWorkspace: a HOME inside the workspace (as CI jobs set
// it to cache under the checkout) is still the ci profile's empty tmpfs.
// Mounted before the workspace's bind, it was hidden by it: the job saw
// the host's dotfiles and wrote there.
func TestCIHomeInsideWorkspace(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	ws := userDir(t, 0, "ronly-ws-")
	home := hostPlace(t, 0, ws)
	script := "test ! -e $HOME/host.txt && echo cache > $HOME/.cache-entry && echo built > artifact"
	// --workspace given: the current directory holding HOME is refused as
	// the default workspace.
	r := b.run(t, opts{dir: ws, env: []string{"HOME=" + home}}, "--profile", "ci", "--workspace", ws, "--", "/bin/sh", "-c", script)
	if r.code != 0 {
		t.Errorf("want an empty HOME inside:\n%s", r)
	}
	if names := dirNames(t, home); !slices.Equal(names, []string{"host.txt"}) {
		t.Errorf("the host's HOME changed: %v", names)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "artifact")); err != nil || string(b) != "built\n" {
		t.Errorf("the workspace did not keep the artifact: %q %v", b, err)
	}
}

// TestCIHomeInTmp: a HOME under /tmp (containers that run as an arbitrary
// uid often set one) is the ci profile's empty tmpfs inside the empty
// /tmp; it failed in the init, which found no directory to mount on.
func TestCIHomeInTmp(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	home := hostPlace(t, 0, "/tmp")
	ws := userDir(t, 0, "ronly-ws-")
	script := `test "$(ls -A $HOME)" = "" && echo cache > $HOME/.cache-entry && cd && pwd`
	r := b.run(t, opts{dir: ws, env: []string{"HOME=" + home}}, "--profile", "ci", "--", "/bin/sh", "-c", script)
	if r.code != 0 || r.stdout != home+"\n" {
		t.Errorf("want an empty writable HOME inside:\n%s", r)
	}
	if names := dirNames(t, home); !slices.Equal(names, []string{"host.txt"}) {
		t.Errorf("the host's HOME changed: %v", names)
	}
}

// TestReport: the JSON report tells how the command ended and what was
// refused, in the documented schema.
func TestReport(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	dir := userDir(t, 0, "ronly-report-")
	for _, tc := range []struct {
		name, script string
		code         int
		signal       string
	}{
		{"exit status", "exit 3", 3, ""},
		{"signal", "kill -TERM $$", 143, "SIGTERM"},
		{"refusals", "mount -t tmpfs none /mnt 2>/dev/null; unshare -U true 2>/dev/null; exit 0", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			r := b.sh(t, opts{}, []string{"--report", rep}, tc.script)
			if r.code != tc.code {
				t.Fatalf("want exit %d:\n%s", tc.code, r)
			}
			got := readReport(t, rep)
			if got.Exit.Code != tc.code || got.Exit.Signal != tc.signal {
				t.Errorf("report's exit = %+v, want code %d signal %q", got.Exit, tc.code, tc.signal)
			}
			if got.Usage.WallSeconds <= 0 || got.Usage.MaxRSSBytes == 0 {
				t.Errorf("report's usage is empty: %+v", got.Usage)
			}
			if got.Layers.Mode != "userns" || !got.Layers.UserNS || got.Layers.LandlockABI == 0 ||
				got.Layers.Seccomp != "notify" || !got.Layers.Counting || got.Layers.Network != "host" {
				t.Errorf("report's layers: %+v", got.Layers)
			}
			if tc.name == "refusals" {
				if got.Refused["syscall"]["mount"] == 0 || got.Refused["syscall"]["unshare"] == 0 {
					t.Errorf("refusals not in the report: %v", got.Refused)
				}
			}
			var steps []string
			for i, m := range got.Timeline {
				steps = append(steps, m.Step)
				if i > 0 && m.MS < got.Timeline[i-1].MS || m.MS <= 0 {
					t.Errorf("timeline out of order: %+v", got.Timeline)
					break
				}
			}
			want := []string{"policy", "sockets and mounts planned", "cgroup", "init started", "write counter attached",
				"sandbox built", "command exited", "cleaned up"}
			if !reflect.DeepEqual(steps, want) {
				t.Errorf("timeline steps %q, want %q", steps, want)
			}
			if n := len(got.Timeline); n > 0 && got.Timeline[n-1].MS > got.Usage.WallSeconds*1000+1000 {
				t.Errorf("timeline ends at %.1f ms, after a %.3f s session", got.Timeline[n-1].MS, got.Usage.WallSeconds)
			}
		})
	}
}

// TestLimitsRootless: a user without a delegated cgroup still gets the
// wall-clock limit (the supervisor kills the tree) and, for the others,
// rlimits with a warning that says they bound each process only.
func TestLimitsRootless(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	t.Run("timeout", func(t *testing.T) {
		marker := sleepMarker(t)
		ws := userDir(t, nobody, "ronly-rl-")
		rep := filepath.Join(ws, "r.json")
		mounts := mountLines(t)
		r := b.sh(t, opts{uid: nobody, dir: ws}, []string{"--rootless", "--timeout", "1s", "--report", rep},
			fmt.Sprintf("sleep 600.%s & setsid sh -c 'sleep 601.%s & exit'; sleep 600", marker, marker))
		if r.code != 137 {
			t.Errorf("want exit 137:\n%s", r)
		}
		got := readReport(t, rep)
		if got.LimitHit != "timeout" || got.Layers.Cgroup != "none" || got.Layers.Mode != "rootless" {
			t.Errorf("report: limit_hit %q cgroup %q mode %q", got.LimitHit, got.Layers.Cgroup, got.Layers.Mode)
		}
		checkNoLeftovers(t, marker, got.Session, mounts)
	})
	t.Run("memory falls back to RLIMIT_AS", func(t *testing.T) {
		r := b.sh(t, opts{uid: nobody}, []string{"--rootless", "--memory", "64M"},
			"grep '^Max address space' /proc/self/limits; head -c 512M /dev/zero | tail > /dev/null && echo survived")
		if !strings.Contains(r.stderr, "RLIMIT_AS") {
			t.Errorf("no warning naming the rlimit fallback:\n%s", r)
		}
		// The limit itself, as the kernel holds it for the command.
		if !regexp.MustCompile(`(?m)^Max address space\s+67108864\s+67108864\s+bytes`).MatchString(r.stdout) {
			t.Errorf("the command's RLIMIT_AS is not 64M:\n%s", r)
		}
		if strings.Contains(r.stdout, "survived") || r.code == 0 || r.code == 125 {
			t.Errorf("tail buffered 512M under a 64M address-space limit, or the command did not run (exit %d):\n%s", r.code, r)
		}
	})
}

// TestKilledSupervisorLeavesNothing: when the supervisor itself is
// SIGKILLed, the ci profile's processes die with their PID namespace at
// once; in the debug profile what the command left running lives on only
// until the next session, which removes the dead session's cgroup and
// kills what is in it. Either way nothing is left after that session.
func TestKilledSupervisorLeavesNothing(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	for _, profile := range []string{"debug", "ci"} {
		t.Run(profile, func(t *testing.T) {
			marker := sleepMarker(t)
			ws := userDir(t, 0, "ronly-killed-")
			mounts := mountLines(t)
			script := fmt.Sprintf("sleep 600.%s & setsid sh -c 'sleep 601.%s & exit'; sleep 0.2; echo started; sleep 602.%s", marker, marker, marker)
			cmd := exec.Command(b.ronly, "--profile", profile, "--", "/bin/sh", "-c", script)
			cmd.Dir = ws
			startSession(t, cmd)
			pid := cmd.Process.Pid
			cmd.Process.Kill()
			cmd.Wait()
			cgroups := func() []string {
				m, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/ronly/*-%d-*", pid))
				n, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/ronly/*-%d-*", pid))
				return append(m, n...)
			}
			if profile == "ci" {
				// PID 1 of the namespace dies with the init, and the
				// kernel kills the rest: give it a moment.
				for i := 0; i < 100 && len(marked(marker)) > 0; i++ {
					time.Sleep(20 * time.Millisecond)
				}
				if left := marked(marker); len(left) > 0 {
					t.Errorf("the ci profile's processes outlived a killed supervisor: %v", left)
				}
			} else if len(marked(marker)) == 0 || len(cgroups()) == 0 {
				// Documented behaviour; if it changes, the README must too.
				t.Errorf("expected the debug session's daemons and cgroup to outlive a killed supervisor until the next session: processes %v, cgroups %v", marked(marker), cgroups())
			}
			if r := b.run(t, opts{}, "--", "/bin/true"); r.code != 0 {
				t.Fatalf("next session:\n%s", r)
			}
			if left := marked(marker); len(left) > 0 {
				t.Errorf("processes of the killed session outlived the next session: %v", left)
			}
			if left := cgroups(); len(left) > 0 {
				t.Errorf("cgroups of the killed session outlived the next session: %v", left)
			}
			if after := mountLines(t); !slices.Equal(mounts, after) {
				t.Errorf("the host's mount table changed: new %v", newEntries(mounts, after))
			}
		})
	}
}

// TestWorkspaceUnderTmp: a checkout under the host's /tmp (where CI
// runners and people clone to) can be the ci profile's workspace and a --rw
// directory, though /tmp inside is a fresh tmpfs that hides the path.
func TestWorkspaceUnderTmp(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	ws, err := os.MkdirTemp("/tmp", "ronly-e2e-ws-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(ws)
	other, err := os.MkdirTemp("/tmp", "ronly-e2e-rw-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)
	r := b.run(t, opts{dir: ws}, "--profile", "ci", "--rw", other, "--", "/bin/sh", "-c",
		"echo a > artifact && echo b > "+other+"/kept")
	if r.code != 0 {
		t.Fatalf("ci job in a workspace under /tmp:\n%s", r)
	}
	for _, p := range []string{filepath.Join(ws, "artifact"), filepath.Join(other, "kept")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the write did not reach the host: %v", err)
		}
	}
}
