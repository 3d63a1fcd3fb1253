package cli

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/audit"
	"ronly.dev/ronly/go/hostfile"
	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// Outputs are where a session's records go, as the flags name them: the
// --report document, the --audit-log and the --metrics-* destinations.
// Every file ronly writes on the host for the session is written through a
// directory opened before the sandbox exists, never through a path looked
// up again later: the session may write where they lie and plant symlinks
// there (go/hostfile).
type Outputs struct {
	stderr     io.Writer // for "-"
	reportDir  *hostfile.Dir
	reportName string
	audit      *audit.Log
	auditFile  *os.File
	metrics    metricsOut
}

// OpenOutputs opens what the flags name. An error names the flag (the
// session must not start, only to lose its report); a metrics destination
// that cannot be opened is only DeliverMetrics's error, at the end.
func (c *CLI) OpenOutputs(stderr io.Writer) (*Outputs, error) {
	o := &Outputs{stderr: stderr}
	var err error
	if o.reportDir, o.reportName, err = openReport(c.Report); err != nil {
		return nil, err
	}
	if err := o.openAuditLog(c.AuditLog); err != nil {
		o.reportDir.Close()
		return nil, err
	}
	o.metrics = openMetrics(c)
	return o, nil
}

// OpenMetrics opens only the metrics destination the flags name: for
// reports of other sessions (DeliverLost), where the session's own report
// and audit log must not be touched.
func (c *CLI) OpenMetrics() *Outputs {
	return &Outputs{metrics: openMetrics(c)}
}

// Close closes what OpenOutputs opened.
func (o *Outputs) Close() {
	o.reportDir.Close()
	if o.auditFile != nil {
		o.auditFile.Close()
	}
	o.metrics.close()
}

// Refused is the sandbox's callback for a refused action when there is an
// audit log: one line each. Nil without --audit-log.
func (o *Outputs) Refused(session string) func(sandbox.Refusal) {
	if o.audit == nil {
		return nil
	}
	return func(r sandbox.Refusal) {
		o.audit.Write(audit.Entry{Time: r.Time, Session: session, PID: r.PID, Comm: r.Comm, Kind: string(r.Kind),
			What: r.What, Path: r.Path, Errno: audit.ErrnoName(r.Errno), Reason: r.Reason})
	}
}

// EndAudit ends the audit log once the session is over: its last
// "dropped" line. It returns how many lines were dropped, and why the log
// could not be written, if it could not.
func (o *Outputs) EndAudit() (dropped uint64, err error) {
	if o.audit == nil {
		return 0, nil
	}
	o.audit.Close()
	return o.audit.Dropped(), o.audit.Err()
}

// openAuditLog opens the audit log for appending, through its directory and
// never through a symlink or a file with other hard links (either could
// name any host file: see hostfile.OpenAppend).
func (o *Outputs) openAuditLog(path string) error {
	switch path {
	case "":
		return nil
	case "-":
		o.audit = audit.New(o.stderr)
		return nil
	}
	dir, name, err := hostfile.OpenFileDir(path)
	if err != nil {
		return &policy.FlagError{Flag: "--audit-log", Value: path, Reason: "its directory cannot be opened: " + reason(err)}
	}
	defer dir.Close()
	f, err := dir.OpenAppend(name, 0o640)
	if err != nil {
		return &policy.FlagError{Flag: "--audit-log", Value: path, Reason: reason(err)}
	}
	o.audit, o.auditFile = audit.New(f), f
	return nil
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

// WriteReport writes r as the --report file, atomically; to stderr for
// "-". Only when --report was given.
func (o *Outputs) WriteReport(r *report.Report) error {
	b, err := report.Encode(r)
	if err != nil {
		return err
	}
	if o.reportDir == nil {
		_, err := o.stderr.Write(b)
		return err
	}
	return o.reportDir.WriteFile(o.reportName, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
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
func openMetrics(c *CLI) metricsOut {
	m := metricsOut{o: metrics.DeliverOptions{Socket: c.MetricsSocket, Textfile: c.MetricsTextfile, Spool: c.MetricsSpool}}
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

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// DeliverMetrics delivers the session's counts, if there is anywhere to:
// a *metrics.QueuedError when they wait in the spool.
func (o *Outputs) DeliverMetrics(session string, start time.Time, res sandbox.Result, failed bool, auditDropped uint64) error {
	return o.deliver(metrics.Report{Session: session, Start: start, End: time.Now(), Failed: failed,
		ExitCode: res.ExitCode, LandlockABI: res.Layers.LandlockABI, SeccompMode: res.Layers.Seccomp,
		BlockedSyscalls: res.Blocked["syscall"], BlockedCommands: res.Blocked["command"], BlockedAPICalls: res.Blocked["api"], ShimReportsMalformed: res.MalformedReports,
		BlockedWrites: res.Blocked["write"], WriteCounting: res.Layers.WriteCounting, SocketMediation: res.Layers.SocketMediation,
		AuditLinesDropped: auditDropped})
}

// DeliverLost reports session, another supervisor's that died before it
// could report (a sweep found its cgroup), to the same destination as this
// session's counts: a session with result "lost", and nothing else.
func (o *Outputs) DeliverLost(session string) error {
	now := time.Now()
	return o.deliver(metrics.Report{Session: session, Start: now, End: now, Lost: true})
}

// deliver sends r where the flags said, if anywhere.
func (o *Outputs) deliver(r metrics.Report) error {
	if !o.metrics.on {
		return nil
	}
	if o.metrics.err != nil {
		return o.metrics.err
	}
	return metrics.Deliver(r, o.metrics.o)
}

// SessionReport is the --report document of a session of p that started
// at start and ended with res, or err (whose exit code is the caller's to
// set).
func SessionReport(session string, p *policy.Policy, start time.Time, res sandbox.Result, err error) *report.Report {
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
	} else if res.Signal != 0 {
		r.Exit.Signal = unix.SignalName(res.Signal)
	}
	return r
}
