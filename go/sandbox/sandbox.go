// Package sandbox runs a command in ronly's sandbox and supervises it. It
// re-executes this binary with an invitation for the C init (package
// cinit), sends the init its records, answers it (id maps), waits for the
// command, and kills whatever the command left running.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/cgroup"
	"ronly.dev/ronly/go/mountinfo"
	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
	"ronly.dev/ronly/shims"
)

// reportFD is the number, inside, of the descriptor shims.EnvReportFD
// names: ExtraFiles[1].
const reportFD = 4

// Layers is what a session actually got, for --verbose, reports and metrics.
type Layers struct {
	// Mode is "userns" (root mapped to root), "rootless" (only the caller's
	// own ids mapped) or "privileged" (no user namespace).
	Mode        string
	UserNS      bool
	LandlockABI int
	Seccomp     string // "errno"
	Network     string // "host" or "none"
	// PIDNS is set when the session has its own PID namespace and /proc:
	// the fallback that confines signals where Landlock cannot (ABI < 6).
	PIDNS bool
	// SignalMediation is set when the supervisor decides every signal
	// the session sends (signals.go): Landlock below ABI 6 cannot scope
	// them, and the session shares the host's PID namespace.
	SignalMediation bool
	// PIDNSRefused says why the ci profile shares the host's PID
	// namespace and /proc: the kernel refused its own /proc (a container
	// that masks /proc paths). Other jobs' processes are visible then.
	PIDNSRefused string
	// Cgroup says where the session's cgroup is: "v2", "v2+v1" (v1 for
	// controllers the host keeps there), "v1", or "none" (not root and
	// nothing delegated: limits then fall back to rlimits).
	Cgroup string
	// WriteCounting is set when refused writes (EROFS) are counted.
	WriteCounting bool
	// WriteCounter says how: "fexit" (programs on the write-class
	// syscalls), "tracepoint" (sys_exit: every syscall on the host pays),
	// "off" (the default: --count-writes) or "unavailable" (asked for,
	// but not root, no cgroup v2, or the kernel refused).
	WriteCounter string
	// AbstractSockets is set when the host's abstract unix sockets are
	// reachable from inside: no socket mediation, Landlock below ABI 6 and
	// the host's network.
	AbstractSockets bool
	// SocketMediation is set when the supervisor decides every connect and
	// send to an address (mediate_sock.go): no host unix socket outside the
	// session's writable places answers unless the policy names it.
	SocketMediation bool
	// DockerGuard is set when the host's Docker socket answers read-only
	// calls inside: the guard runs and mediation sends connects to it.
	DockerGuard bool
	// KubeGuard is set when the Kubernetes API answers read-only calls
	// inside: the guard runs with the credentials ronly found, and
	// mediation tells it which connections are the session's (kube.go).
	KubeGuard bool
	// Fallback says why auto mode chose Mode after the mode it tried
	// first failed; "" when it did not fall back.
	Fallback string
}

func (l Layers) String() string {
	return fmt.Sprintf("mode=%s userns=%t landlock_abi=%d pidns=%t seccomp=%s write_counting=%t write_counter=%s network=%s cgroup=%s socket_mediation=%t docker_guard=%t abstract_sockets_reachable=%t signal_mediation=%t kube_guard=%t",
		l.Mode, l.UserNS, l.LandlockABI, l.PIDNS, l.Seccomp, l.WriteCounting, l.WriteCounter, l.Network, l.Cgroup, l.SocketMediation, l.DockerGuard, l.AbstractSockets, l.SignalMediation, l.KubeGuard)
}

// HintError is an error with advice on how to fix it.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() + " (hint: " + e.Hint + ")" }
func (e *HintError) Unwrap() error { return e.Err }

// Options are the supervisor's hooks.
type Options struct {
	// Warn receives degradations the user must know of.
	Warn func(string)
	// Refused receives each refused action as it happens (the audit log).
	// It runs on the supervisor's answering goroutine: keep it short.
	Refused func(Refusal)
	// Session names the session's cgroup, so an operator can tell which
	// session a cgroup belongs to (the audit log's session id).
	Session string
	// Start is when ronly started, the origin of Result.Timeline; zero for
	// the call to Run.
	Start time.Time
	// Stdin, Stdout and Stderr are the caller's streams, which the
	// supervisor relays to the command (stdio.go); nil for this process's.
	Stdin, Stdout, Stderr *os.File
	// WriteCounter is a write counter the caller began attaching before
	// it had the policy (StartWriteCounter, writes.go), for a session that
	// counts refused writes; the caller closes it after Run.
	WriteCounter *PendingCounter
}

// Mark is a step of a session and when it was done, since Options.Start.
type Mark struct {
	Step string
	At   time.Duration
}

