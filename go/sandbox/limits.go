package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/cgroup"
	"ronly.dev/ronly/go/policy"
)

// limitPoll is how often the supervisor looks at the cgroup's counters. A
// job can overshoot its CPU time by this much per core before it is killed.
const limitPoll = 100 * time.Millisecond

// newGroup makes the session's cgroup: always as root (it is how the whole
// process tree is killed at the end), otherwise only when limits ask for
// one. nil when there is none, with the reason in err when one was
// wanted; confine then falls back to rlimits.
func newGroup(lim policy.Limits, name string) (g *cgroup.Group, err error) {
	want := cgroup.Limits{Memory: lim.Memory, Pids: lim.Pids, CPUTime: lim.CPUTime}
	if os.Geteuid() != 0 && want == (cgroup.Limits{}) {
		return nil, nil
	}
	if name == "" {
		b := make([]byte, 8)
		rand.Read(b)
		name = hex.EncodeToString(b)
	}
	// A supervisor killed before it could clean up left its cgroup, and
	// maybe processes in it: the next session removes both, beside its
	// own start rather than before it (New copes with a sweep at any
	// moment, as it must with other sessions'); closeGroup waits for it.
	sweeping.Add(1)
	go func() {
		defer sweeping.Done()
		lost := SweepLost()
		sweptMu.Lock()
		swept = append(swept, lost...)
		sweptMu.Unlock()
	}()
	return cgroup.New(cgroup.Name(name, os.Getpid()), want)
}

// sweeping is newGroup's sweep of dead sessions' cgroups, and swept the
// sessions it found, for takeSwept.
var (
	sweeping sync.WaitGroup
	sweptMu  sync.Mutex
	swept    []string
)

// ProbeSessionPrefix begins the name of every session `ronly probe` runs.
// The probe kills its own supervisors on purpose (Ctrl-C of the probe, a
// session past its time), and a configuration without every layer may let
// a hostile operation kill one: such a session's cgroup is swept like any
// other, but it is not reported lost, so that running the probe does not
// look like supervisors dying in production (RonlySupervisorsLost).
const ProbeSessionPrefix = "probe-"

// SweepLost removes dead sessions' cgroups and what runs in them
// (cgroup.Sweep) and returns the sessions among them to report lost: all
// but the probe's.
func SweepLost() []string {
	var lost []string
	for _, s := range cgroup.Sweep() {
		if !strings.HasPrefix(s, ProbeSessionPrefix) {
			lost = append(lost, s)
		}
	}
	return lost
}

// takeSwept waits for the sweeps newGroup began and returns the sessions
// they found dead, once.
func takeSwept() []string {
	sweeping.Wait()
	sweptMu.Lock()
	defer sweptMu.Unlock()
	lost := swept
	swept = nil
	return lost
}

// pendingGroup is the first start's cgroup, made on a goroutine while the
// session is planned: its mkdir and writes in cgroupfs (1.3-2 ms of a
// session's start on a 2-core VM) need only the limits, so they need not
// wait for the plan, nor the init's start for them.
type pendingGroup struct {
	done  chan struct{}
	g     *cgroup.Group
	err   error
	taken bool
}

func beginGroup(lim policy.Limits, name string) *pendingGroup {
	pg := &pendingGroup{done: make(chan struct{})}
	go func() {
		defer close(pg.done)
		pg.g, pg.err = newGroup(lim, name)
	}()
	return pg
}

// take hands the group over to the caller, who closes it; nil when it is
// taken already (a fallback's start makes its own).
func (pg *pendingGroup) take() (g *cgroup.Group, ok bool, err error) {
	if pg == nil || pg.taken {
		return nil, false, nil
	}
	<-pg.done
	pg.taken = true
	return pg.g, true, pg.err
}

// discard removes the group if no start took it (the session was not
// started: a policy this kernel refuses, a plan that failed).
func (pg *pendingGroup) discard(warn func(string)) {
	if g, ok, _ := pg.take(); ok {
		closeGroup(g, warn)
	}
}

// group is a start's cgroup: the one made while the session was planned
// for the first start, a new one for a fallback's.
func (s *session) group() *cgroup.Group {
	g, ok, err := s.firstGroup.take()
	if !ok {
		g, err = newGroup(s.p.Limits, s.name)
	}
	if err != nil {
		s.cgroupErr = err
		return nil
	}
	return g
}

