package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/sandbox"
)

// `ronly probe` runs the probe battery (package probe) in cumulative
// sandboxes, each adding one layer to the one before, and says which layer
// refuses each hostile operation: the first from which on it is refused.
// Attribution by experiment, not by guessing from errnos.
//
// Three processes take part, all this binary:
//
//	ronly probe                            the orchestrator: makes the canaries on the host,
//	                                       checks them from outside, prints the report
//	ronly probe-internal supervise         one sandbox session (sandbox.Run) per run, in a
//	                                       process group of its own: a partial sandbox may
//	                                       let the battery kill its supervisor, and only
//	                                       this process must then die
//	/proc/self/exe probe-internal inside   the battery, inside the sandbox (probe.RunStream)
//
// plus the canary process, `ronly probe-internal canary`, which only sleeps.

// ProbeCmd checks what ronly's sandbox refuses on this kernel.
type ProbeCmd struct {
	JSON      bool   `name:"json" help:"Print a JSON document (version 1) instead of the table."`
	CanaryDir string `name:"canary-dir" placeholder:"DIR" help:"Make the canaries in DIR (default: $TMPDIR, /var/tmp, /run or your runtime directory, /tmp: the first that is writable and visible inside)."`
}

// Help is `ronly probe --help`'s text after the synopsis.
func (c *ProbeCmd) Help() string {
	return `Runs ronly's battery of ~150 hostile operations (write a canary file, signal a
canary process, remount the root, reach a hidden socket...) and ~50 everyday
ones inside the sandbox your flags describe, first with layers left out:

  mount+caps  namespaces, read-only root, private /dev, capabilities dropped
              (no user namespace: root only; for others it is mount+caps+userns)
  userns      + a user namespace
  landlock    + Landlock
  seccomp     + the seccomp filter: the full sandbox

Where no namespace can be made (or with --mode landlock-only) there are two:
caps+landlock (no namespaces, capabilities dropped, Landlock) and seccomp.

An operation is blocked by the layer from which on it is refused: found by
trying, not guessed from the errno. NONE means no layer refused it.
The canaries are made for the occasion, checked from outside after each
sandbox, and removed: in --canary-dir, else in the first writable directory
of $TMPDIR, /var/tmp, /run (your runtime directory when not root) and /tmp
that the sandbox shows as the host has it (not /tmp, which it replaces).
--rootless and --privileged choose the configurations' mode; as root, a
first configuration without a user namespace that cannot be built here is
left out, and the report says why.

--json prints a document, version 1: {"version", "kernel", "landlock_abi",
"configurations": [{"name", "mode", "landlock_abi", "seccomp", "host_changes",
...}], "operations": [{"name", "kind", "result", "errno", "blocked_by",
"results_by_config": {NAME: {"outcome", "errno"}}}], "summary", "ok"}
(see go/probe/layers.go, type Report).

Exit status: 0 when the full sandbox refused every hostile operation, every
everyday one worked and the host did not change; 1 otherwise; 125 when ronly
itself failed.`
}

// ProbeInternalCmd holds the hidden parts `ronly probe` runs itself.
type ProbeInternalCmd struct {
	Supervise ProbeSuperviseCmd `cmd:"" help:"Run one sandbox session of the probe (request on stdin)."`
	Inside    ProbeInsideCmd    `cmd:"" help:"Run the probe battery; refuses outside a sandbox."`
	Canary    ProbeCanaryCmd    `cmd:"" help:"Sleep until killed: the probe's canary process."`
	Mode      ProbeModeCmd      `cmd:"" help:"Print the mode a session of the policy on stdin gets."`
}

// probeRunTimeout bounds one sandbox session of the probe, so that a hung
// session fails the probe instead of hanging it.
const probeRunTimeout = 3 * time.Minute

// probeMaxRuns bounds the sessions one configuration may take. Each
// session runs at least one operation, so this is never reached unless
// something is wrong.
const probeMaxRuns = 100

// probeConfig is one cumulative sandbox and what the battery did in it.
type probeConfig struct {
	name    string
	policy  *policy.Policy
	results map[int]probe.Result
	runs    int
	changes []string
	// What the sandbox reported it had (the last session's), the
	// supervisor's counts of refused actions and its warnings.
	layers   sandbox.Layers
	blocked  map[string]map[string]uint64
	warnings []string
}