// Result is how a session went.
type Result struct {
	ExitCode int // the command's; 128+N when signal N killed it
	Layers   Layers
	// Blocked counts refused actions by kind ("syscall", "command", "api")
	// and name.
	Blocked map[string]map[string]uint64
	// LimitHit names the limit that ended the session: "timeout", "cpu",
	// "memory" or "pids"; "" when none did.
	LimitHit string
	// Signal is the signal that killed the command; 0 when it exited.
	Signal syscall.Signal
	Usage  Usage
	// Timeline says when each step of the session was done: where a
	// slow start goes on a given host.
	Timeline []Mark
	// MalformedReports counts the lines on the shims' report pipe that
	// were dropped (reports.go): anything but a command refusal of one of
	// the session's shims.
	MalformedReports uint64
	// Creds says which credentials the session could not read.
	Creds CredResult
	// Swept are sessions of other supervisors, dead before they could
	// clean up and report, whose cgroups this session's start removed
	// (go/cgroup.Sweep): the caller reports them lost.
	Swept []string
}

// Usage is what the session's processes consumed.
type Usage struct {
	Wall, User, Sys time.Duration
	MaxRSS          uint64 // bytes: the largest process, or the cgroup's peak when known
}

// Run runs p.Command in the sandbox. An error means the sandbox could not
// be built: the command did not run.
func Run(p *policy.Policy, o Options) (res Result, err error) {
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	defer func() { res.Swept = takeSwept() }()
	tl := &timeline{start: o.Start}
	tl.mark("policy")
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	// A fallback builds the sandbox again: say each thing once. What is
	// said before the sandbox is built is held until it is: a failure to
	// build it is one line, the error, without warnings about a session
	// that never ran.
	gate := &warnGate{out: once(warn)}
	held := holdSignals()
	defer held.stop()
	// Read once for the session's start: on a Kubernetes node's thousands
	// of mounts each read of the table costs milliseconds.
	mounts, mountsErr := takeMounts()
	if mountsErr == nil {
		cgroup.KnowMounts(mounts)
	}
	group := beginGroup(p.Limits, o.Session)
	defer group.discard(warn)
	pr, err := prepare(p, mounts, mountsErr)
	if err != nil {
		return Result{Layers: pr.plan.Layers}, err
	}
	defer pr.git.close()
	for _, w := range pr.plan.Warnings {
		gate.warn(w)
	}
	tl.mark("sockets and mounts planned")
	s := newSession(p, o, pr, gate, tl)
	s.held, s.firstGroup = held, group
	stopGuards, err := s.startGuards()
	if err != nil {
		return Result{Layers: *s.layers}, err
	}
	defer stopGuards()
	defer func() { s.nons.remove() }()
	code, err := s.startWithFallbacks()
	if err != nil {
		gate.drop()
	}
	gate.release()
	pr.git.afterSession(o.Session, gate.warn)
	return s.result(code), err
}

// ReadMountsAhead begins reading the host's mount table for the session
// this process is about to start, on another goroutine: Run takes it. The
// caller calls it before parsing its flags, which take milliseconds in a
// fresh process (kong's model), as does reading the table of a Kubernetes
// node's thousands of mounts. Read a few milliseconds before Run, the
// table is as fresh for the session as one Run reads itself.
func ReadMountsAhead() { ahead.begin(readStartMounts) }

var ahead mountsAhead

// mountsAhead is a read of the mount table begun before it is needed,
// for the first taker only.
type mountsAhead struct {
	once   sync.Once
	done   chan struct{} // nil: no read began
	taken  atomic.Bool
	mounts []mountinfo.Mount
	err    error
}

func (a *mountsAhead) begin(read func() ([]mountinfo.Mount, error)) {
	a.once.Do(func() {
		a.done = make(chan struct{})
		go func() {
			defer close(a.done)
			a.mounts, a.err = read()
		}()
	})
}

// take returns what the read begun ahead found, the first time; else, or
// without one, what read finds now. No read begins ahead after a take.
func (a *mountsAhead) take(read func() ([]mountinfo.Mount, error)) ([]mountinfo.Mount, error) {
	a.once.Do(func() {})
	if a.done != nil && a.taken.CompareAndSwap(false, true) {
		<-a.done
		return a.mounts, a.err
	}
	return read()
}

// takeMounts is the host's mounts a start needs: those ReadMountsAhead
// read, the first time, else read now.
func takeMounts() ([]mountinfo.Mount, error) { return ahead.take(readStartMounts) }

// readStartMounts reads the mounts of the host's table a start needs: the
// cgroup hierarchies' and those that may lead to a service-account token.
func readStartMounts() ([]mountinfo.Mount, error) {
	return mountinfo.Read(func(m *mountinfo.Mount) bool { return cgroup.Hierarchy(m) || tokenMount(m) })
}

// prepared is what Run reads and opens on the host before the first start.
type prepared struct {
	plan        Plan
	withSignals []byte
	table       bpf.Table
	git         *gitPlan  // held open until the session ends
	creds       *CredPlan // what is hidden, for the result
}

