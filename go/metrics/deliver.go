package metrics

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"ronly.dev/ronly/go/hostfile"
	"ronly.dev/ronly/go/report"
)

const (
	// DefaultSocket is where the host's exporter receives reports.
	DefaultSocket = "/run/ronly/exporter.sock"
	// DefaultSpool is where reports wait while the exporter is down.
	DefaultSpool = "/var/lib/ronly/spool"
	// DefaultTimeout bounds how long Deliver may hold up a session.
	DefaultTimeout = 200 * time.Millisecond
	// MaxReportBytes bounds one report on the wire and in the spool.
	MaxReportBytes = 256 << 10
)

// DeliverOptions says where a session's report goes. Zero fields take the
// defaults.
type DeliverOptions struct {
	Socket   string        // the exporter's unix socket (DefaultSocket)
	Textfile string        // a node_exporter textfile to merge into instead
	Spool    string        // where the report waits if the exporter is down (DefaultSpool)
	Timeout  time.Duration // the longest Deliver may take (DefaultTimeout)

	// TextfileDir and SpoolDir, when set, are Textfile's directory and
	// Spool, opened when the session started (the spool, which may not
	// exist yet, is created below its ancestor opened then), so that
	// nothing a session does to the paths meanwhile redirects the write.
	// Nil: opened from the paths when delivering.
	TextfileDir *hostfile.Dir
	SpoolDir    *hostfile.PendingDir
	// SocketDir, when set, is Socket's directory, opened when the session
	// started: the socket is connected to through a descriptor of it, so
	// a symlink planted at its name is not followed to another socket.
	SocketDir *hostfile.Dir

	SpoolMaxFiles int   // at most this many reports wait in the spool (DefaultSpoolMaxFiles)
	SpoolMaxBytes int64 // and at most this many bytes (DefaultSpoolMaxBytes)
}

func (o DeliverOptions) withDefaults() DeliverOptions {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.Spool == "" {
		o.Spool = DefaultSpool
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.SpoolMaxFiles <= 0 {
		o.SpoolMaxFiles = DefaultSpoolMaxFiles
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	return o
}

// RejectedError is the exporter's answer to a report it would not count.
// Spooling such a report would only have it refused again.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "exporter rejected the report: " + e.Reason }

// Deliver hands a session's report to the host, within o.Timeout and without
// ever failing the session: an error is only for the caller to warn about.
//
// With o.Textfile set, the report is merged into that node_exporter
// textfile and goes nowhere else (the host scrapes one or the other;
// feeding both would count every session twice). Otherwise it goes to the
// exporter over o.Socket: one JSON line per connection, answered "ok". If
// the exporter cannot be reached or does not answer in time, the report is
// written into the spool, which the exporter ingests when it is back; the
// exporter drops a report it already counted, so a late answer does not
// count a session twice. A report without a session id gets a random one.
func Deliver(r Report, o DeliverOptions) error {
	o = o.withDefaults()
	start := time.Now()
	deadline := start.Add(o.Timeout)
	if r.Session == "" {
		r.Session = report.NewSessionID()
	}
	if o.Textfile != "" {
		if o.TextfileDir == nil {
			return MergeTextfile(o.Textfile, r, deadline)
		}
		return mergeTextfileIn(o.TextfileDir, filepath.Base(o.Textfile), r, deadline)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("metrics report: %w", err)
	}
	data = append(data, '\n')
	if len(data) > MaxReportBytes {
		return fmt.Errorf("metrics report of session %q is %d bytes, more than %d", r.Session, len(data), MaxReportBytes)
	}
	// The exporter gets three quarters of the budget; the rest is kept for
	// the spool, a local write.
	sendErr := sendTo(o, data, start.Add(o.Timeout*3/4))
	if sendErr == nil {
		return nil
	}
	var rejected *RejectedError
	if errors.As(sendErr, &rejected) {
		return sendErr
	}
	var spool *hostfile.Dir
	if o.SpoolDir != nil {
		spool, err = o.SpoolDir.Create(0o700)
	} else {
		spool, err = openSpool(o.Spool)
	}
	if err != nil {
		return fmt.Errorf("exporter unreachable (%v), and the spool failed: %w", sendErr, err)
	}
	defer spool.Close()
	if err := spoolWrite(spool, o, r.Session, data, deadline); err != nil {
		return fmt.Errorf("exporter unreachable (%v), and the spool failed: %w", sendErr, err)
	}
	return nil
}

// sendTo sends the report to o's socket, through o.SocketDir when set.
func sendTo(o DeliverOptions, data []byte, deadline time.Time) error {
	if o.SocketDir == nil {
		return send(o.Socket, data, deadline)
	}
	f, path, err := o.SocketDir.Socket(filepath.Base(o.Socket))
	if err != nil {
		return err
	}
	defer f.Close()
	return send(path, data, deadline)
}

// send writes one report line to the exporter and waits for its answer.
func send(socket string, data []byte, deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.Write(data); err != nil {
		return err
	}
	answer, err := bufio.NewReaderSize(c, 512).ReadString('\n')
	if err != nil {
		return fmt.Errorf("exporter's answer: %w", err)
	}
	answer = strings.TrimSuffix(answer, "\n")
	switch {
	case answer == ackOK:
		return nil
	case strings.HasPrefix(answer, ackError):
		return &RejectedError{Reason: strings.TrimPrefix(answer, ackError)}
	}
	return fmt.Errorf("exporter's answer %q is not %q", answer, ackOK)
}

// The exporter's answers, one line each.
const (
	ackOK    = "ok"
	ackError = "error: "
)
