package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"ronly.dev/ronly/go/audit"
	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/sandbox"
)

// Run builds the sandbox and runs the command; status receives its exit code.
func (r *RunCmd) Run(cli *CLI, status *int) error {
	p, err := cli.policy(r.Command)
	if err != nil {
		return err
	}
	session := newSessionID()
	log, closeLog, err := openAuditLog(cli.AuditLog)
	if err != nil {
		return err
	}
	defer closeLog()

	opts := sandbox.Options{
		Warn: func(msg string) { fmt.Fprintf(os.Stderr, "ronly: warning: %s\n", msg) },
	}
	if log != nil {
		opts.Refused = func(r sandbox.Refusal) {
			log.Write(audit.Entry{Time: r.Time, Session: session, PID: r.PID, Comm: r.Comm, Kind: r.Kind,
				What: r.What, Errno: audit.ErrnoName(r.Errno), Reason: r.Reason})
		}
	}
	start := time.Now()
	res, err := sandbox.Run(p, opts)
	report(cli, metrics.Report{Session: session, Start: start, End: time.Now(), Failed: err != nil,
		ExitCode: res.ExitCode, LandlockABI: res.Layers.LandlockABI, SeccompMode: res.Layers.Seccomp,
		BlockedSyscalls: res.Blocked["syscall"], BlockedCommands: res.Blocked["command"], BlockedAPICalls: res.Blocked["api"]})
	if p.Verbose {
		fmt.Fprintf(os.Stderr, "ronly: session %s: %s\n", session, res.Layers)
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

// report delivers the session's counts. A host without an exporter, a
// spool or a textfile gets nothing, and a failure is a warning: metrics
// never fail a session.
func report(cli *CLI, r metrics.Report) {
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