// prepare reads what the plan needs of the host and plans the session:
// mounts is the host's mount table, as mountinfo.Read returned it (with
// mountsErr). On an error, plan.Layers holds what is known of the layers
// by then.
func prepare(p *policy.Policy, mounts []mountinfo.Mount, mountsErr error) (prepared, error) {
	var pr prepared
	h := Host{LandlockABI: LandlockABI(), Root: os.Geteuid() == 0}
	// Before anything on the host is touched (gitMounts creates files):
	// a policy this kernel refuses changes nothing.
	l, err := admit(p, h.LandlockABI)
	pr.plan.Layers = l
	if err != nil {
		return pr, err
	}
	if h.RW, err = hostDirs(p.RW); err != nil {
		return pr, err
	}
	if pr.git, err = gitMounts(p.RW); err != nil {
		return pr, err
	}
	h.Git = pr.git.mounts
	if pr.creds, err = credMounts(p, mounts, mountsErr); err != nil {
		pr.git.close()
		return pr, err
	}
	h.Creds = pr.creds.mounts
	// Last: main decodes the programs on another core meanwhile
	// (bpf.Warm), and the credentials' files take about as long.
	var prog Programs
	if prog, pr.withSignals, pr.table, err = loadPrograms(); err != nil {
		pr.git.close()
		return pr, err
	}
	if pr.plan, err = newPlan(p, h, prog); err != nil {
		pr.git.close()
		return pr, err
	}
	return pr, nil
}

// newSession is the supervisor's state for the planned session, with the
// mediators of the calls its seccomp programs send to it.
func newSession(p *policy.Policy, o Options, pr prepared, gate *warnGate, tl *timeline) *session {
	l := pr.plan.Layers
	s := &session{p: p, cfg: pr.plan.Config, layers: &l, warn: gate.warn, gate: gate, table: pr.table, refused: o.Refused,
		name: o.Session, blocked: map[string]map[string]uint64{}, timeline: tl, mediators: map[int]mediator{},
		std: [3]*os.File{o.Stdin, o.Stdout, o.Stderr}, creds: pr.creds}
	s.writeCounter = o.WriteCounter
	addXattrMediators(s.mediators)
	addSchedMediators(s.mediators, pr.table)
	s.sigs, s.withSignals = newSignals(), pr.withSignals
	s.sigs.register(s.mediators, pr.table)
	s.reports = newReportReader(p)
	s.socks = newSockets(p)
	s.socks.register(s.mediators)
	return s
}

// startGuards starts the guards of the host's Docker socket and of the
// cluster's API (read-only, in place of the credentials creds.go hides:
// kube.go); stop closes both.
func (s *session) startGuards() (stop func(), err error) {
	guard, err := startDockerGuard(s.record)
	if err != nil {
		return nil, err
	}
	if guard != nil {
		// Mediation sends connects to the host's Docker socket here.
		s.socks.docker, s.socks.guard = guard.upstream, guard.path
	}
	kube, err := startKubeGuard(s.p, s.record, s.warn)
	if err != nil {
		guard.Close()
		return nil, err
	}
	if kube != nil {
		s.socks.kube, s.kube = kube, kube
		kube.showInCluster(s.cfg.Mounts)
	}
	return func() {
		kube.Close()
		guard.Close()
	}, nil
}

// startWithFallbacks starts the session and, where the host refuses a
// layer, starts it again with the strongest one left, in this order.
func (s *session) startWithFallbacks() (int, error) {
	code, err := s.start()
	code, err = s.fallbackMode(code, err)
	code, err = s.fallbackSharedProc(code, err)
	code, err = s.fallbackPIDNS(code, err)
	return s.fallbackNoNamespaces(code, err)
}

// fallbackMode: auto mode as root, when the user namespace that maps every
// id cannot be had.
func (s *session) fallbackMode(code int, err error) (int, error) {
	l := s.layers
	var ie *cinit.Error
	if s.p.Mode != policy.ModeAuto || os.Geteuid() != 0 || !errors.As(err, &ie) {
		return code, err
	}
	switch ie.Step {
	case "write id maps":
		// Root of a user namespace that is not the host's (a
		// rootless container, a pod with user namespaces): only ids
		// mapped into ours can be mapped on, so root's identity map
		// of every id is refused. Mapping only our own ids works.
		l.Mode, l.Fallback = "rootless", "root's id maps cannot be written here ("+ie.Error()+"): only ronly's own ids are mapped"
		s.gate.drop() // what the failed attempt said
		return s.start()
	case "unshare(CLONE_NEWUSER)":
		// Nested in a container whose seccomp or AppArmor profile
		// refuses user namespaces: as root, fall back to privileged.
		l.Mode, l.Fallback = "privileged", "user namespaces are refused here ("+ie.Error()+")"
		s.gate.drop()
		code, err = s.start()
		return code, afterUserNSRefused(ie, err)
	}
	return code, err
}

