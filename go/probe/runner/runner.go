// Package runner is `ronly probe`'s orchestrator: it runs the battery
// (package probe) in cumulative sandboxes, each adding one layer to the one
// before, and says which layer refuses each hostile operation: the first
// from which on it is refused. Attribution by experiment, not by guessing
// from errnos.
//
// Three processes take part, all the ronly binary:
//
//	ronly probe                            the orchestrator (Prober): makes the canaries on
//	                                       the host, checks them from outside, builds the Report
//	ronly probe-internal supervise         one sandbox session (Supervise: sandbox.Run) per
//	                                       run, in a process group of its own: a partial
//	                                       sandbox may let the battery kill its supervisor,
//	                                       and only this process must then die
//	/proc/self/exe probe-internal inside   the battery, inside the sandbox (probe.RunStream)
//
// plus the canary process, `ronly probe-internal canary`, which only sleeps.
//
// It is a package of its own so that the battery, which runs inside the
// sandbox (and in the end-to-end tests' probebin), links no supervisor.
package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/sandbox"
)

// runTimeout bounds one sandbox session of the probe, so that a hung
// session fails the probe instead of hanging it.
const runTimeout = 3 * time.Minute

// maxRuns bounds the sessions one configuration may take. Each session
// runs at least one operation, so this is never reached unless something
// is wrong.
const maxRuns = 100

// Options are what the caller of New decides besides the policy.
type Options struct {
	// CanaryDir is --canary-dir: where the canaries are made ("": the
	// first usable of $TMPDIR, /var/tmp, the runtime directory, /tmp).
	CanaryDir string
	// Version is ronly's, for the report.
	Version string
	// Log gets a line per configuration when the policy is Verbose.
	Log func(string)
	// Lost gets each dead session (not the probe's) that a start of the
	// probe's swept, as the next session's start reports it (nil: none).
	Lost func(session string)
}

