package sandbox

import (
	"bytes"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/mountinfo"
	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// Root maps every id to itself; anyone else maps only their own ids, after
// denying setgroups, which the kernel requires for an unprivileged gid_map.
func TestIDMaps(t *testing.T) {
	for _, c := range []struct {
		uid, gid     int
		all          bool
		uidMap, gidM string
		deny         bool
	}{
		{0, 0, true, "0 0 4294967295\n", "0 0 4294967295\n", false},
		{1000, 100, false, "1000 1000 1\n", "100 100 1\n", true},
		{0, 0, false, "0 0 1\n", "0 0 1\n", true},
	} {
		u, g, deny := idMaps(c.uid, c.gid, c.all)
		if u != c.uidMap || g != c.gidM || deny != c.deny {
			t.Errorf("idMaps(%d, %d, %t) = %q, %q, %t; want %q, %q, %t", c.uid, c.gid, c.all, u, g, deny, c.uidMap, c.gidM, c.deny)
		}
	}
}

// Without a cgroup, each limit falls back to the rlimit that bounds one
// process; CPU time counts whole seconds, rounded up so that a limit is
// never shorter than asked.
func TestRlimits(t *testing.T) {
	for _, c := range []struct {
		lim  policy.Limits
		want []rlimit
	}{
		{policy.Limits{}, nil},
		{policy.Limits{Timeout: time.Minute}, nil}, // the supervisor's clock, not an rlimit
		{policy.Limits{Memory: 1 << 30}, []rlimit{{unix.RLIMIT_AS, 1 << 30, "RLIMIT_AS"}}},
		{policy.Limits{Pids: 64}, []rlimit{{unix.RLIMIT_NPROC, 64, "RLIMIT_NPROC"}}},
		{policy.Limits{CPUTime: 1500 * time.Millisecond}, []rlimit{{unix.RLIMIT_CPU, 2, "RLIMIT_CPU"}}},
		{policy.Limits{CPUTime: 3 * time.Second}, []rlimit{{unix.RLIMIT_CPU, 3, "RLIMIT_CPU"}}},
		{policy.Limits{CPUTime: time.Millisecond}, []rlimit{{unix.RLIMIT_CPU, 1, "RLIMIT_CPU"}}},
		{policy.Limits{Memory: 1 << 20, Pids: 2, CPUTime: time.Second},
			[]rlimit{{unix.RLIMIT_AS, 1 << 20, "RLIMIT_AS"}, {unix.RLIMIT_NPROC, 2, "RLIMIT_NPROC"}, {unix.RLIMIT_CPU, 1, "RLIMIT_CPU"}}},
	} {
		if got := rlimits(c.lim); !reflect.DeepEqual(got, c.want) {
			t.Errorf("rlimits(%+v) = %+v, want %+v", c.lim, got, c.want)
		}
	}
}

// The command's exit status is ronly's; a signal N that killed it is
// 128+N, as a shell says it.
func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 255", 255},
		{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
	} {
		cmd := exec.Command("/bin/sh", "-c", c.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		code, err := exitCode(cmd, cmd.Wait())
		if err != nil || code != c.want {
			t.Errorf("%s: exit code %d, %v; want %d", c.script, code, err, c.want)
		}
	}
}

// A session's result holds every refusal recorded, by kind and name (the
// supervisor's, the guards' and the shims' over the report pipe), the
// refusals the shims' pipe dropped, the limit that ended it and its layers;
// the audit hook sees each refusal as it happens.
func TestResult(t *testing.T) {
	p := &policy.Policy{Mode: policy.ModeAuto, TmpfsSize: 1 << 20, ShimTools: []string{"docker"}}
	var seen []string
	o := Options{Session: "s1", Refused: func(r Refusal) { seen = append(seen, string(r.Kind)+" "+r.What) }}
	var warned []string
	gate := &warnGate{out: func(m string) { warned = append(warned, m) }}
	tl := &timeline{start: time.Now()}
	pl, err := newPlan(p, Host{LandlockABI: 7}, Programs{})
	if err != nil {
		t.Fatal(err)
	}
	creds := &CredPlan{mounts: []cinit.Mount{{Kind: cinit.MountHide, Path: "/k"}}, Hidden: []string{"/k"}}
	s := newSession(p, o, prepared{plan: pl, creds: creds}, gate, tl)
	if s.cfg.Mounts[0].Path != "/tmp" || s.layers.Mode != "rootless" {
		t.Fatalf("the session does not hold its plan: %+v, %+v", s.cfg.Mounts, *s.layers)
	}
	s.record(Refusal{Kind: RefusedSyscall, What: "mount"})
	s.record(Refusal{Kind: RefusedSyscall, What: "mount"})
	s.record(Refusal{Kind: RefusedAPI, What: "POST /containers/create"})
	s.reports.read(strings.NewReader(`{"kind":"command","tool":"docker","subcommand":"run"}`+"\n"+
		`{"kind":"syscall","what":"forged"}`+"\n"), s.record)
	s.setHit("memory")
	s.setHit("timeout") // the first limit hit is the one that ended it
	tl.mark("cleaned up")
	r := s.result(3)
	want := map[string]map[string]uint64{"syscall": {"mount": 2}, "api": {"POST /containers/create": 1}, "command": {"docker run": 1}}
	if !reflect.DeepEqual(r.Blocked, want) {
		t.Errorf("blocked %v, want %v", r.Blocked, want)
	}
	if r.ExitCode != 3 || r.LimitHit != "memory" || r.MalformedReports != 1 {
		t.Errorf("exit %d, limit %q, malformed %d; want 3, memory, 1", r.ExitCode, r.LimitHit, r.MalformedReports)
	}
	if r.Layers != pl.Layers {
		t.Errorf("layers %+v, want the plan's %+v", r.Layers, pl.Layers)
	}
	if !reflect.DeepEqual(r.Creds.Hidden, []string{"/k"}) {
		t.Errorf("creds %+v", r.Creds)
	}
	if len(r.Timeline) != 1 || r.Timeline[0].Step != "cleaned up" {
		t.Errorf("timeline %+v", r.Timeline)
	}
	if want := []string{"syscall mount", "syscall mount", "api POST /containers/create", "command docker run"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("audit hook saw %q, want %q", seen, want)
	}
	// What the session said before the sandbox was built is held.
	s.warn("held")
	if len(warned) != 0 {
		t.Errorf("warned %q before the sandbox was built", warned)
	}
}

// Each start adds to the plan what its mode needs: a user namespace
// unless privileged, and the notify-signals program where neither
// Landlock (ABI 6) nor a PID namespace confines signals.
func TestModeConfig(t *testing.T) {
	notify, errno, withSignals := []byte("NOTIFY-8"), []byte("ERRNO--8"), []byte("SIGNALS8")
	for _, c := range []struct {
		mode       policy.Mode
		abi        int
		pidns      bool
		userns     bool
		mediation  bool // signals go to the supervisor
		wantBPF    []byte
		wantNoFall bool
	}{
		{policy.ModeUserNS, 7, false, true, false, notify, false},
		{policy.ModeRootless, 7, false, true, false, notify, false},
		{policy.ModePrivileged, 7, false, false, false, notify, false},
		{policy.ModeRootless, 5, false, true, true, withSignals, true},
		{policy.ModePrivileged, 5, false, false, true, withSignals, true},
		{policy.ModeRootless, 5, true, true, false, notify, false},
	} {
		p := &policy.Policy{Mode: c.mode, TmpfsSize: 1 << 20, PIDNS: c.pidns}
		pl, err := newPlan(p, Host{LandlockABI: c.abi, Root: true}, Programs{Notify: notify, Errno: errno})
		if err != nil {
			t.Fatal(err)
		}
		s := newSession(p, Options{}, prepared{plan: pl, withSignals: withSignals}, &warnGate{out: func(string) {}}, &timeline{start: time.Now()})
		cfg, shimDir, _, err := s.modeConfig()
		if err != nil {
			t.Fatalf("%s ABI %d: %v", c.mode, c.abi, err)
		}
		name := fmt.Sprintf("%s ABI %d pidns=%t", c.mode, c.abi, c.pidns)
		if got := cfg.Flags&cinit.FlagUserNS != 0; got != c.userns || s.layers.UserNS != c.userns {
			t.Errorf("%s: user namespace %t (layers %t), want %t", name, got, s.layers.UserNS, c.userns)
		}
		if !c.userns && cfg.UsernsLimits != nil {
			t.Errorf("%s: user namespace limits without a user namespace", name)
		}
		if s.layers.SignalMediation != c.mediation || s.sigs.on != c.mediation {
			t.Errorf("%s: signal mediation %t, want %t", name, s.layers.SignalMediation, c.mediation)
		}
		if !bytes.Equal(cfg.BPF, c.wantBPF) || (cfg.Fallback == nil) != c.wantNoFall {
			t.Errorf("%s: programs %q, %q", name, cfg.BPF, cfg.Fallback)
		}
		if shimDir == "" {
			t.Errorf("%s: no shim directory", name)
		}
		if !bytes.Equal(s.cfg.BPF, notify) {
			t.Errorf("%s: a start changed the plan's program for the next one", name)
		}
	}
}

// TestMountsAhead: the read of the mount table begun ahead goes to the
// first taker only; later takers, and takers without a read ahead, read
// for themselves, and no read begins after a take.
func TestMountsAhead(t *testing.T) {
	reads := uint64(0)
	read := func() ([]mountinfo.Mount, error) {
		reads++
		return []mountinfo.Mount{{ID: reads}}, nil
	}
	var a mountsAhead
	a.begin(read)
	a.begin(read) // once
	if ms, err := a.take(read); err != nil || len(ms) != 1 || ms[0].ID != 1 {
		t.Errorf("first take: %v, %v; want the read begun ahead", ms, err)
	}
	if ms, _ := a.take(read); len(ms) != 1 || ms[0].ID != 2 {
		t.Errorf("second take: %v; want a read of its own", ms)
	}
	var b mountsAhead
	if ms, _ := b.take(read); len(ms) != 1 || ms[0].ID != 3 {
		t.Errorf("a take without a read ahead: %v; want a read of its own", ms)
	}
	b.begin(read)
	if b.done != nil || reads != 3 {
		t.Errorf("a read began after a take (%d reads)", reads)
	}
}
