package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/audit"
	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// Run builds the sandbox and runs the command; status receives its exit code.
func (r *RunCmd) Run(cli *CLI, status *int) error {
	p, err := cli.policy(r.Command)
	if err != nil {
		return err
	}
	session := newSessionID()
	if err := checkReportPath(cli.Report); err != nil {
		return err
	}
	log, closeLog, err := openAuditLog(cli.AuditLog)
	if err != nil {
		return err
	}
	defer closeLog()

	opts := sandbox.Options{
		Warn:    func(msg string) { fmt.Fprintf(os.Stderr, "ronly: warning: %s\n", msg) },
		Session: session,
		Start:   started,
	}
	if log != nil {
		opts.Refused = func(r sandbox.Refusal) {
			log.Write(audit.Entry{Time: r.Time, Session: session, PID: r.PID, Comm: r.Comm, Kind: r.Kind,
				What: r.What, Path: r.Path, Errno: audit.ErrnoName(r.Errno), Reason: r.Reason})
		}
	}
	start := time.Now()
	res, err := sandbox.Run(p, opts)
	deliverMetrics(cli, metrics.Report{Session: session, Start: start, End: time.Now(), Failed: err != nil,
		ExitCode: res.ExitCode, LandlockABI: res.Layers.LandlockABI, SeccompMode: res.Layers.Seccomp,
		BlockedSyscalls: res.Blocked["syscall"], BlockedCommands: res.Blocked["command"], BlockedAPICalls: res.Blocked["api"], ShimReportsMalformed: res.MalformedReports,
		BlockedWrites: res.Blocked["write"], WriteCounting: res.Layers.WriteCounting, SocketMediation: res.Layers.SocketMediation})
	if p.Verbose {
		fmt.Fprintf(os.Stderr, "ronly: session %s: %s\n", session, res.Layers)
		var steps []string
		for _, m := range res.Timeline {
			steps = append(steps, fmt.Sprintf("%s %.1f", m.Step, float64(m.At)/float64(time.Millisecond)))
		}
		fmt.Fprintf(os.Stderr, "ronly: session %s: ms since start: %s\n", session, strings.Join(steps, ", "))
	}
	if res.LimitHit != "" {
		fmt.Fprintf(os.Stderr, "ronly: session killed with all its processes: %s\n", limitText(p.Limits, res.LimitHit))
	}
	if cli.Report != "" {
		if werr := report.Write(cli.Report, sessionReport(session, p, start, res, err)); werr != nil {
			fmt.Fprintf(os.Stderr, "ronly: warning: %v\n", werr)
		}
	}
	if log != nil && log.Err() != nil {
		fmt.Fprintf(os.Stderr, "ronly: warning: --audit-log %s: %v\n", cli.AuditLog, log.Err())
	}
	if err != nil {
		return err
	}
	*status = res.ExitCode
	return nil
}

// deliverMetrics delivers the session's counts. A host without an exporter, a
// spool or a textfile gets nothing, and a failure is a warning: metrics
// never fail a session.
func deliverMetrics(cli *CLI, r metrics.Report) {
	if cli.NoMetrics {
		return
	}
	o := metrics.DeliverOptions{Socket: cli.MetricsSocket, Textfile: cli.MetricsTextfile, Spool: metrics.DefaultSpool}
	if o.Textfile == "" && !exists(o.Socket) && !exists(o.Spool) {
		return
	}
	if err := metrics.Deliver(r, o); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: warning: metrics not delivered: %v\n", err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func openAuditLog(path string) (*audit.Log, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return audit.New(os.Stderr), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log %q: %w", path, err)
	}
	return audit.New(f), func() { f.Close() }, nil
}

func newSessionID() string {
	var b [8]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(b[:])
}

// checkReportPath fails before the session starts when the report could
// not be written after it: a CI job must not run only to lose its report.
func checkReportPath(path string) error {
	if path == "" || path == "-" {
		return nil
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || !fi.IsDir() {
		return &policy.FlagError{Flag: "--report", Value: path, Reason: "its directory does not exist"}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return &policy.FlagError{Flag: "--report", Value: path, Reason: "is a directory"}
	}
	return nil
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
			WriteCounting: res.Layers.WriteCounting,
			Network:       res.Layers.Network, Cgroup: res.Layers.Cgroup, AbstractSockets: res.Layers.AbstractSockets,
			SocketMediation: res.Layers.SocketMediation, DockerGuard: res.Layers.DockerGuard},
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
