package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/audit"
	"ronly.dev/ronly/go/cli"
	"ronly.dev/ronly/go/hostfile"
	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// Run builds the sandbox and runs the command; status receives its exit code.
func (r *RunCmd) Run(c *cli.CLI, status *int) error {
	p, err := c.PolicyFor(r.Command)
	if err != nil {
		return err
	}
	session := report.NewSessionID()
	// Every file ronly writes on the host for the session is written
	// through a directory opened now, before the sandbox exists, never
	// through a path looked up again later: the session may write where
	// they lie and plant symlinks there (go/hostfile).
	reportDir, reportName, err := openReport(c.Report)
	if err != nil {
		return err
	}
	defer reportDir.Close()
	log, closeLog, err := openAuditLog(c.AuditLog)
	if err != nil {
		return err
	}
	defer closeLog()
	mo := openMetrics(c)
	defer mo.close()

	opts := sandbox.Options{
		Warn:    func(msg string) { fmt.Fprintf(os.Stderr, "ronly: warning: %s\n", msg) },
		Session: session,
		Start:   started,
	}
	if log != nil {
		opts.Refused = func(r sandbox.Refusal) {
			log.Write(audit.Entry{Time: r.Time, Session: session, PID: r.PID, Comm: r.Comm, Kind: string(r.Kind),
				What: r.What, Path: r.Path, Errno: audit.ErrnoName(r.Errno), Reason: r.Reason})
		}
	}
	start := time.Now()
	res, err := sandbox.Run(p, opts)
	var auditDropped uint64
	if log != nil {
		// The session is over: the last "dropped" line, and the total
		// for the metrics.
		log.Close()
		auditDropped = log.Dropped()
	}
	deliverMetrics(mo, metrics.Report{Session: session, Start: start, End: time.Now(), Failed: err != nil,
		ExitCode: res.ExitCode, LandlockABI: res.Layers.LandlockABI, SeccompMode: res.Layers.Seccomp,
		BlockedSyscalls: res.Blocked["syscall"], BlockedCommands: res.Blocked["command"], BlockedAPICalls: res.Blocked["api"], ShimReportsMalformed: res.MalformedReports,
		BlockedWrites: res.Blocked["write"], WriteCounting: res.Layers.WriteCounting, SocketMediation: res.Layers.SocketMediation,
		AuditLinesDropped: auditDropped})
	if p.Verbose {
		if res.Layers.Fallback != "" {
			fmt.Fprintf(os.Stderr, "ronly: session %s: mode %s: %s\n", session, res.Layers.Mode, res.Layers.Fallback)
		}
		fmt.Fprintf(os.Stderr, "ronly: session %s: %s\n", session, res.Layers)
		if res.Layers.WriteCounter == "off" {
			fmt.Fprintf(os.Stderr, "ronly: session %s: refused writes were refused but not counted (the default; --count-writes counts them)\n", session)
		}
		var steps []string
		for _, m := range res.Timeline {
			steps = append(steps, fmt.Sprintf("%s %.1f", m.Step, float64(m.At)/float64(time.Millisecond)))
		}
		fmt.Fprintf(os.Stderr, "ronly: session %s: ms since start: %s\n", session, strings.Join(steps, ", "))
		if len(res.Creds.Hidden) > 0 {
			fmt.Fprintf(os.Stderr, "ronly: session %s: credentials that read empty inside: %s\n", session, strings.Join(res.Creds.Hidden, ", "))
		}
		for _, n := range res.Creds.Notes {
			fmt.Fprintf(os.Stderr, "ronly: session %s: %s\n", session, n)
		}
	}
	if res.LimitHit != "" {
		fmt.Fprintf(os.Stderr, "ronly: session killed with all its processes: %s\n", limitText(p.Limits, res.LimitHit))
	}
	if c.Report != "" {
		if werr := writeReport(reportDir, reportName, sessionReport(session, p, start, res, err)); werr != nil {
			fmt.Fprintf(os.Stderr, "ronly: warning: --report %s: %v\n", c.Report, werr)
		}
	}
	if log != nil && log.Err() != nil {
		fmt.Fprintf(os.Stderr, "ronly: warning: --audit-log %s: %v\n", c.AuditLog, log.Err())
	}
	if err != nil {
		return err
	}
	*status = res.ExitCode
	return nil
}

// metricsOut is where the session's counts go, its directories opened at
// the start.
type metricsOut struct {
	o   metrics.DeliverOptions
	on  bool  // something to deliver to
	err error // why the textfile's directory or the spool could not be opened
}

// openMetrics opens the directories the session's counts may be written
// in. A host without an exporter, a spool or a textfile gets nothing, and a
// failure is only a warning at the end: metrics never fail a session.
func openMetrics(c *cli.CLI) *metricsOut {
	m := &metricsOut{o: metrics.DeliverOptions{Socket: c.MetricsSocket, Textfile: c.MetricsTextfile, Spool: c.MetricsSpool}}
	if c.NoMetrics {
		return m
	}
	if m.o.Textfile != "" {
		m.on = true
		m.o.TextfileDir, _, m.err = hostfile.OpenFileDir(m.o.Textfile)
		return m
	}
	if !exists(m.o.Socket) && !exists(m.o.Spool) {
		return m
	}
	m.on = true
	// The socket's directory, when it exists (it must, for the socket
	// to): the socket is connected to through it, never a symlink.
	if dir, _, err := hostfile.OpenFileDir(m.o.Socket); err == nil {
		m.o.SocketDir = dir
	}
	// Only a session whose exporter is down writes in the spool, and
	// creates it if missing: what exists of its path is opened now.
	m.o.SpoolDir, m.err = hostfile.OpenPendingDir(m.o.Spool)
	return m
}