// Run probes and prints the report; status is 0 when the full sandbox
// refused every hostile operation and let every everyday one work.
func (c *ProbeCmd) Run(cli *CLI, status *int) error {
	full, err := cli.policy(nil)
	if err != nil {
		return err
	}
	pr := &prober{ops: probe.All(), root: os.Geteuid() == 0, verbose: full.Verbose}
	if full.Mode == policy.ModeAuto {
		// Where no namespace can be made, ronly runs in landlock-only
		// mode, and every configuration must: the battery's scratch is
		// then $TMPDIR, and no configuration goes without Landlock (the
		// host's own tree would be all there is between a hostile
		// operation and the host).
		if mode, err := trialMode(full); err == nil && mode == sandbox.LandlockOnly {
			full.Mode = policy.ModeLandlockOnly
			pr.left = "no namespace can be made here: every configuration is landlock-only, and none goes without Landlock"
		}
	}
	pr.configs = probeConfigs(full, pr.root)
	if pr.canaryDir, err = canaryParent(c.CanaryDir, full, pr.root); err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
			pr.interrupt()
		}
	}()

	for i := 0; i < len(pr.configs); i++ {
		cfg := pr.configs[i]
		err := pr.runConfig(cfg)
		var se *sessionError
		if errors.As(err, &se) && i == 0 && full.Mode == policy.ModeAuto && cfg.policy.Mode == policy.ModePrivileged && len(cfg.results) == 0 {
			// Root without the capabilities or the seccomp profile that
			// privileged mode needs (a container's root): ronly itself
			// runs in a user namespace here, and so does the probe.
			why := err
			if u := errors.Unwrap(err); u != nil {
				why = u // without "probe: configuration NAME: "
			}
			pr.left = fmt.Sprintf("the %s configuration (no user namespace) cannot be built here (%v): "+
				"the first configuration has a user namespace, so the mount and user namespace layers cannot be told apart", cfg.name, why)
			pr.configs = pr.configs[1:]
			pr.configs[0].name = "mount+caps+userns"
			i--
			continue
		}
		if err != nil {
			return err
		}
	}
	rep := pr.report()
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printProbeTable(os.Stdout, rep)
	}
	if !rep.OK {
		*status = 1
	}
	return nil
}

// probeConfigs are the cumulative sandboxes for the full policy: without
// Landlock and seccomp, first without a user namespace (root only), then
// with one; then with Landlock; then the full sandbox. A user who is not
// root cannot go without a user namespace, and one who asked for
// --privileged gets none in any.
func probeConfigs(full *policy.Policy, root bool) []*probeConfig {
	with := func(name string, change func(p *policy.Policy)) *probeConfig {
		p := *full
		change(&p)
		return &probeConfig{name: name, policy: &p, results: map[int]probe.Result{}}
	}
	bare := func(p *policy.Policy) { p.SkipLandlock, p.SkipSeccomp, p.LandlockMinABI = true, true, 0 }
	var out []*probeConfig
	switch {
	case full.Mode == policy.ModeLandlockOnly:
		// Without Landlock nothing but the host's own permissions would
		// stand between the battery and the host: the first
		// configuration has it already.
		return []*probeConfig{
			with("caps+landlock", func(p *policy.Policy) { p.SkipSeccomp = true }),
			with("seccomp", func(*policy.Policy) {})}
	case root && full.Mode == policy.ModeAuto:
		out = append(out,
			with("mount+caps", func(p *policy.Policy) { bare(p); p.Mode = policy.ModePrivileged }),
			with("userns", bare))
	case full.Mode == policy.ModePrivileged:
		out = append(out, with("mount+caps", bare))
	default:
		out = append(out, with("mount+caps+userns", bare))
	}
	return append(out,
		with("landlock", func(p *policy.Policy) { p.SkipSeccomp = true }),
		with("seccomp", func(*policy.Policy) {}))
}

type prober struct {
	ops     []probe.Op
	configs []*probeConfig
	root    bool
	verbose bool
	// canaryDir is where the canaries are made (canaryParent).
	canaryDir string
	// left says why the first configuration was left out; "" when none was.
	left string

	mu          sync.Mutex
	pgid        int // the running session's process group, 0 when none
	interrupted bool
}

// interrupt ends the running session; runConfig then returns an error and
// everything is cleaned up on the way out.
func (pr *prober) interrupt() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.interrupted = true
	if pr.pgid > 0 {
		unix.Kill(-pr.pgid, unix.SIGKILL)
	}
}

// runConfig runs the whole battery in cfg, in as many sessions as it takes:
// a session stops when the canaries changed, and the rest of the battery
// runs again with fresh ones.
func (pr *prober) runConfig(cfg *probeConfig) error {
	pending := make([]int, len(pr.ops))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if cfg.runs >= probeMaxRuns {
			return fmt.Errorf("probe: configuration %s: still %d operations to run after %d sessions", cfg.name, len(pending), cfg.runs)
		}
		cfg.runs++
		got, err := pr.runOnce(cfg, pending)
		if err != nil {
			return fmt.Errorf("probe: configuration %s: %w", cfg.name, err)
		}
		var rest []int
		for _, i := range pending {
			if r, ok := got[i]; ok {
				cfg.results[i] = r
			} else {
				rest = append(rest, i)
			}
		}
		pending = rest
	}
	if pr.verbose {
		fmt.Fprintf(os.Stderr, "ronly: probe: %s: %d session(s): %s\n", cfg.name, cfg.runs, cfg.layers)
	}
	return nil
}

// sessionError is a session's failure to build its sandbox, as its
// supervisor reported it.
type sessionError struct{ msg string }