// config is one cumulative sandbox and what the battery did in it.
type config struct {
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

// Prober runs the battery in the cumulative sandboxes of one policy.
type Prober struct {
	ops     []probe.Op
	full    *policy.Policy
	configs []*config
	root    bool
	opts    Options
	// canaryDir is where the canaries are made (canaryParent).
	canaryDir string
	// left says why the first configuration was left out; "" when none was.
	left string

	mu          sync.Mutex
	pgid        int // the running session's process group, 0 when none
	interrupted bool
}

// New plans the configurations for full, the policy the flags
// describe, and finds where to make the canaries. It runs one trial
// session when full leaves the mode to ronly.
func New(full *policy.Policy, o Options) (*Prober, error) {
	// What ronly itself would refuse here (a Landlock floor above the
	// kernel's), the probe refuses too, before its first sandboxes,
	// which leave Landlock out, run at all.
	if err := sandbox.Admit(full); err != nil {
		return nil, err
	}
	own := *full // changed below where no namespace can be made
	full = &own
	if o.Lost == nil {
		o.Lost = func(string) {}
	}
	pr := &Prober{ops: probe.All(), full: full, root: os.Geteuid() == 0, opts: o}
	if full.Mode == policy.ModeAuto {
		// Where no namespace can be made, ronly runs in landlock-only
		// mode, and every configuration must: the battery's scratch is
		// then $TMPDIR, and no configuration goes without Landlock (the
		// host's own tree would be all there is between a hostile
		// operation and the host).
		if mode, err := trialMode(full, o.Lost); err == nil && mode == sandbox.LandlockOnly {
			full.Mode = policy.ModeLandlockOnly
			pr.left = "no namespace can be made here: every configuration is landlock-only, and none goes without Landlock"
		}
	}
	pr.configs = configsFor(full, pr.root)
	var err error
	if pr.canaryDir, err = canaryParent(o.CanaryDir, full, pr.root); err != nil {
		return nil, err
	}
	return pr, nil
}

// Run runs the battery in every configuration and builds the report.
func (pr *Prober) Run() (*probe.Report, error) {
	for i := 0; i < len(pr.configs); i++ {
		cfg := pr.configs[i]
		err := pr.runConfig(cfg)
		var se *sessionError
		if errors.As(err, &se) && i == 0 && pr.full.Mode == policy.ModeAuto && cfg.policy.Mode == policy.ModePrivileged && len(cfg.results) == 0 {
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
			return nil, err
		}
	}
	return pr.report(), nil
}

// configsFor are the cumulative sandboxes for the full policy: without
// Landlock and seccomp, first without a user namespace (root only), then
// with one; then with Landlock; then the full sandbox. A user who is not
// root cannot go without a user namespace, and one who asked for
// --privileged gets none in any.
func configsFor(full *policy.Policy, root bool) []*config {
	with := func(name string, change func(p *policy.Policy)) *config {
		p := *full
		change(&p)
		return &config{name: name, policy: &p, results: map[int]probe.Result{}}
	}
	bare := func(p *policy.Policy) { p.SkipLandlock, p.SkipSeccomp, p.LandlockMinABI = true, true, 0 }
	var out []*config
	switch {
	case full.Mode == policy.ModeLandlockOnly:
		// Without Landlock nothing but the host's own permissions would
		// stand between the battery and the host: the first
		// configuration has it already.
		return []*config{
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

// Interrupt ends the running session; Run then returns an error and
// everything is cleaned up on the way out. Safe from any goroutine.
func (pr *Prober) Interrupt() {
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
func (pr *Prober) runConfig(cfg *config) error {
	pending := make([]int, len(pr.ops))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if cfg.runs >= maxRuns {
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
	if pr.full.Verbose && pr.opts.Log != nil {
		pr.opts.Log(fmt.Sprintf("probe: %s: %d session(s): %s", cfg.name, cfg.runs, cfg.layers))
	}
	return nil
}

// sessionError is a session's failure to build its sandbox, as its
// supervisor reported it.
type sessionError struct{ msg string }

func (e *sessionError) Error() string { return e.msg }

// runOnce runs the pending operations in one session of cfg, with fresh
// canaries, and returns the results it got: at least one unless it fails.
func (pr *Prober) runOnce(cfg *config, pending []int) (map[int]probe.Result, error) {
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
	for _, pl := range p.Places() {
		if pl.Path != "/tmp" { // scratch, which every sandbox has (probe.scratchMounts)
			tg.Writable = append(tg.Writable, pl.Path)
		}
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
	req, err := json.Marshal(request{Policy: &p, Targets: tg, Ops: pending, Stdin: c.Stdin, Stdout: c.Log, Events: eventsPath})
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
	got, err := pr.results(events, session)
	if err != nil {
		return nil, err
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

// results are the operations' results in one session's events; session
// is the supervisor's last line, nil when it died before writing it. An
// operation that started and never finished gets a result that says what
// ended it.
func (pr *Prober) results(events []probe.Event, session *sessionLine) (map[int]probe.Result, error) {
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
	return got, nil
}

// canaryOptions makes canaries owned by the caller, with the listening
// socket under /run (root) or in the caller's runtime directory there
// (another user: under /run, the sandbox hides it just the same).
func (pr *Prober) canaryOptions() probe.CanaryOptions {
	o := probe.CanaryOptions{UID: os.Geteuid(), Parent: pr.canaryDir, Prefix: "ronly-probe-", Sleeper: canaryCommand,
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
// The sandbox replaces /dev and its fresh places (policy.Places): canaries
// there would be out of the battery's sight.
func canaryParent(dir string, p *policy.Policy, root bool) (string, error) {
	var replaced []string
	if p.Mode != policy.ModeLandlockOnly {
		// Without a mount namespace the host's /dev and /tmp are the
		// sandbox's (and policy.Validate refuses the other fresh
		// places there).
		replaced = append(replaced, "/dev")
	}
	for _, pl := range p.Places() {
		// Under a --rw directory a canary would be writable on purpose.
		if !pl.Fresh || p.Mode != policy.ModeLandlockOnly {
			replaced = append(replaced, pl.Path)
		}
	}
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
func (pr *Prober) supervise(req []byte, inherit []*os.File, eventsPath string) ([]probe.Event, *sessionLine, string, error) {
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
	cmd := exec.Command(superviseCommand[0], superviseCommand[1:]...)
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
	timer := time.AfterFunc(runTimeout, func() {
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
		return nil, nil, stderr, fmt.Errorf("a session took longer than %v", runTimeout)
	}
	var session *sessionLine
	for _, l := range rest {
		var sl sessionLineJSON
		if json.Unmarshal([]byte(l), &sl) == nil && sl.Session != nil {
			session = sl.Session
		}
	}
	if session != nil {
		for _, s := range session.Swept {
			pr.opts.Lost(s)
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
