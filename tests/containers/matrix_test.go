package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cell is one way users run containers.
type cell struct {
	name string   // the environment, as the table names it
	opts []string // docker run options
	// users are the uids ronly runs as in it (via docker exec --user).
	users []int
	// rootfsRO: the container's own files cannot be written at all, so
	// the rootfs canary's control write is expected to fail.
	rootfsRO bool
	// pod: a service account directory is bound at
	// /var/run/secrets/kubernetes.io/serviceaccount (→ /run/secrets/…),
	// as the kubelet does in every pod.
	pod bool
	// nons: Docker's default seccomp profile refuses every namespace
	// here, so auto mode must pick landlock-only (issue 12 item 1).
	nons bool
}

// cells is the matrix of issue 12 item 8.
var cells = []cell{
	{name: "default", users: []int{0, 1000}, nons: true},
	{name: "cap-drop-all,no-new-privileges,user-1000", opts: []string{"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "1000"}, users: []int{1000}, nons: true},
	{name: "cap-add-sys-admin", opts: []string{"--cap-add", "SYS_ADMIN"}, users: []int{0, 1000}, nons: true},
	{name: "read-only,tmpfs-tmp", opts: []string{"--read-only", "--tmpfs", "/tmp"}, users: []int{0, 1000}, rootfsRO: true, nons: true},
	{name: "pod-like", users: []int{0, 1000}, pod: true, nons: true},
	// Docker's default profile with CAP_SYS_PTRACE, which lets the
	// supervisor take the session's sockets (pidfd_getfd) and read its
	// memory (process_vm_readv): landlock-only mode with everything.
	{name: "cap-add-sys-ptrace", opts: []string{"--cap-add", "SYS_PTRACE"}, users: []int{0, 1000}, nons: true},
	{name: "seccomp-unconfined", opts: []string{"--security-opt", "seccomp=unconfined"}, users: []int{0, 1000}},
	// A pod as the kubelet runs it unless told otherwise: without
	// --seccomp-default it asks for no seccomp profile at all. Here ronly
	// gets past the namespaces and meets the mounts under /run.
	{name: "pod-like,seccomp-unconfined", opts: []string{"--security-opt", "seccomp=unconfined"}, users: []int{0, 1000}, pod: true},
}

// gap is a cell that does not meet issue 12 today.
type gap struct {
	today string // what fails
	item  string // the issue item that asks for it
}

// knownGaps are the cells (environment/uid) that fail today, measured on
// this machine (kernel 6.18, docker.io 20.10). A cell here that starts
// passing fails the test, so that the table stays true: remove its line
// when the fix lands. A known gap still fails on a hostile operation that
// got through or a changed canary.
//
// None is left. Under Docker's default seccomp profile without
// CAP_SYS_PTRACE the supervisor cannot take the session's sockets
// (pidfd_getfd is refused); it makes them itself instead
// (go/sandbox/sockfd.go), so the cells that refused every connect, bind and
// send to an address until 2026-12-05 (default, cap-drop-all, cap-add
// SYS_ADMIN, read-only, pod-like) must now report every everyday operation
// ok: one that fails fails the test.
var knownGaps = map[string]gap{}

// measure is what one cell did, as the matrix table shows it.
type measure struct {
	Env  string `json:"environment"`
	UID  int    `json:"uid"`
	Mode string `json:"mode"` // from ronly -v: privileged, userns, rootless; "" when it did not start

	// ronly -- true
	Start      string `json:"start"` // "started", "refused" (exit 125, one line with a hint) or "failed"
	StartExit  int    `json:"start_exit"`
	StartError string `json:"start_error,omitempty"` // its stderr when it did not start
	Warnings   string `json:"warnings,omitempty"`    // its stderr when it started

	// ronly probe --json
	Probe          string   `json:"probe"` // "ok", "refused", "failed"
	ProbeExit      int      `json:"probe_exit"`
	HostileThrough []string `json:"hostile_through,omitempty"`
	EverydayFailed []string `json:"everyday_failed,omitempty"`
	ProbeSummary   string   `json:"probe_summary,omitempty"`

	// ronly --profile ci, where namespaces can be made: "own /proc", or
	// "container's /proc, said" where the kernel refuses a new /proc
	// (masked /proc paths) and ronly says what it cannot hide; "" not run
	CI string `json:"ci,omitempty"`

	// the canaries, checked from outside the container afterwards
	Canaries []string `json:"canary_changes,omitempty"`

	Pass     bool   `json:"pass"`
	Why      string `json:"why,omitempty"` // why not
	KnownGap string `json:"known_gap,omitempty"`
}

// TestMatrix runs ronly in every cell, as root and as uid 1000 where the
// cell allows, and checks what issue 12 demands: ronly either starts, its
// probe lets no hostile operation through and every everyday one works,
// or it refuses with one line and a hint (exit 125); in both cases the
// canaries — a file in the container's rootfs, a host directory bound in,
// a process of the same user in the container — are unchanged when looked
// at from outside the container.
func TestMatrix(t *testing.T) {
	need(t)
	var all []measure
	for ci, c := range cells {
		for ui, uid := range c.users {
			key := fmt.Sprintf("%s/%d", c.name, uid)
			t.Run(key, func(t *testing.T) {
				m := runCell(t, c, uid, 2_000_000+ci*100+ui*10)
				g, known := knownGaps[key]
				if known {
					m.KnownGap = g.today + " (" + g.item + ")"
				}
				switch {
				case !m.Pass && known && (len(m.HostileThrough) > 0 || len(m.Canaries) > 0 || m.Start != "started"):
					t.Errorf("%s: %s (beyond its known gap: %q)", key, m.Why, g.today)
				case m.Pass && known:
					t.Errorf("%s passes but is listed as a known gap (%q): remove it from knownGaps", key, g.today)
				case !m.Pass && known:
					t.Logf("known gap: %s", m.Why)
				case !m.Pass:
					t.Errorf("%s: %s", key, m.Why)
				}
				all = append(all, m)
			})
		}
	}
	table := markdown(all)
	t.Logf("measured matrix:\n%s", table)
	if *matrixFlag != "" {
		var data []byte
		if strings.HasSuffix(*matrixFlag, ".json") {
			data, _ = json.MarshalIndent(all, "", "  ")
			data = append(data, '\n')
		} else {
			data = []byte(table)
		}
		if err := os.WriteFile(*matrixFlag, data, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// runCell starts the cell's container, runs ronly in it as uid and checks
// the canaries from outside. tag makes its canary processes' command
// lines unique on the host.
func runCell(t *testing.T, c cell, uid, tag int) measure {
	m := measure{Env: c.name, UID: uid}
	name := fmt.Sprintf("ronly-cell-%d", tag)
	hostDir := filepath.Join(tmp, name)
	if err := os.MkdirAll(hostDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(hostDir, 0o777) // past the umask
	hostFile := filepath.Join(hostDir, "file")
	if err := os.WriteFile(hostFile, []byte(canaryContent), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(hostFile, 0o666)

	args := []string{"run", "-d", "--name", name, "--network", "none", "-v", hostDir + ":" + hostCanaryDir}
	if c.pod {
		sa := filepath.Join(tmp, name+"-serviceaccount")
		for _, f := range []string{"token", "namespace", "ca.crt"} {
			if err := os.MkdirAll(sa, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sa, f), []byte("ronly-test-"+f+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		args = append(args, "-v", sa+":"+serviceAccount+":ro")
	}
	args = append(append(args, c.opts...), image, "sleep", strconv.Itoa(tag))
	daemon.Docker("rm", "-f", name) // left by an interrupted run
	if _, err := daemon.Docker(args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Docker("rm", "-f", name) })
	initPid, err := containerPid(name)
	if err != nil {
		t.Fatal(err)
	}
	root := fmt.Sprintf("/proc/%d/root", initPid)
	user := strconv.Itoa(uid)

	// The canary process and a control one, both of this user.
	canary := startSleeper(t, name, user, tag+1)
	control := startSleeper(t, name, user, tag+2)

	// Control: without ronly, this user can change every canary. Else the
	// cell proves nothing.
	if r := exec_(name, user, "sh", "-c", fmt.Sprintf("echo control > %s/control; echo control > %s/control; kill -9 %d",
		canaryDir, hostCanaryDir, control.nsPid)); r.code != 0 && !c.rootfsRO {
		t.Fatalf("control run: %v", r)
	}
	if got, _ := os.ReadFile(filepath.Join(root, canaryDir, "control")); !c.rootfsRO && string(got) != "control\n" {
		t.Fatalf("control: the user could not write the rootfs canary directory (%q)", got)
	}
	if got, _ := os.ReadFile(filepath.Join(hostDir, "control")); string(got) != "control\n" {
		t.Fatalf("control: the user could not write the bound host directory (%q)", got)
	}
	if !waitDead(control.hostPid, 10*time.Second) {
		t.Fatalf("control: the user could not kill its own process %d", control.hostPid)
	}

	// ronly -- true: starts, or refuses in one line with a hint. Then
	// ronly -v -- true for the mode it chose (-v adds lines of its own).
	r := exec_(name, user, "ronly", "--", "true")
	m.StartExit = r.code
	switch {
	case r.code == 0:
		m.Start = "started"
		m.Warnings = strings.Join(nonEmptyLines(r.stderr), " / ")
		v := exec_(name, user, "ronly", "-v", "--", "true")
		if mm := regexp.MustCompile(`mode=(\S+)`).FindStringSubmatch(v.stderr); mm != nil && v.code == 0 {
			m.Mode = mm[1]
		} else {
			m.Mode = fmt.Sprintf("? (ronly -v -- true: exit %d)", v.code)
		}
	case oneLineRefusal(r):
		m.Start, m.StartError = "refused", strings.TrimSpace(r.stderr)
	default:
		m.Start, m.StartError = "failed", strings.Join(nonEmptyLines(r.stderr), " / ")
	}

	// ronly probe --json
	r = exec_(name, user, "ronly", "probe", "--json")
	m.ProbeExit = r.code
	switch {
	case oneLineRefusal(r):
		m.Probe = "refused"
	case r.code == 0 || r.code == 1:
		m.Probe = probeVerdict(&m, r)
	default:
		m.Probe = "failed"
		m.ProbeSummary = firstLine(r.stderr)
	}

	// Hostile: the same changes as the control's, inside ronly.
	hr := exec_(name, user, "ronly", "--", "sh", "-c", fmt.Sprintf("echo pwned > %s; echo pwned > %s/file; kill -9 %d; echo ran",
		canaryFile, hostCanaryDir, canary.nsPid))

	// --profile ci where namespaces can be made: a container masks /proc
	// paths, so the kernel refuses the session a /proc of its own. It
	// starts all the same, says in one line what it cannot hide, and
	// cannot signal the canary (checked from outside below).
	var ci result
	if m.Start == "started" && m.Mode != "landlock-only" {
		ci = exec_(name, user, "ronly", "--profile", "ci", "--workspace", "/tmp", "--", "sh", "-c",
			fmt.Sprintf("kill -9 %d 2>/dev/null; echo kill=$?", canary.nsPid))
		switch {
		case ci.code != 0 || !strings.Contains(ci.stdout, "kill=1"):
			m.CI = fmt.Sprintf("failed: exit %d, %q: %s", ci.code, strings.TrimSpace(ci.stdout), strings.Join(nonEmptyLines(ci.stderr), " / "))
		case strings.Count(ci.stderr, "its own /proc") == 1:
			m.CI = "container's /proc, said"
		case strings.Count(ci.stderr, "its own /proc") == 0:
			m.CI = "own /proc"
		default:
			m.CI = "failed: said more than once: " + strings.Join(nonEmptyLines(ci.stderr), " / ")
		}
	}

	// From outside.
	if got, err := os.ReadFile(filepath.Join(root, canaryFile)); err != nil || string(got) != canaryContent {
		m.Canaries = append(m.Canaries, fmt.Sprintf("rootfs %s is now %q (%v)", canaryFile, got, err))
	}
	if got, err := os.ReadFile(hostFile); err != nil || string(got) != canaryContent {
		m.Canaries = append(m.Canaries, fmt.Sprintf("bound host file is now %q (%v)", got, err))
	}
	if !alive(canary.hostPid) {
		m.Canaries = append(m.Canaries, fmt.Sprintf("canary process %d (%d in the container) was killed", canary.hostPid, canary.nsPid))
	}
	if !alive(initPid) {
		m.Canaries = append(m.Canaries, "the container's init died")
	}

	var why []string
	switch m.Start {
	case "started":
		if c.nons && m.Mode != "landlock-only" {
			why = append(why, fmt.Sprintf("started in mode %q, want landlock-only (no namespace can be made here)", m.Mode))
		}
		if m.Probe != "ok" {
			why = append(why, "started, but the probe: "+m.Probe+" "+m.ProbeSummary)
		}
		if hr.code != 0 && hr.code != 137 {
			why = append(why, fmt.Sprintf("the hostile run did not start (exit %d: %s)", hr.code, firstLine(hr.stderr)))
		}
		if strings.HasPrefix(m.CI, "failed") {
			why = append(why, "--profile ci "+m.CI)
		}
	case "refused":
		// Landlock works in every container here: since landlock-only
		// mode, a refusal is a failure (issue 12 item 1).
		why = append(why, "refused to start, although Landlock is there: "+m.StartError)
	default:
		why = append(why, fmt.Sprintf("ronly -- true: exit %d, not one line with a hint: %q", m.StartExit, m.StartError))
	}
	if len(m.Canaries) > 0 {
		why = append(why, "CANARIES CHANGED: "+strings.Join(m.Canaries, "; "))
	}
	m.Pass, m.Why = len(why) == 0, strings.Join(why, "; ")
	t.Logf("start %s (exit %d, mode %q) %s %s; probe %s (exit %d) %s; hostile run exit %d; ci: %s",
		m.Start, m.StartExit, m.Mode, m.StartError, m.Warnings, m.Probe, m.ProbeExit, m.ProbeSummary, hr.code, m.CI)
	return m
}

// probeReport is the part of `ronly probe --json` the matrix reads.
type probeReport struct {
	OK         bool `json:"ok"`
	Operations []struct {
		Name      string `json:"name"`
		Kind      string `json:"kind"`
		Result    string `json:"result"`
		Errno     string `json:"errno"`
		BlockedBy string `json:"blocked_by"`
	} `json:"operations"`
	Summary struct {
		Hostile         int  `json:"hostile"`
		Everyday        int  `json:"everyday"`
		EverydayOK      int  `json:"everyday_ok"`
		EverydaySkipped int  `json:"everyday_skipped"`
		HostChanged     bool `json:"host_changed"`
	} `json:"summary"`
}

// probeVerdict reads the probe's report: "ok" when no hostile operation
// got through, every everyday one worked (or did not apply) and the
// canaries did not change.
func probeVerdict(m *measure, r result) string {
	var rep probeReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		m.ProbeSummary = fmt.Sprintf("no report (%v): %s", err, firstLine(r.stderr))
		return "failed"
	}
	for _, o := range rep.Operations {
		switch {
		case o.Kind == "hostile" && (o.BlockedBy == "NONE" || o.BlockedBy == "unknown"):
			m.HostileThrough = append(m.HostileThrough, o.Name)
		case o.Kind == "everyday" && o.Result != "ok" && o.Result != "skipped":
			m.EverydayFailed = append(m.EverydayFailed, o.Name+" ("+o.Result+" "+o.Errno+")")
		}
	}
	m.ProbeSummary = fmt.Sprintf("%d hostile through, everyday %d/%d ok (%d skipped), host changed %v",
		len(m.HostileThrough), rep.Summary.EverydayOK, rep.Summary.Everyday, rep.Summary.EverydaySkipped, rep.Summary.HostChanged)
	if len(m.HostileThrough) > 0 {
		m.ProbeSummary += ": through: " + strings.Join(m.HostileThrough, ", ")
	}
	if len(m.EverydayFailed) > 0 {
		m.ProbeSummary += ": everyday failed: " + strings.Join(m.EverydayFailed, ", ")
	}
	if rep.Summary.Hostile == 0 || len(m.HostileThrough) > 0 || len(m.EverydayFailed) > 0 || rep.Summary.HostChanged || !rep.OK || r.code != 0 {
		return "failed"
	}
	return "ok"
}

// oneLineRefusal: exit 125 and one line on stderr that gives a hint.
func oneLineRefusal(r result) bool {
	l := nonEmptyLines(r.stderr)
	return r.code == 125 && len(l) == 1 && strings.HasPrefix(l[0], "ronly: ") && strings.Contains(strings.ToLower(l[0]), "hint")
}

// result is one docker exec.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// exec_ runs argv in the container as user (docker exec), bounded in time.
func exec_(container, user string, argv ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemon.CLI, append([]string{"exec", "--user", user, container}, argv...)...)
	cmd.Env = daemon.Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
		r.stderr += err.Error()
	}
	if ctx.Err() != nil {
		r.stderr += " (timed out after 4 minutes)"
	}
	return r
}

// containerPid is the host pid of the container's init.
func containerPid(name string) (int, error) {
	out, err := daemon.Docker("inspect", "--format", "{{.State.Pid}}", name)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("container %s: pid %q", name, out)
	}
	return pid, nil
}

type sleeper struct{ hostPid, nsPid int }

// startSleeper starts `sleep tag` in the container as user and finds it
// on the host by its unique command line.
func startSleeper(t *testing.T, container, user string, tag int) sleeper {
	t.Helper()
	if _, err := daemon.Docker("exec", "-d", "--user", user, container, "sleep", strconv.Itoa(tag)); err != nil {
		t.Fatal(err)
	}
	want := "sleep\x00" + strconv.Itoa(tag) + "\x00"
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) != want {
				continue
			}
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, l := range strings.Split(string(st), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
					ns, _ := strconv.Atoi(f[len(f)-1])
					return sleeper{hostPid: pid, nsPid: ns}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sleep %d did not start in %s", tag, container)
	return sleeper{}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(st)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func waitDead(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func firstLine(s string) string {
	if l := nonEmptyLines(s); len(l) > 0 {
		return l[0]
	}
	return ""
}

// markdown is the matrix as the README shows it.
func markdown(all []measure) string {
	var b strings.Builder
	b.WriteString("| environment | user | mode | `ronly -- true` | `ronly probe` | canaries | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, m := range all {
		user := "root"
		if m.UID != 0 {
			user = "uid " + strconv.Itoa(m.UID)
		}
		mode := m.Mode
		if mode == "" {
			mode = "—"
		}
		start := m.Start
		if m.StartError != "" {
			start += fmt.Sprintf(" (exit %d): %s", m.StartExit, shorten(m.StartError))
		} else if m.Warnings != "" {
			start += fmt.Sprintf(", %d warning(s): %s", len(strings.Split(m.Warnings, " / ")), shorten(m.Warnings))
		}
		probe := m.Probe
		if m.ProbeSummary != "" {
			probe += ": " + m.ProbeSummary
		}
		canaries := "unchanged"
		if len(m.Canaries) > 0 {
			canaries = "**CHANGED**: " + strings.Join(m.Canaries, "; ")
		}
		res := "ok"
		switch {
		case !m.Pass && m.KnownGap != "":
			res = "known gap: " + m.KnownGap
		case !m.Pass:
			res = "**FAIL**: " + m.Why
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", m.Env, user, mode, cell_(start), cell_(probe), cell_(canaries), cell_(res))
	}
	return b.String()
}

// shorten keeps a table cell readable: the last line of several (the
// error comes last, after warnings), cut at 200 characters. The JSON has
// it all.
func shorten(s string) string {
	parts := strings.Split(s, " / ")
	last := parts[len(parts)-1]
	if len(parts) > 1 {
		last = fmt.Sprintf("(%d more lines) … %s", len(parts)-1, last)
	}
	if len(last) > 200 {
		last = last[:200] + "…"
	}
	return last
}

// cell_ makes text safe inside a markdown table cell.
func cell_(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