func (e *sessionError) Error() string { return e.msg }

// probeRequest is what the orchestrator sends a supervisor on its stdin.
type probeRequest struct {
	Policy  *policy.Policy `json:"policy"`
	Targets probe.Targets  `json:"targets"`
	Ops     []int          `json:"ops"`
	// Stdin and Stdout are host files the session gets as stdin and, opened
	// O_APPEND, as stdout: canaries for the stdio operations.
	Stdin  string `json:"stdin"`
	Stdout string `json:"stdout"`
	// Events is the file in the --rw directory the battery appends its
	// events to: written by the kernel as they happen, they outlive a
	// supervisor that an operation killed (stdio would die with it, since
	// the supervisor relays the session's stdio).
	Events string `json:"events"`
}

// probeSession is the supervisor's last line on stdout, after the
// battery's events: how the session went.
type probeSession struct {
	Layers   sandbox.Layers               `json:"layers"`
	Blocked  map[string]map[string]uint64 `json:"blocked,omitempty"`
	ExitCode int                          `json:"exit_code"`
	Error    string                       `json:"error,omitempty"`
	Warnings []string                     `json:"warnings,omitempty"`
}

type probeSessionLine struct {
	Session *probeSession `json:"session"`
}

// runOnce runs the pending operations in one session of cfg, with fresh
// canaries, and returns the results it got: at least one unless it fails.
func (pr *prober) runOnce(cfg *probeConfig, pending []int) (map[int]probe.Result, error) {
	c, err := probe.NewCanaries(pr.canaryOptions())
	if err != nil {
		return nil, fmt.Errorf("make canaries: %w", err)
	}
	defer c.Close()
	before, err := c.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("look at the canaries: %w", err)
	}
	p := *cfg.policy
	tg := c.Targets()
	// Writable on purpose: not a breach when a hostile operation finds it so.
	tg.Writable = append(append([]string{}, p.Writable...), p.RW...)
	if p.Home != "" {
		tg.Writable = append(tg.Writable, p.Home)
	}
	p.RW = append(slices.Clip(p.RW), c.RWDir) // where the everyday operations write
	tg.NoNS = p.Mode == policy.ModeLandlockOnly
	// The session's stdin and stdout are host files (a `< file` and a
	// `>> log`): the command must get streams instead.
	tg.Stdio = map[int]probe.FileID{}
	for fd, path := range map[int]string{0: c.Stdin, 1: c.Log} {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return nil, fmt.Errorf("stdio canary: %w", err)
		}
		tg.Stdio[fd] = probe.FileID{Dev: st.Dev, Ino: st.Ino}
	}
	eventsPath := filepath.Join(c.RWDir, "ronly-probe-events.jsonl")
	req, err := json.Marshal(probeRequest{Policy: &p, Targets: tg, Ops: pending, Stdin: c.Stdin, Stdout: c.Log, Events: eventsPath})
	if err != nil {
		return nil, err
	}
	events, session, stderr, err := pr.supervise(req, c.Inherit, eventsPath)
	cfg.changes = append(cfg.changes, c.VerifyOwn(before)...)
	if err != nil {
		return nil, err
	}
	if session != nil {
		if session.Error != "" {
			return nil, &sessionError{session.Error}
		}
		cfg.layers = session.Layers
		cfg.warnings = appendNew(cfg.warnings, session.Warnings...)
		cfg.blocked = addCounts(cfg.blocked, session.Blocked)
	}

	got := map[int]probe.Result{}
	open := -1 // an operation that started and never finished
	for _, e := range events {
		switch {
		case e.Index < 0 || e.Index >= len(pr.ops) || pr.ops[e.Index].Name != e.Name:
			return nil, fmt.Errorf("the probe reported operation %d as %q, which it is not", e.Index, e.Name)
		case e.Start:
			open = e.Index
		case e.Result != nil:
			got[e.Index] = *e.Result
			if open == e.Index {
				open = -1
			}
		}
	}
	if open >= 0 {
		op := pr.ops[open]
		r := probe.Result{Name: op.Name, Kind: op.Kind}
		switch {
		case session == nil && op.Kind == probe.Hostile:
			// The usual way: it killed the supervisor, its parent.
			r.Detail = "went through: the sandbox's supervisor was killed while it ran"
		case session == nil:
			r.Error = "the sandbox's supervisor died while it ran"
		default:
			r.Error = fmt.Sprintf("the probe died while it ran (exit status %d)", session.ExitCode)
		}
		got[open] = r
	}
	if len(got) == 0 {
		msg := strings.TrimSpace(stderr)
		if session != nil {
			msg = fmt.Sprintf("exit status %d: %s", session.ExitCode, msg)
		}
		return nil, fmt.Errorf("the probe ran nothing (%s)", msg)
	}
	return got, nil
}