// fallbackSharedProc: the ci profile, when the kernel refuses the session
// its own /proc.
func (s *session) fallbackSharedProc(code int, err error) (int, error) {
	l := s.layers
	var ie *cinit.Error
	if !s.p.PIDNS || !errors.As(err, &ie) || ie.Step != "mount proc" || ie.Errno != unix.EPERM {
		return code, err
	}
	// A container that masks /proc paths (Docker's and Kubernetes'
	// defaults): the kernel gives a user namespace no new /proc,
	// and a PID namespace with the host's /proc is inconsistent
	// (getpid() and /proc/self disagree). So the ci profile shares
	// the host's PID namespace and /proc, as the debug profile
	// does, with signals confined all the same (Landlock, or the
	// supervisor), and says what it cannot hide.
	s.gate.drop()
	s.cfg.Flags &^= cinit.FlagPIDNS
	l.PIDNS, l.PIDNSRefused = false, ie.Error()
	s.warn("--profile ci: the kernel refuses this session its own /proc (" + ie.Error() + ": /proc paths are masked here): " +
		"it shares the PID namespace and /proc of the host or container, so other jobs' processes and command lines are visible " +
		"(not their environments), and they cannot be signalled")
	return s.start()
}

// fallbackPIDNS: signal mediation, when another seccomp listener is
// already installed (a nested sandbox): the supervisor cannot hear the
// session's signals, so a PID namespace with its own /proc confines them.
func (s *session) fallbackPIDNS(code int, err error) (int, error) {
	l := s.layers
	var ie *cinit.Error
	if !l.SignalMediation || !errors.As(err, &ie) || ie.Errno != unix.EBUSY {
		return code, err
	}
	s.gate.drop()
	s.cfg.Flags |= cinit.FlagPIDNS
	l.PIDNS = true
	s.warn(fmt.Sprintf("Landlock ABI %d cannot scope signals and no seccomp listener can be had (a nested sandbox): using a private PID namespace, so ps shows only this session's processes", l.LandlockABI))
	return s.start()
}

// fallbackNoNamespaces: auto mode, when no namespace can be made here
// (Docker's default seccomp profile, Kubernetes' RuntimeDefault, no user
// namespaces for this user): the strongest mode left makes none.
func (s *session) fallbackNoNamespaces(code int, err error) (int, error) {
	l := s.layers
	cause, ok := nonsFallback(s.p, err)
	if !ok {
		return code, err
	}
	prev, prevMode := err, l.Mode
	l.Mode, l.PIDNS = LandlockOnly, false
	l.Fallback = fmt.Sprintf("%s mode failed (%v): Landlock alone keeps the host read-only", prevMode, cause)
	s.gate.drop()
	// Said always, not only with -v: the session has less than the
	// user may expect (the host's /tmp and /dev, read-only). Held
	// with the other warnings until the sandbox is built.
	s.warn(fmt.Sprintf("mode landlock-only: no namespace can be made here (%v): Landlock alone keeps the host read-only; scratch space is $TMPDIR", cause))
	code, err = s.start()
	if err == nil {
		return code, nil
	}
	var he *HintError
	hint := ""
	if errors.As(err, &he) {
		err, hint = he.Err, he.Hint
	}
	err = fmt.Errorf("%v; landlock-only mode failed too: %w", prev, err)
	if hint != "" {
		err = &HintError{Err: err, Hint: hint}
	}
	return code, err
}

// result is how the session went, once it is over.
func (s *session) result(code int) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Result{ExitCode: code, Layers: *s.layers, Blocked: s.blocked, LimitHit: s.limitHit, Signal: s.signal, Usage: s.usage,
		Timeline: s.timeline.marks, MalformedReports: s.reports.malformed.Load(), Creds: s.creds.result()}
}

// timeline collects a session's marks; only Run's goroutine marks.
type timeline struct {
	start time.Time
	marks []Mark
}

func (t *timeline) mark(step string) {
	t.marks = append(t.marks, Mark{Step: step, At: time.Since(t.start)})
}

// session is the supervisor's state for one run.
type session struct {
	p       *policy.Policy
	cfg     cinit.Config
	layers  *Layers
	warn    func(string)
	table   bpf.Table
	refused func(Refusal)
	// mediators answer the policy's mediated calls, by syscall number.
	mediators map[int]mediator
	std       [3]*os.File // the caller's streams (Options)
	stdio     *stdio      // the running start's relay
	// socks decides the mediated socket calls (mediate_sock.go).
	socks *sockets
	// killable: the start's listener was loaded with WAIT_KILLABLE_RECV
	// (cinit.ReadyKillable), so a call it notifies cannot be restarted
	// once received.
	killable bool
	// reports counts the shims' refusals from the report pipe.
	reports *reportReader
	// sigs decides the mediated signal calls (signals.go) of a session
	// that gets withSignals, the notify-signals program.
	sigs        *signals
	withSignals []byte
	// nons is the session's directory in landlock-only mode (nons.go),
	// made by the first start in that mode; nil before. nonsMeta: the
	// metadata calls are mediated (nonsmeta.go).
	nons     *nonsPlace
	nonsMeta bool
	// creds are the credentials hidden inside (creds.go).
	creds *CredPlan
	// kube is the Kubernetes guard, nil without one (kube.go).
	kube *kubeGuard
	// writeCounter is Options.WriteCounter until a start claims it
	// (writes.go).
	writeCounter *PendingCounter

	name      string // the session id, which names its cgroup
	cgroupErr error  // why the session has no cgroup
	// firstGroup is the cgroup made while the session was planned, for
	// its first start (limits.go).
	firstGroup *pendingGroup
	timeline   *timeline
	gate       *warnGate // releases the warnings once the sandbox is built
	held       *heldSignals

	mu       sync.Mutex
	blocked  map[string]map[string]uint64
	limitHit string
	signal   syscall.Signal
	usage    Usage
}

