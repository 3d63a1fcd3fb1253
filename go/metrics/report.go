// Package metrics turns what sessions refused into Prometheus metrics that
// add up across the many short sessions of a host: a session delivers one
// Report when it ends, to the host's exporter over a unix socket, or into a
// node_exporter textfile, or (exporter down) into a spool the exporter
// ingests later. A session never fails or blocks because of metrics.
package metrics

import (
	"errors"
	"fmt"
	"time"
)

// Report is what one session tells the host, once, when it ends.
type Report struct {
	Session     string    `json:"session"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Failed      bool      `json:"failed"` // ronly could not build the sandbox
	ExitCode    int       `json:"exit_code"`
	LandlockABI int       `json:"landlock_abi"`
	SeccompMode string    `json:"seccomp_mode"` // "notify" (counted) or "errno" (not counted)
	// Lost says that the session's supervisor died before it could report
	// (SIGKILL, the OOM killer): a sweep of dead sessions' cgroups
	// (go/cgroup.Sweep) found it. Its counts died with the supervisor; the
	// report has none, and Start is when it was found, as End is.
	Lost bool `json:"lost,omitempty"`
	// WriteCounting says whether refused writes were counted.
	WriteCounting bool `json:"write_counting,omitempty"`
	// SocketMediation says whether the supervisor decided the session's
	// connects and sends to addresses (host unix sockets refused).
	SocketMediation bool `json:"socket_mediation,omitempty"`
	// Counts of refused actions. Keys are bounded label values, never paths
	// or pids: a syscall name; an operation (unlink, rename, open-write…);
	// "tool subcommand" with unknown subcommands as "other"; "METHOD route"
	// (the Docker guard) or "kubernetes verb resource" (the Kubernetes guard).
	BlockedSyscalls map[string]uint64 `json:"blocked_syscalls,omitempty"`
	BlockedWrites   map[string]uint64 `json:"blocked_writes,omitempty"`
	BlockedCommands map[string]uint64 `json:"blocked_commands,omitempty"`
	BlockedAPICalls map[string]uint64 `json:"blocked_api_calls,omitempty"`
	// ShimReportsMalformed counts the lines the session dropped from its
	// shims' report pipe (go/sandbox reports.go).
	ShimReportsMalformed uint64 `json:"shim_reports_malformed,omitempty"`
	// AuditLinesDropped is how many audit lines the session's rate limit
	// left out of --audit-log (go/audit.DefaultLimit).
	AuditLinesDropped uint64 `json:"audit_lines_dropped,omitempty"`
}

// The values of Report.SeccompMode.
const (
	SeccompNotify = "notify" // a seccomp listener counted each refused syscall
	SeccompErrno  = "errno"  // the filter returned errno alone: nothing counted
)

// Duration is how long the session ran; zero if End is not after Start.
func (r Report) Duration() time.Duration {
	if d := r.End.Sub(r.Start); d > 0 {
		return d
	}
	return 0
}

// maxSessionLen bounds Report.Session, which also names the spool file.
const maxSessionLen = 128

// Validate says whether the exporter should count r. It is lenient about
// what a newer ronly may add (unknown JSON fields are ignored) and strict
// about what would make the counts meaningless.
func (r Report) Validate() error {
	switch {
	case r.Session == "":
		return errors.New("report has no session id")
	case len(r.Session) > maxSessionLen:
		return fmt.Errorf("session id is %d bytes, more than %d", len(r.Session), maxSessionLen)
	case r.Start.IsZero() || r.End.IsZero():
		return fmt.Errorf("session %q: report lacks its start or end time", r.Session)
	case r.End.Before(r.Start):
		return fmt.Errorf("session %q: ends (%s) before it starts (%s)", r.Session, r.End, r.Start)
	case r.LandlockABI < 0 || r.LandlockABI > 1000:
		return fmt.Errorf("session %q: Landlock ABI %d is out of range", r.Session, r.LandlockABI)
	}
	switch r.SeccompMode {
	case "", SeccompNotify, SeccompErrno:
	default:
		return fmt.Errorf("session %q: unknown seccomp mode %q", r.Session, r.SeccompMode)
	}
	return nil
}