// confine puts the init, still waiting for its records, into the group
// (only its v1 directories when it was born in the v2 one), or else sets
// rlimits on it that its descendants inherit.
func (s *session) confine(g *cgroup.Group, pid int, bornInside bool) error {
	lim := s.p.Limits
	if g != nil {
		add := g.Add
		if bornInside {
			add = g.AddV1
		}
		if err := add(pid); err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		s.layers.Cgroup = g.Kind()
		return nil
	}
	var fallbacks []string
	for _, r := range rlimits(lim) {
		v := unix.Rlimit{Cur: r.value, Max: r.value}
		if err := unix.Prlimit(pid, r.res, &v, nil); err != nil {
			return fmt.Errorf("set %s on the session: %w", r.name, err)
		}
		fallbacks = append(fallbacks, r.name)
	}
	if len(fallbacks) > 0 {
		s.warn(fmt.Sprintf("no cgroup for the limits (%v): using %s instead, which bound each process, not the session as a whole",
			s.cgroupErr, strings.Join(fallbacks, ", ")))
	}
	return nil
}

// rlimit is one resource limit set on the init in place of a cgroup's.
type rlimit struct {
	res   int
	value uint64
	name  string
}

// rlimits are the limits that stand in for a cgroup's: each bounds one
// process, not the session. RLIMIT_CPU counts whole seconds, rounded up.
func rlimits(lim policy.Limits) []rlimit {
	var out []rlimit
	if lim.Memory > 0 {
		out = append(out, rlimit{unix.RLIMIT_AS, lim.Memory, "RLIMIT_AS"})
	}
	if lim.Pids > 0 {
		out = append(out, rlimit{unix.RLIMIT_NPROC, uint64(lim.Pids), "RLIMIT_NPROC"})
	}
	if lim.CPUTime > 0 {
		out = append(out, rlimit{unix.RLIMIT_CPU, uint64((lim.CPUTime + time.Second - 1) / time.Second), "RLIMIT_CPU"})
	}
	return out
}

// watchLimits ends the session when it runs out of time or hits a cgroup
// limit: the whole tree is killed and the reason kept for the report.
func (s *session) watchLimits(g *cgroup.Group, p *os.Process) (stop func()) {
	lim := s.p.Limits
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }) }
	kill := func(reason string) {
		s.mu.Lock()
		first := s.limitHit == ""
		if first {
			s.limitHit = reason
		}
		s.mu.Unlock()
		if !first {
			return
		}
		if g != nil {
			g.Kill()
		}
		// Without a cgroup: the init, and with it a private PID
		// namespace; orphans of the debug profile are reaped after.
		p.Kill()
	}
	var deadline <-chan time.Time
	if lim.Timeout > 0 {
		t := time.NewTimer(lim.Timeout)
		defer func() {
			go func() { <-done; t.Stop() }()
		}()
		deadline = t.C
	}
	var tick <-chan time.Time
	if g != nil && (lim.Memory > 0 || lim.Pids > 0 || lim.CPUTime > 0) {
		t := time.NewTicker(limitPoll)
		defer func() {
			go func() { <-done; t.Stop() }()
		}()
		tick = t.C
	}
	if deadline == nil && tick == nil {
		return stop
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case <-deadline:
				kill("timeout")
				return
			case <-tick:
				if why := g.Hit(); why != "" {
					kill(why)
					return
				}
			}
		}
	}()
	return stop
}

// account fills in the session's usage once the init has been waited for,
// and notices a limit the poll did not see in time (the OOM killer may end
// the command between two looks).
func (s *session) account(g *cgroup.Group, cmd *exec.Cmd, started time.Time) {
	u := Usage{Wall: time.Since(started)}
	if st := cmd.ProcessState; st != nil {
		u.User, u.Sys = st.UserTime(), st.SystemTime()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			u.MaxRSS = uint64(ru.Maxrss) * 1024
		}
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			s.mu.Lock()
			s.signal = ws.Signal()
			s.mu.Unlock()
			if ws.Signal() == syscall.SIGXCPU {
				s.setHit("cpu")
			}
		}
	}
	if g != nil {
		if peak := g.PeakMemory(); peak > u.MaxRSS {
			u.MaxRSS = peak
		}
		if why := g.Hit(); why != "" {
			s.setHit(why)
		}
	}
	s.mu.Lock()
	s.usage = u
	s.mu.Unlock()
}

func (s *session) setHit(reason string) {
	s.mu.Lock()
	if s.limitHit == "" {
		s.limitHit = reason
	}
	s.mu.Unlock()
}

// closeGroup kills what is left in the group and removes it; a failure is
// a leftover on the host, which the user must hear of.
func closeGroup(g *cgroup.Group, warn func(string)) {
	sweeping.Wait()
	if g == nil {
		return
	}
	if err := g.Close(); err != nil {
		warn(fmt.Sprintf("cgroup not cleaned up: %v", err))
	}
}