func (s *session) record(r Refusal) {
	s.mu.Lock()
	kind := string(r.Kind)
	if s.blocked[kind] == nil {
		s.blocked[kind] = map[string]uint64{}
	}
	s.blocked[kind][r.What]++
	s.mu.Unlock()
	if s.refused != nil {
		s.refused(r)
	}
}

// start builds the sandbox in the session's current mode, runs the
// command and cleans up after it.
func (s *session) start() (int, error) {
	pendingWrites := s.startWrites() // writes.go; overlaps what follows
	defer pendingWrites.abandon()
	cfg, shimDir, extraEnv, err := s.modeConfig()
	if err != nil {
		return 0, err
	}
	// Shims report the commands they refuse on a pipe: its write end is
	// the only descriptor besides stdio the init leaves open.
	reports, reportW, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("report pipe: %w", err)
	}
	defer reports.Close()
	defer reportW.Close()
	cfg.ReportFD = reportFD
	// The command's fds 0-2 are pipes or a pty of its own, never the
	// caller's files or terminal (stdio.go).
	x, err := newStdio(s.std, s.warn)
	if err != nil {
		return 0, err
	}
	defer x.close()
	s.stdio = x
	cfg.Flags |= x.Flags
	if s.kube != nil {
		extraEnv = append(extraEnv, s.kube.env()...)
	}
	cfg.Argv, cfg.Env = commandLine(s.p, shimDir, extraEnv) // command.go
	records, err := cfg.MarshalBinary()
	if err != nil {
		return 0, err
	}
	parent, child, err := initSocket()
	if err != nil {
		return 0, err
	}
	defer unix.Close(parent)
	a := &attempt{parent: parent, records: records, reports: reports, x: x, writes: pendingWrites}
	a.sigs = s.held.caught()
	if err := s.launch(a, child, reportW); err != nil {
		return 0, err
	}
	return s.supervise(a)
}

// modeConfig is the init's config for a start in the session's current
// mode: the plan's, with what the mode and this host add. shimDir is where
// the built-in shims are inside, extraEnv what the command gets besides.
func (s *session) modeConfig() (cfg cinit.Config, shimDir string, extraEnv []string, err error) {
	cfg, l := s.cfg, s.layers
	l.UserNS = l.Mode != "privileged" && l.Mode != LandlockOnly
	shimDir = shims.Dir
	if l.Mode == LandlockOnly {
		if cfg, extraEnv, err = s.startNons(cfg); err != nil {
			return cfg, "", nil, err
		}
		s.creds.warnUnhidden(s.warn)
		shimDir = s.nons.shims
	}
	if l.UserNS {
		cfg.Flags |= cinit.FlagUserNS
		cfg.UsernsLimits = usernsLimits("/proc/sys/user", s.warn) // userns.go
	}
	cfg = s.signalProgram(cfg) // signals.go
	if cfg.Flags&cinit.FlagSeccompNotify != 0 && pidfdGetfdRefused() {
		cfg.Flags |= cinit.FlagListenerHelper // nons.go
		if l.Mode == LandlockOnly && addfdAvailable() {
			cfg = s.mediateSocketFDs(cfg) // sockfd.go: the host's network, sockets of the supervisor's making
		} else {
			s.refuseSockets()
		}
	}
	if l.Mode == LandlockOnly {
		// File metadata, which Landlock does not judge, goes to the
		// supervisor (nonsmeta.go).
		if cfg.BPF != nil {
			cfg.BPF = append(nonsPrefix(cfg.Flags&cinit.FlagSeccompNotify != 0, l.LandlockABI), cfg.BPF...)
		}
		if cfg.Fallback != nil {
			cfg.Fallback = append(nonsPrefix(false, l.LandlockABI), cfg.Fallback...)
		}
	}
	// Root keeps CAP_DAC_READ_SEARCH to read root-only files; without a
	// user namespace only if it has it (Docker's root does not: capset
	// would fail asking for it).
	if os.Geteuid() == 0 && (l.UserNS || permittedCap(unix.CAP_DAC_READ_SEARCH)) {
		cfg.Flags |= cinit.FlagKeepDACRead
	}
	return cfg, shimDir, extraEnv, nil
}