func (m *metricsOut) close() {
	m.o.TextfileDir.Close()
	m.o.SpoolDir.Close()
	m.o.SocketDir.Close()
}

// deliverMetrics delivers the session's counts; a failure is a warning.
func deliverMetrics(m *metricsOut, r metrics.Report) {
	if !m.on {
		return
	}
	err := m.err
	if err == nil {
		err = metrics.Deliver(r, m.o)
	}
	var queued *metrics.QueuedError
	switch {
	case errors.As(err, &queued):
		fmt.Fprintf(os.Stderr, "ronly: warning: metrics queued: %v\n", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "ronly: warning: metrics not delivered: %v\n", err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// openAuditLog opens the audit log for appending, through its directory and
// never through a symlink or a file with other hard links (either could
// name any host file: see hostfile.OpenAppend).
func openAuditLog(path string) (*audit.Log, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return audit.New(os.Stderr), func() {}, nil
	}
	dir, name, err := hostfile.OpenFileDir(path)
	if err != nil {
		return nil, nil, &policy.FlagError{Flag: "--audit-log", Value: path, Reason: "its directory cannot be opened: " + reason(err)}
	}
	defer dir.Close()
	f, err := dir.OpenAppend(name, 0o640)
	if err != nil {
		return nil, nil, &policy.FlagError{Flag: "--audit-log", Value: path, Reason: reason(err)}
	}
	return audit.New(f), func() { f.Close() }, nil
}

// reason is err without the path a PathError repeats.
func reason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// openReport opens the directory the report will be written in, so that
// a session cannot redirect it, and fails before the session starts when
// the report could not be written after it: a CI job must not run only to
// lose its report. No directory for "" and "-" (stderr).
func openReport(path string) (*hostfile.Dir, string, error) {
	if path == "" || path == "-" {
		return nil, "", nil
	}
	dir, name, err := hostfile.OpenFileDir(path)
	if err != nil {
		return nil, "", &policy.FlagError{Flag: "--report", Value: path, Reason: "its directory does not exist or cannot be opened: " + reason(err)}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		dir.Close()
		return nil, "", &policy.FlagError{Flag: "--report", Value: path, Reason: "is a directory"}
	}
	return dir, name, nil
}

// writeReport writes r as name in dir, atomically; to stderr when dir is nil.
func writeReport(dir *hostfile.Dir, name string, r *report.Report) error {
	b, err := report.Encode(r)
	if err != nil {
		return err
	}
	if dir == nil {
		_, err := os.Stderr.Write(b)
		return err
	}
	return dir.WriteFile(name, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

func limitText(l policy.Limits, hit string) string {
	switch hit {
	case "timeout":
		return fmt.Sprintf("wall-clock limit --timeout %s reached", l.Timeout)
	case "cpu":
		return fmt.Sprintf("CPU time limit --cpu-time %s reached", l.CPUTime)
	case "memory":
		return fmt.Sprintf("memory limit --memory %d bytes reached (the kernel's OOM killer acted)", l.Memory)
	case "pids":
		return fmt.Sprintf("process limit --pids %d reached", l.Pids)
	}
	return hit
}

func sessionReport(session string, p *policy.Policy, start time.Time, res sandbox.Result, err error) *report.Report {
	r := &report.Report{
		Version: report.Version, Session: session, Command: p.Command, Profile: p.Profile, Start: start,
		Exit: report.Exit{Code: res.ExitCode},
		Usage: report.Usage{WallSeconds: res.Usage.Wall.Seconds(), UserSeconds: res.Usage.User.Seconds(),
			SysSeconds: res.Usage.Sys.Seconds(), MaxRSSBytes: res.Usage.MaxRSS},
		Limits: report.Limits{TimeoutSeconds: p.Limits.Timeout.Seconds(), CPUSeconds: p.Limits.CPUTime.Seconds(),
			MemoryBytes: p.Limits.Memory, Pids: p.Limits.Pids},
		LimitHit: res.LimitHit,
		Refused:  res.Blocked,
		Layers: report.Layers{Mode: res.Layers.Mode, UserNS: res.Layers.UserNS, PIDNS: res.Layers.PIDNS,
			LandlockABI: res.Layers.LandlockABI, Seccomp: res.Layers.Seccomp, Counting: res.Layers.Seccomp == "notify",
			WriteCounting: res.Layers.WriteCounting, WriteCounter: res.Layers.WriteCounter,
			Network: res.Layers.Network, Cgroup: res.Layers.Cgroup, AbstractSockets: res.Layers.AbstractSockets,
			SocketMediation: res.Layers.SocketMediation, DockerGuard: res.Layers.DockerGuard, KubeGuard: res.Layers.KubeGuard,
			SignalMediation: res.Layers.SignalMediation, PIDNSRefused: res.Layers.PIDNSRefused},
	}
	if c := res.Creds; len(c.Hidden)+len(c.Unhidden) > 0 {
		r.Credentials = &report.Credentials{Hidden: append([]string{}, c.Hidden...), Unhidden: c.Unhidden}
	}
	r.Timeline = []report.Mark{}
	for _, m := range res.Timeline {
		r.Timeline = append(r.Timeline, report.Mark{Step: m.Step, MS: float64(m.At) / float64(time.Millisecond)})
	}
	if r.Command == nil {
		r.Command = []string{}
	}
	if r.Refused == nil {
		r.Refused = map[string]map[string]uint64{}
	}
	if err != nil {
		r.Error = err.Error()
		r.Exit.Code = exitRonly
	} else if res.Signal != 0 {
		r.Exit.Signal = unix.SignalName(res.Signal)
	}
	return r
}
