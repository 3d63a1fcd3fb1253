package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"ronly.dev/ronly/go/cli"
	"ronly.dev/ronly/go/metrics"
	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// Run builds the sandbox and runs the command; status receives its exit code.
// counter is the write counter runCLI began attaching (nil when the
// command line did not ask for one): the session takes it if it counts,
// and runCLI closes it otherwise.
func (r *RunCmd) Run(c *cli.CLI, status *int, counter *sandbox.PendingCounter) error {
	p, err := c.PolicyFor(r.Command)
	if err != nil {
		return err
	}
	session := report.NewSessionID()
	out, err := c.OpenOutputs(os.Stderr)
	if err != nil {
		return err
	}
	defer out.Close()

	start := time.Now()
	res, err := sandbox.Run(p, sandbox.Options{
		Warn:    func(msg string) { fmt.Fprintf(os.Stderr, "ronly: warning: %s\n", msg) },
		Session: session,
		Start:   started,
		Refused: out.Refused(session),
		// Begun before the flags were parsed (runCLI).
		WriteCounter: counter,
	})
	auditDropped, auditErr := out.EndAudit()
	warnMetrics(out.DeliverMetrics(session, start, res, err != nil, auditDropped))
	for _, lost := range res.Swept {
		warnMetrics(out.DeliverLost(lost))
	}
	if p.Verbose {
		printLayers(session, res)
	}
	if res.LimitHit != "" {
		fmt.Fprintf(os.Stderr, "ronly: session killed with all its processes: %s\n", limitText(p.Limits, res.LimitHit))
	}
	if c.Report != "" {
		rep := cli.SessionReport(session, p, start, res, err)
		if err != nil {
			rep.Exit.Code = exitRonly
		}
		if werr := out.WriteReport(rep); werr != nil {
			fmt.Fprintf(os.Stderr, "ronly: warning: --report %s: %v\n", c.Report, werr)
		}
	}
	if auditErr != nil {
		fmt.Fprintf(os.Stderr, "ronly: warning: --audit-log %s: %v\n", c.AuditLog, auditErr)
	}
	if err != nil {
		return err
	}
	*status = res.ExitCode
	return nil
}

// warnMetrics says on stderr what became of a report that was not
// delivered at once: metrics never fail a session.
func warnMetrics(err error) {
	var queued *metrics.QueuedError
	switch {
	case errors.As(err, &queued):
		fmt.Fprintf(os.Stderr, "ronly: warning: metrics queued: %v\n", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "ronly: warning: metrics not delivered: %v\n", err)
	}
}

// printLayers says what --verbose asks: the layers the session had, its
// steps' times and the credentials it hid.
func printLayers(session string, res sandbox.Result) {
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
