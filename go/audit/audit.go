// Package audit writes one JSON line per refused action, for jq and log
// shippers: what was refused, to whom, and why.
package audit

import (
	"encoding/json"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one refused action.
type Entry struct {
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	PID     int       `json:"pid,omitempty"`
	Comm    string    `json:"comm,omitempty"`
	Kind    string    `json:"kind"`            // syscall, command, api, write
	What    string    `json:"what"`            // syscall name, "docker run", "POST /containers/{id}/kill", write operation
	Path    string    `json:"path,omitempty"`  // a refused write's path as the process gave it (relative: to its cwd or dirfd), where known
	Errno   string    `json:"errno,omitempty"` // EPERM, EROFS…
	Reason  string    `json:"reason,omitempty"`
}

// Log writes entries as JSON lines. Safe for concurrent use; a failed
// write is remembered, not retried, so a full disk cannot stall a session.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// New returns a Log writing to w.
func New(w io.Writer) *Log { return &Log{w: w} }

// Write appends one entry.
func (l *Log) Write(e Entry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		_, l.err = l.w.Write(b)
	}
}

// Err is the first write error, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// ErrnoName is the symbolic name of an errno (EPERM), or its number.
func ErrnoName(e syscall.Errno) string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}