// canaryOptions makes canaries owned by the caller, with the listening
// socket under /run (root) or in the caller's runtime directory there
// (another user: under /run, the sandbox hides it just the same).
func (pr *prober) canaryOptions() probe.CanaryOptions {
	o := probe.CanaryOptions{UID: os.Geteuid(), Parent: pr.canaryDir, Prefix: "ronly-probe-", Sleeper: []string{"/proc/self/exe", "probe-internal", "canary"},
		NoGit: len(pr.configs) > 0 && pr.configs[0].policy.Mode == policy.ModeLandlockOnly}
	if d := runtimeDir(pr.root); d != "" {
		o.SocketDir = d
	} else {
		// No writable /run (a read-only container): the socket lives
		// beside the other canaries, outside the writable places just
		// the same.
		o.SocketInRoot = true
	}
	return o
}

// runtimeDir is the caller's writable directory under /run: /run itself
// for root, else $XDG_RUNTIME_DIR or /run/user/UID; "" when there is none.
func runtimeDir(root bool) string {
	dirs := []string{os.Getenv("XDG_RUNTIME_DIR"), fmt.Sprintf("/run/user/%d", os.Geteuid())}
	if root {
		dirs = []string{"/run"}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if real, err := filepath.EvalSymlinks(d); err == nil && (real == "/run" || strings.HasPrefix(real, "/run/")) &&
			unix.Access(real, unix.W_OK|unix.X_OK) == nil {
			return real
		}
	}
	return ""
}

// canaryParent is the directory the canaries are made in: dir when given,
// else the first of $TMPDIR, /var/tmp, the runtime directory and /tmp that
// this process can write and that the sandbox shows as the host has it.
// The sandbox replaces /tmp, /dev, its --writable places and the ci
// profile's $HOME: canaries there would be out of the battery's sight.
func canaryParent(dir string, p *policy.Policy, root bool) (string, error) {
	replaced := append([]string{"/tmp", "/dev"}, p.Writable...)
	if p.Mode == policy.ModeLandlockOnly {
		replaced = nil // no mount namespace: the host's /tmp is /tmp inside
	}
	if p.Home != "" {
		replaced = append(replaced, p.Home)
	}
	// Under a --rw directory a canary would be writable on purpose.
	replaced = append(replaced, p.RW...)
	usable := func(d string) error {
		if !filepath.IsAbs(d) {
			return errors.New("not an absolute path")
		}
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return err
		}
		for _, r := range replaced {
			if rr, err := filepath.EvalSymlinks(r); err == nil {
				r = rr
			}
			if real == r || strings.HasPrefix(real, strings.TrimSuffix(r, "/")+"/") {
				return fmt.Errorf("the sandbox replaces %s", r)
			}
		}
		// Tried, not judged from the mode bits: root passes access(2)
		// on /proc and on a file system that refuses it anyway.
		try, err := os.MkdirTemp(real, ".ronly-probe-try-")
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("not writable: %w", err)
		}
		return os.Remove(try)
	}
	if dir != "" {
		if err := usable(dir); err != nil {
			return "", &policy.FlagError{Flag: "--canary-dir", Value: dir, Reason: err.Error()}
		}
		return dir, nil
	}
	var tried []string
	for _, d := range []string{os.Getenv("TMPDIR"), "/var/tmp", runtimeDir(root), "/tmp"} {
		if d == "" || slices.Contains(tried, d) {
			continue
		}
		err := usable(d)
		if err == nil {
			return d, nil
		}
		tried = append(tried, d)
	}
	return "", &sandbox.HintError{Err: fmt.Errorf("probe: nowhere to make the canaries: none of %s is writable and visible inside the sandbox",
		strings.Join(tried, ", ")), Hint: "give a writable directory with --canary-dir DIR"}
}

// supervise runs one session: `ronly probe-internal supervise` in a process
// group of its own, the request on its stdin, the canary descriptors as 3
// to 6. It returns the battery's events (from the file eventsPath), the
// supervisor's last line (nil when it died before writing it) and its
// stderr.
func (pr *prober) supervise(req []byte, inherit []*os.File, eventsPath string) ([]probe.Event, *probeSession, string, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, "", err
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, nil, "", err
	}
	defer errR.Close()
	cmd := exec.Command("/proc/self/exe", "probe-internal", "supervise")
	cmd.Args[0] = "ronly"
	cmd.Stdin = bytes.NewReader(req)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = inherit
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	pr.mu.Lock()
	if pr.interrupted {
		pr.mu.Unlock()
		outW.Close()
		errW.Close()
		return nil, nil, "", errors.New("interrupted")
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		pr.mu.Unlock()
		return nil, nil, "", fmt.Errorf("start the probe's supervisor: %w", err)
	}
	pgid := cmd.Process.Pid
	pr.pgid = pgid
	pr.mu.Unlock()

	var timedOut bool
	timer := time.AfterFunc(probeRunTimeout, func() {
		pr.mu.Lock()
		timedOut = true
		pr.mu.Unlock()
		unix.Kill(-pgid, unix.SIGKILL)
	})
	waited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		// Whatever is left of the session goes with its supervisor, so
		// that nothing holds the pipes open.
		unix.Kill(-pgid, unix.SIGKILL)
		waited <- err
	}()
	errText := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(errR, 1<<20))
		io.Copy(io.Discard, errR)
		errText <- string(b)
	}()
	_, rest, _ := probe.ReadStream(outR)
	werr := <-waited
	stderr := <-errText
	timer.Stop()
	// The whole process group is dead: nothing writes the events any more.
	var events []probe.Event
	if f, err := os.Open(eventsPath); err == nil {
		var more []string
		events, more, _ = probe.ReadStream(f)
		f.Close()
		rest = append(rest, more...)
	}

	pr.mu.Lock()
	pr.pgid = 0
	interrupted, late := pr.interrupted, timedOut
	pr.mu.Unlock()
	switch {
	case interrupted:
		return nil, nil, stderr, errors.New("interrupted")
	case late:
		return nil, nil, stderr, fmt.Errorf("a session took longer than %v", probeRunTimeout)
	}
	var session *probeSession
	for _, l := range rest {
		var sl probeSessionLine
		if json.Unmarshal([]byte(l), &sl) == nil && sl.Session != nil {
			session = sl.Session
		}
	}
	if session == nil && werr == nil {
		return nil, nil, stderr, fmt.Errorf("the probe's supervisor said nothing: %s", strings.TrimSpace(stderr))
	}
	return events, session, stderr, nil
}