// initSocket is the socket pair the supervisor and the init talk on.
func initSocket() (parent int, child *os.File, err error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	parent, child = pair[0], os.NewFile(uintptr(pair[1]), "ronly-init")
	// Each message then says which process sent it: the init hands the
	// seccomp listener over by naming its descriptor (MsgListener).
	if err := unix.SetsockoptInt(parent, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(parent)
		child.Close()
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	return parent, child, nil
}

// heldSignals are the signals the supervisor catches while a session
// runs. Ctrl-C reaches the command through the terminal, and the
// supervisor must survive it to report the exit status; TERM and HUP are
// passed on to the init (supervise).
//
// They are caught on a goroutine from the moment the session is planned:
// signal.Notify costs 0.3-1.4 ms in a fresh process on a 2-core VM (the
// runtime starts its signal thread and hands it each signal in turn),
// which then overlaps the planning instead of adding to the start. A TERM
// that arrives before the init exists waits in the channel for it.
type heldSignals struct {
	ch    chan os.Signal
	ready chan struct{}
}

func holdSignals() *heldSignals {
	h := &heldSignals{ch: make(chan os.Signal, 4), ready: make(chan struct{})}
	go func() {
		signal.Notify(h.ch, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGHUP)
		close(h.ready)
	}()
	return h
}

// caught returns the channel once the signals are caught.
func (h *heldSignals) caught() chan os.Signal {
	<-h.ready
	return h.ch
}

func (h *heldSignals) stop() { signal.Stop(h.caught()) }

// attempt is one start's init, as the supervisor holds it.
type attempt struct {
	parent  int    // the supervisor's end of the init's socket
	records []byte // the init's config
	reports *os.File
	x       *stdio
	writes  *PendingCounter
	cmd     *exec.Cmd
	group   *cgroup.Group // nil: no cgroup (rlimits)
	sigs    chan os.Signal
	started time.Time
}

// launch starts the init, waiting for its records, in the session's
// cgroup and under its limits. It closes child and reportW, which the init
// holds from then on.
func (s *session) launch(a *attempt, child, reportW *os.File) error {
	defer child.Close()
	// Orphans of the command reparent to us, so we can kill them at the end.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	// The invitation only: the command's argv and environment ride in the
	// records, and the init execs the command itself, so no Go runtime
	// starts in between (nor sees the command's GODEBUG or GOGC).
	cmd := exec.Command("/proc/self/exe")
	cmd.Args[0] = "ronly"
	cmd.Env = []string{cinit.EnvFD + "=3"}
	a.x.wire(cmd)
	cmd.ExtraFiles = []*os.File{child, reportW}
	// If the supervisor dies, the sandbox dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a.group = s.group()
	s.timeline.mark("cgroup")
	a.started = time.Now()
	// On a thread of its own: see startPinned (Pdeathsig is per thread).
	cmd, bornInside, err := startPinned(func() (*exec.Cmd, bool, error) { return startInCgroup(cmd, a.group) })
	if err != nil {
		closeGroup(a.group, s.warn)
		return err
	}
	a.cmd = cmd
	child.Close()
	reportW.Close()
	a.x.childStarted()
	s.timeline.mark("init started")
	return s.admitInit(a, bornInside)
}

// startInCgroup starts cmd born inside the group's v2 directory where the
// kernel lets it (clone3 with CLONE_INTO_CGROUP), else as usual; bornInside
// says which. It may return another cmd than the one given.
func startInCgroup(cmd *exec.Cmd, group *cgroup.Group) (_ *exec.Cmd, bornInside bool, err error) {
	if group != nil {
		dir, err := group.Dir()
		if err != nil {
			return cmd, false, fmt.Errorf("cgroup: %w", err)
		}
		if dir != nil {
			defer dir.Close()
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
		}
	}
	err = cmd.Start()
	bornInside = cmd.SysProcAttr.UseCgroupFD
	if err != nil && bornInside && errors.Is(err, unix.ENOSYS) {
		// clone3 refused (Docker's default seccomp profile answers it
		// with ENOSYS): fork as usual, then move the init in.
		retry := exec.Command(cmd.Path)
		retry.Args, retry.Env, retry.ExtraFiles = cmd.Args, cmd.Env, cmd.ExtraFiles
		retry.Stdin, retry.Stdout, retry.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
		attr := *cmd.SysProcAttr
		attr.UseCgroupFD, attr.CgroupFD = false, 0
		retry.SysProcAttr = &attr
		cmd, bornInside = retry, false
		err = cmd.Start()
	}
	if err != nil {
		return cmd, false, fmt.Errorf("start init: %w", err)
	}
	return cmd, bornInside, nil
}

// admitInit makes the waiting init the session's: whatever it starts from
// here on is born inside the session's cgroup and under its limits. On an
// error the init is killed and the cgroup gone.
func (s *session) admitInit(a *attempt, bornInside bool) error {
	pid := a.cmd.Process.Pid
	err := s.confine(a.group, pid, bornInside)
	// Once the init is in the session's cgroup, before it can start
	// anything: the cgroup is what makes a process the session's.
	if err == nil {
		if lerr := s.sigs.learn(pid, a.group != nil); lerr != nil && s.layers.SignalMediation {
			err = fmt.Errorf("read the session's cgroup: %w", lerr)
		}
	}
	if err != nil {
		a.cmd.Process.Kill()
		a.cmd.Wait()
		closeGroup(a.group, s.warn)
	}
	return err
}

// supervise sends the init its records, answers it until the sandbox is
// built, then mediates the session's calls until the command exits, and
// cleans up after it.
func (s *session) supervise(a *attempt) (int, error) {
	cmd := a.cmd
	stopWatch := s.watchLimits(a.group, cmd.Process)
	collectWrites, endWrites, helper := s.watchWrites(a.group, a.writes)
	s.timeline.mark("write counter attached")
	readDone := make(chan struct{})
	go func() {
		s.reports.read(a.reports, s.record)
		close(readDone)
	}()
	// Until the command has exited: a fallback's next attempt reads the
	// same channel.
	exited := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-a.sigs:
				if sig == unix.SIGTERM || sig == unix.SIGHUP {
					cmd.Process.Signal(sig)
				}
			case <-exited:
				return
			}
		}
	}()
	listener, initErr := s.converse(a.parent, cmd.Process.Pid, a.records)
	if initErr == nil {
		if err := a.x.start(); err != nil {
			initErr = err
			cmd.Process.Kill()
		}
	}
	s.timeline.mark("sandbox built")
	if initErr == nil {
		s.gate.release()
		s.socketLayers(cmd.Process.Pid, listener >= 0)
	}
	var notes *notifier
	if listener >= 0 {
		notes = startNotifier(listener, s.table, s.mediators, s.record, s.refused != nil, s.killable)
	}
	werr := cmd.Wait()
	close(exited)
	s.timeline.mark("command exited")
	stopWatch()
	s.cleanUp(a, notes, readDone, helper)
	// The counts once the leftovers are dead (they are complete then),
	// and before the cgroup is removed: a counting session that starts
	// meanwhile forgets the ids of removed cgroups, counts and all, from
	// the map the sessions share (writewatch's prune).
	collectWrites()
	closeGroup(a.group, s.warn)
	endWrites() // may take seconds (see watchWrites)
	s.timeline.mark("cleaned up")
	if initErr != nil {
		// An init killed by a signal sent no reason of its own.
		if ws, ok := waitStatus(cmd); ok && ws.Signaled() {
			return 0, fmt.Errorf("%w (the init, pid %d, was killed by %s)", initErr, cmd.Process.Pid, unix.SignalName(ws.Signal()))
		}
		return 0, initErr
	}
	return exitCode(cmd, werr)
}