func appendNew(list []string, items ...string) []string {
	for _, s := range items {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

func addCounts(into, from map[string]map[string]uint64) map[string]map[string]uint64 {
	for kind, m := range from {
		if into == nil {
			into = map[string]map[string]uint64{}
		}
		if into[kind] == nil {
			into[kind] = map[string]uint64{}
		}
		for name, n := range m {
			into[kind][name] += n
		}
	}
	return into
}

// report puts the results together.
func (pr *prober) report() *probe.Report {
	var u unix.Utsname
	unix.Uname(&u)
	rep := &probe.Report{
		Version: probe.ReportVersion, Ronly: version, Kernel: unix.ByteSliceToString(u.Release[:]),
		LandlockABI: sandbox.LandlockABI(), UID: os.Geteuid(),
		Configurations: []probe.Configuration{}, Operations: []probe.Operation{},
	}
	names := make([]string, len(pr.configs))
	for i, cfg := range pr.configs {
		names[i] = cfg.name
		l := cfg.layers
		rep.Configurations = append(rep.Configurations, probe.Configuration{
			Name: cfg.name, Description: pr.describe(i), Mode: l.Mode, UserNS: l.UserNS, PIDNS: l.PIDNS,
			LandlockABI: l.LandlockABI, Seccomp: l.Seccomp, Network: l.Network, Runs: cfg.runs,
			HostChanges: append([]string{}, cfg.changes...), RefusedCounts: cfg.blocked, Warnings: cfg.warnings,
		})
	}
	rep.Notes = pr.notes()
	for i, op := range pr.ops {
		rs := make([]probe.Result, len(pr.configs))
		for j, cfg := range pr.configs {
			rs[j] = cfg.results[i]
		}
		rep.Operations = append(rep.Operations, probe.NewOperation(op, rs, names))
	}
	fullChanged := len(pr.configs[len(pr.configs)-1].changes) > 0
	rep.Summary = probe.Summarize(rep.Operations, fullChanged)
	rep.OK = rep.Summary.Good()
	return rep
}

// describe says what configuration i has, from what its sandbox reported.
func (pr *prober) describe(i int) string {
	cfg := pr.configs[i]
	l := cfg.layers
	switch cfg.name {
	case "mount+caps", "mount+caps+userns":
		d := "mount, IPC and UTS namespaces; a read-only root, a private /dev, /tmp and /dev/shm; " +
			"every capability dropped (root keeps CAP_DAC_READ_SEARCH), no_new_privs; stdio are pipes the supervisor relays; "
		if l.UserNS {
			d += "a user namespace mapping only your own ids; "
		} else {
			d += "no user namespace (real root); "
		}
		if l.PIDNS {
			d += "a private PID namespace; "
		}
		return d + "no Landlock, no seccomp; and whatever the host enforces anyway (permissions, Yama, sysctls)"
	case "caps+landlock":
		d := fmt.Sprintf("landlock-only mode: no namespaces, the host's own tree and /dev; every capability dropped (root keeps CAP_DAC_READ_SEARCH if it has it), no_new_privs; "+
			"stdio are pipes the supervisor relays; Landlock ABI %d: writes only in the session's scratch directory ($TMPDIR) and --rw", l.LandlockABI)
		if l.LandlockABI >= 6 {
			d += ", signals and abstract unix sockets scoped to the sandbox"
		}
		return d + "; no seccomp"
	case "userns":
		if !l.UserNS {
			return "+ a user namespace: REFUSED on this host, so it ran without one"
		}
		return "+ a user namespace (" + l.Mode + ": ids mapped to themselves)"
	case "landlock":
		d := fmt.Sprintf("+ Landlock ABI %d: writes only in the scratch space and --rw", l.LandlockABI)
		if l.LandlockABI >= 6 {
			d += ", signals and abstract unix sockets scoped to the sandbox"
		}
		if l.PIDNS && i > 0 && !pr.configs[i-1].layers.PIDNS {
			d += "; below ABI 6, a private PID namespace confines signals instead"
		}
		return d
	case "seccomp":
		d := "+ the seccomp filter (" + l.Seccomp + "): the full default sandbox"
		if l.SocketMediation {
			d += "; the supervisor decides every connect and send to an address (host unix sockets refused)"
		}
		if l.SignalMediation {
			d += "; below Landlock ABI 6, in the host's PID namespace, the supervisor delivers every signal, only to the session's processes"
		}
		return d
	}
	return ""
}

func (pr *prober) notes() []string {
	var out []string
	first := pr.configs[0]
	switch {
	case !pr.root:
		out = append(out, "not root: no sandbox can go without a user namespace, so the mount and user namespace layers cannot be told apart: "+
			"what either refuses is under "+first.name)
	case first.policy.Mode == policy.ModeRootless:
		out = append(out, "--rootless: every configuration has a user namespace mapping only your own ids, so the mount and user namespace layers "+
			"cannot be told apart: what either refuses is under "+first.name)
	case first.policy.Mode == policy.ModePrivileged && pr.configs[1].name != "userns":
		out = append(out, "--privileged: no configuration has a user namespace")
	}
	for _, cfg := range pr.configs {
		if cfg.name == "userns" && !cfg.layers.UserNS {
			out = append(out, "user namespaces are refused on this host: the userns configuration ran without one, like mount+caps")
		}
	}
	if pr.left != "" {
		out = append(out, pr.left)
	}
	out = append(out, first.name+" includes what the host enforces anyway: file permissions, Yama's ptrace scope, sysctls; "+
		"an operation it refuses may be refused by the kernel's own rules, not by ronly")
	return out
}

// Human output.

// configLetter is an operation's outcome in one configuration, for the
// table's per-configuration column.
func configLetter(o probe.Outcome) string {
	switch o {
	case probe.Refused:
		return "R"
	case probe.Through:
		return "-"
	case probe.OtherErrno:
		return "e"
	case probe.OK:
		return "+"
	case probe.Failed:
		return "F"
	case probe.Skipped:
		return "s"
	}
	return "?"
}

func printProbeTable(w io.Writer, rep *probe.Report) {
	names := make([]string, len(rep.Configurations))
	for i, c := range rep.Configurations {
		names[i] = c.Name
	}
	full := names[len(names)-1]
	order := map[string]int{}
	for i, n := range append(append([]string{}, names...), probe.BlockedByNone, probe.BlockedByUnknown, probe.BlockedByNA) {
		order[n] = i
	}
	fmt.Fprintf(w, "ronly probe: Linux %s, Landlock ABI %d, uid %d\n\n", rep.Kernel, rep.LandlockABI, rep.UID)
	fmt.Fprintf(w, "The battery ran in %d cumulative sandboxes; each operation is blocked by the layer from which on it is refused.\n", len(names))
	fmt.Fprintf(w, "BY CONFIG has its result in each: R refused, - went through, e the kernel rejected its deliberately invalid\n"+
		"argument before any layer refused it, + ok, F failed, s skipped (or the kernel lacks the call: n/a).\n")
	for i, c := range rep.Configurations {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %d %-18s %s", i+1, c.Name, c.Description), " "))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w)

	var hostile, everyday []probe.Operation
	for _, o := range rep.Operations {
		if o.Kind == probe.Hostile {
			hostile = append(hostile, o)
		} else {
			everyday = append(everyday, o)
		}
	}
	sort.SliceStable(hostile, func(i, j int) bool { return order[hostile[i].BlockedBy] < order[hostile[j].BlockedBy] })

	// The table: rows of cells, and summary lines between them that do
	// not count for the column widths.
	type line struct {
		cells []string
		text  string
	}
	header := []string{"OPERATION", "KIND", "RESULT", "ERRNO", "BLOCKED BY", "BY CONFIG "}
	for i := range names {
		header[5] += strconv.Itoa(i + 1)
	}
	lines := []line{{cells: header}}
	row := func(o probe.Operation, blockedBy string) {
		var letters string
		for _, n := range names {
			letters += configLetter(o.ResultsByConfig[n].Outcome)
		}
		errno := o.Errno
		if errno == "" {
			errno = "-"
		}
		lines = append(lines, line{cells: []string{o.Name, string(o.Kind), string(o.Result), errno, blockedBy, letters}})
	}
	for i, o := range hostile {
		row(o, o.BlockedBy)
		if i == len(hostile)-1 || hostile[i+1].BlockedBy != o.BlockedBy {
			lines = append(lines, line{text: fmt.Sprintf("== %s: %d hostile operation(s)%s",
				o.BlockedBy, rep.Summary.BlockedByLayer[o.BlockedBy], layerVerdict(o.BlockedBy))})
		}
	}
	for _, o := range everyday {
		by := o.BlockedBy
		if by == "" {
			by = "-"
		}
		row(o, by)
	}
	s := rep.Summary
	lines = append(lines, line{text: fmt.Sprintf("== everyday: %d ok, %d failed, %d skipped", s.EverydayOK, s.EverydayFailed, s.EverydaySkipped)})
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, c := range l.cells {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, l := range lines {
		if l.cells == nil {
			fmt.Fprintln(w, l.text)
			continue
		}
		var b strings.Builder
		for i, c := range l.cells {
			if i == len(l.cells)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Host seen from outside after each configuration (changes are expected only where a layer is missing):")
	for i, c := range rep.Configurations {
		if len(c.HostChanges) == 0 {
			fmt.Fprintf(w, "  %s: canaries unchanged (%d session(s))\n", c.Name, c.Runs)
			continue
		}
		prefix := ""
		if i == len(rep.Configurations)-1 {
			prefix = "SANDBOX BREACH: "
		}
		fmt.Fprintf(w, "  %s: %s%d change(s) (%d session(s)):\n", c.Name, prefix, len(c.HostChanges), c.Runs)
		for _, ch := range c.HostChanges {
			fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(ch, "\n", "\n    "))
		}
	}

	fmt.Fprintln(w)
	var parts []string
	for _, n := range append(append([]string{}, names...), probe.BlockedByNone, probe.BlockedByUnknown, probe.BlockedByNA) {
		if k := s.BlockedByLayer[n]; k > 0 || n == probe.BlockedByNone {
			parts = append(parts, fmt.Sprintf("%s %d", n, k))
		}
	}
	fmt.Fprintf(w, "Summary: %d hostile operations, blocked by: %s; %d everyday: %d ok, %d failed, %d skipped.\n",
		s.Hostile, strings.Join(parts, ", "), s.Everyday, s.EverydayOK, s.EverydayFailed, s.EverydaySkipped)
	var early []string
	for _, o := range hostile {
		if len(o.ArgumentRejectedIn) > 0 && o.BlockedBy != probe.BlockedByNone {
			early = append(early, o.Name)
		}
	}
	if len(early) > 0 {
		fmt.Fprintf(w, "%d of them (e in BY CONFIG) got their deliberately invalid argument rejected by the kernel itself in\n"+
			"the sandboxes before the layer named: that layer is the latest that blocks them, an earlier one may too.\n", len(early))
	}
	if n := s.BlockedByLayer[probe.BlockedByNone]; n > 0 {
		fmt.Fprintf(w, "\nFINDING: %d hostile operation(s) went through the full sandbox (blocked by NONE):\n", n)
		for _, o := range hostile {
			if o.BlockedBy == probe.BlockedByNone {
				fmt.Fprintf(w, "  %s (%s)\n", o.Name, describeFull(o, full))
			}
		}
	}
	if n := s.BlockedByLayer[probe.BlockedByUnknown]; n > 0 {
		fmt.Fprintf(w, "\nUNKNOWN: %d hostile operation(s) failed in the full sandbox without an errno:\n", n)
		for _, o := range hostile {
			if o.BlockedBy == probe.BlockedByUnknown {
				fmt.Fprintf(w, "  %s (%s)\n", o.Name, describeFull(o, full))
			}
		}
	}
	if s.EverydayFailed > 0 {
		fmt.Fprintf(w, "\nBROKEN: %d everyday operation(s) failed in the full sandbox:\n", s.EverydayFailed)
		for _, o := range everyday {
			if o.Result != probe.OK && o.Result != probe.Skipped {
				fmt.Fprintf(w, "  %s (broken by %s: %s)\n", o.Name, o.BlockedBy, describeFull(o, full))
			}
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "OK: the full sandbox refused every hostile operation, every everyday one worked, and the host did not change.")
	}
}

func layerVerdict(by string) string {
	switch by {
	case probe.BlockedByNone:
		return " NOT REFUSED by any layer"
	case probe.BlockedByNA:
		return " not applicable here"
	case probe.BlockedByUnknown:
		return " failed without an errno"
	}
	return " refused"
}

// describeFull says what an operation did in the full sandbox.
func describeFull(o probe.Operation, full string) string {
	r := o.ResultsByConfig[full]
	switch {
	case r.Detail != "":
		return r.Detail
	case r.Error != "":
		return r.Error
	case r.Errno != "":
		return r.Errno
	case o.Result == probe.Through:
		return "it went through"
	}
	return string(o.Result)
}

// The hidden parts.

// Run runs one session of the probe: the request on stdin, the battery's
// events and then one probeSession line on stdout.
func (c *ProbeSuperviseCmd) Run() error {
	var req probeRequest
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return fmt.Errorf("probe request on stdin: %w", err)
	}
	if req.Policy == nil || len(req.Ops) == 0 {
		return errors.New("probe request on stdin: no policy or no operations")
	}
	targets, err := json.Marshal(req.Targets)
	if err != nil {
		return err
	}
	ops := make([]string, len(req.Ops))
	for i, n := range req.Ops {
		ops[i] = strconv.Itoa(n)
	}
	p := req.Policy
	// The battery is this binary: /proc/self/exe, as the front-end inside
	// resolves it when it execs the command, wherever the binary lives.
	p.Command = []string{"/proc/self/exe", "probe-internal", "inside", "--targets", string(targets), "--ops", strings.Join(ops, ","),
		"--events", req.Events}
	if err := p.Validate(); err != nil {
		return err
	}
	// stdin and stdout are the stdio canaries.
	stdin, err := os.Open(req.Stdin)
	if err != nil {
		return fmt.Errorf("stdio canary: %w", err)
	}
	defer stdin.Close()
	stdout, err := os.OpenFile(req.Stdout, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("stdio canary: %w", err)
	}
	defer stdout.Close()
	var mu sync.Mutex
	var warnings []string
	res, err := sandbox.Run(p, sandbox.Options{Warn: func(m string) {
		mu.Lock()
		warnings = append(warnings, m)
		mu.Unlock()
	}, Stdin: stdin, Stdout: stdout})
	s := probeSession{Layers: res.Layers, Blocked: res.Blocked, ExitCode: res.ExitCode, Warnings: warnings}
	if err != nil {
		s.Error = err.Error()
	}
	b, err := json.Marshal(probeSessionLine{Session: &s})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append([]byte("\n"), append(b, '\n')...))
	return err
}

// ProbeSuperviseCmd runs one sandbox session of the probe.
type ProbeSuperviseCmd struct{}

// ProbeModeCmd runs `ronly --version` in the sandbox the policy on stdin
// describes and prints the mode the session got, as JSON.
type ProbeModeCmd struct{}

type probeModeLine struct {
	Mode  string `json:"mode"`
	Error string `json:"error,omitempty"`
}

func (c *ProbeModeCmd) Run() error {
	var p policy.Policy
	if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
		return fmt.Errorf("policy on stdin: %w", err)
	}
	p.Command = []string{"/proc/self/exe", "--version"}
	if err := p.Validate(); err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	res, err := sandbox.Run(&p, sandbox.Options{Warn: func(string) {}, Stdin: null, Stdout: null, Stderr: null})
	line := probeModeLine{Mode: res.Layers.Mode}
	if err != nil {
		line.Error = err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(line)
}

// trialMode is the mode auto mode picks here for full: one session of
// `ronly --version`, in a process of its own.
func trialMode(full *policy.Policy) (string, error) {
	p := *full
	p.NoShims, p.ShimTools, p.NoWriteCounting, p.Limits = true, nil, true, policy.Limits{}
	req, err := json.Marshal(&p)
	if err != nil {
		return "", err
	}
	cmd := exec.Command("/proc/self/exe", "probe-internal", "mode")
	cmd.Args[0] = "ronly"
	cmd.Stdin = bytes.NewReader(req)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("probe: trial session: %w", err)
	}
	var line probeModeLine
	if err := json.Unmarshal(out, &line); err != nil {
		return "", fmt.Errorf("probe: trial session: %w", err)
	}
	if line.Error != "" {
		return "", errors.New(line.Error)
	}
	return line.Mode, nil
}

// ProbeInsideCmd runs the battery inside a sandbox.
type ProbeInsideCmd struct {
	Targets string `required:"" placeholder:"JSON" help:"The host's canaries (probe.Targets)."`
	Ops     string `required:"" placeholder:"N,N..." help:"The operations to run, by index in the battery."`
	Events  string `required:"" placeholder:"FILE" help:"Append the events to FILE (in the --rw directory)."`
}

// Run runs the operations, one JSON event per line appended to --events
// (stdin and stdout are the stdio canaries); it refuses to run outside a
// sandbox.
func (c *ProbeInsideCmd) Run() error {
	var t probe.Targets
	if err := json.Unmarshal([]byte(c.Targets), &t); err != nil {
		return fmt.Errorf("--targets: %w", err)
	}
	if err := probe.CheckLandlocked(t); err != nil {
		return err
	}
	var idx []int
	for _, f := range strings.Split(c.Ops, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("--ops: %w", err)
		}
		idx = append(idx, n)
	}
	return probe.RunStream(appendFile(c.Events), probe.All(), idx, t)
}

// appendFile appends each Write to the file it names, opened for that
// write only: each event is in the file as soon as it is written, whatever
// kills this process next, and no descriptor stays open for the battery's
// look at its own (an operation checks that none is).
type appendFile string

func (f appendFile) Write(b []byte) (int, error) {
	fd, err := os.OpenFile(string(f), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := fd.Write(b)
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// ProbeCanaryCmd is the probe's canary process.
type ProbeCanaryCmd struct{}

// Run sleeps until a signal kills the process.
func (ProbeCanaryCmd) Run() error {
	for {
		unix.Pause()
	}
}