// cleanUp, once the init has been waited for, accounts for the session
// and kills whatever it left behind, but the write counter's helper and
// ronly's watchdog. The
// emptied cgroup is the caller's to remove.
func (s *session) cleanUp(a *attempt, notes *notifier, readDone <-chan struct{}, helper int) {
	s.account(a.group, a.cmd, a.started)
	if a.group != nil {
		if err := a.group.Kill(); err != nil {
			s.warn(fmt.Sprintf("cgroup not cleaned up: %v", err))
		}
	}
	killDescendants(helper, cinit.WatchdogPid())
	if notes != nil {
		// Nothing is left to notify: the last refusals are recorded
		// before the counts are read.
		notes.stop(time.Second)
	}
	s.socks.forget()
	a.x.finish() // the output drained, the caller's terminal restored
	// Every holder of the pipe is gone now; a process that escaped the
	// reaping must not hold the session open.
	select {
	case <-readDone:
	case <-time.After(time.Second):
		a.reports.Close()
	}
}

// converse sends the records and answers the init until it is ready. It
// returns the seccomp listener, or -1 when the init loaded no listener.
func (s *session) converse(fd, pid int, records []byte) (int, error) {
	// An init that stopped reading (EPIPE) may have said why first: its
	// message is still in the socket, and it is the better answer.
	var sendErr error
	if err := writeAll(fd, records); err != nil {
		sendErr = fmt.Errorf("send records to init: %w", err)
	}
	c := &conversation{s: s, fd: fd, pid: pid, listener: -1}
	defer c.close()
	buf := make([]byte, cinit.MsgSize)
	for {
		fds, sender, err := recvFrom(fd, buf)
		if err != nil {
			if sendErr != nil {
				return -1, sendErr
			}
			return -1, fmt.Errorf("init exited before the sandbox was ready: %w", err)
		}
		m, err := cinit.DecodeMsg(buf)
		if err != nil {
			closeAll(fds)
			return -1, err
		}
		listener, done, err := c.answer(m, fds, sender)
		if done || err != nil {
			return listener, err
		}
	}
}

// conversation is what converse holds while the init builds the sandbox.
type conversation struct {
	s        *session
	fd, pid  int
	listener int // taken out of the init (MsgListener); -1 before
	// The user namespace limits the init could not set, said in one line:
	// a read-only /proc/sys (a container) refuses all of them at once.
	unbounded    []string
	unboundedErr syscall.Errno
}

// close says which user namespace limits are unbounded, and closes a
// listener that was not handed on.
func (c *conversation) close() {
	if len(c.unbounded) > 0 {
		c.s.warn(fmt.Sprintf("user namespace limits %s: %v; the session's share of them is not bounded",
			strings.Join(c.unbounded, ", "), c.unboundedErr))
	}
	if c.listener >= 0 {
		unix.Close(c.listener)
	}
}

// answer handles one message of the init, which came with the descriptors
// fds from the process sender. done: the init is ready, and listener is
// the seccomp listener (-1 for none).
func (c *conversation) answer(m cinit.Msg, fds []int, sender int) (listener int, done bool, err error) {
	defer func() { closeAll(fds) }()
	switch m.Type {
	case cinit.MsgNeedIDMap:
		return -1, false, c.reply(c.idMaps())
	case cinit.MsgError:
		return -1, false, withHint(&cinit.Error{Step: m.Step, Detail: m.Detail, Errno: m.Err})
	case cinit.MsgReady:
		listener = c.ready(m)
		return listener, true, nil
	case cinit.MsgListener:
		reply := cinit.Msg{Type: cinit.MsgListenerTaken}
		if c.listener >= 0 {
			unix.Close(c.listener)
			c.listener = -1
		}
		if len(fds) == 1 {
			// Sent by the init's helper (FlagListenerHelper).
			c.listener, fds = fds[0], nil
		} else if c.listener, err = takeFD(sender, int(m.Value)); err != nil {
			reply.Err, reply.Detail = errnoOf(err), err.Error()
		} else if c.s.socks != nil && c.s.socks.byPath == nil {
			c.s.socks.holdMountTable(sender) // before it execs the command
		}
		return -1, false, c.reply(reply)
	case cinit.MsgPTY:
		if len(fds) != 1 {
			return -1, false, errors.New("the init sent its pty message without the pty")
		}
		pty := fds[0]
		fds = nil
		return -1, false, c.s.stdio.setPTY(pty)
	case cinit.MsgWarn:
		switch m.Step {
		case "user namespace limit":
			c.unbounded, c.unboundedErr = append(c.unbounded, m.Detail), m.Err
			return -1, false, nil
		case "working directory":
			c.s.warn(fmt.Sprintf("the working directory %s is not there inside (%v): the command starts in /", m.Detail, m.Err))
			return -1, false, nil
		}
		c.s.warn(fmt.Sprintf("%s %s: %v; it is empty inside", m.Step, m.Detail, m.Err))
		return -1, false, nil
	}
	return -1, false, fmt.Errorf("unexpected message %d from init", m.Type)
}

// idMaps writes the init's id maps and is the answer to MsgNeedIDMap.
func (c *conversation) idMaps() cinit.Msg {
	reply := cinit.Msg{Type: cinit.MsgIDMapDone}
	if err := writeIDMaps(c.pid, c.s.layers.Mode == "userns"); err != nil {
		reply.Err, reply.Detail = errnoOf(err), err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			reply.Detail = pe.Path
		}
	}
	return reply
}

func (c *conversation) reply(m cinit.Msg) error {
	if err := cinit.WriteMsg(fdWriter(c.fd), m); err != nil {
		return fmt.Errorf("answer init: %w", err)
	}
	return nil
}

// ready records the layers the init says it built (MsgReady) and returns
// the seccomp listener, handed on, or -1.
func (c *conversation) ready(m cinit.Msg) int {
	l := c.s.layers
	l.LandlockABI = int(m.Value)
	switch {
	case m.Flags&cinit.ReadyListener != 0 && c.listener >= 0:
		l.Seccomp = "notify"
		c.s.killable = m.Flags&cinit.ReadyKillable != 0
		fd := c.listener
		c.listener = -1
		return fd
	case m.Flags&cinit.ReadyFallback != 0:
		l.Seccomp = "errno"
		c.s.warn("another seccomp listener is already installed (nested sandbox): refused calls are still refused, but not counted")
	}
	return -1
}

// writeIDMaps maps every id to itself (files keep their owners) when all
// is set, which needs root; otherwise only the caller's own ids.
func writeIDMaps(pid int, all bool) error {
	uidMap, gidMap, denySetgroups := idMaps(os.Geteuid(), os.Getegid(), all)
	if denySetgroups {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/setgroups", pid), []byte("deny"), 0); err != nil {
			return err
		}
	}
	// Errors are *os.PathError: the init's line names the file and the
	// errno, once each.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/uid_map", pid), []byte(uidMap), 0); err != nil {
		return err
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/gid_map", pid), []byte(gidMap), 0)
}

// idMaps are the uid_map and gid_map lines for a caller with uid and gid.
// Mapping only the caller's own ids needs setgroups denied first (the
// kernel refuses an unprivileged gid_map otherwise, user_namespaces(7)).
func idMaps(uid, gid int, all bool) (uidMap, gidMap string, denySetgroups bool) {
	if all {
		return "0 0 4294967295\n", "0 0 4294967295\n", false
	}
	return fmt.Sprintf("%d %d 1\n", uid, uid), fmt.Sprintf("%d %d 1\n", gid, gid), true
}

func errnoOf(err error) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	return unix.EIO
}

// waitStatus is how the waited-for cmd ended; false when the wait failed.
func waitStatus(cmd *exec.Cmd) (syscall.WaitStatus, bool) {
	if cmd.ProcessState == nil {
		return 0, false
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ws, ok
}

func exitCode(cmd *exec.Cmd, werr error) (int, error) {
	ws, ok := waitStatus(cmd)
	if !ok {
		return 0, fmt.Errorf("wait: %w", werr)
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}
