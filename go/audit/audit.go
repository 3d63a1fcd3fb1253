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

// dropped is the line that stands for the entries the rate limit left out
// since the previous such line: {"kind":"dropped","count":N}.
type dropped struct {
	Time    time.Time `json:"time"`
	Session string    `json:"session"`
	Kind    string    `json:"kind"` // "dropped"
	Count   uint64    `json:"count"`
}

// Limit bounds the lines of one Log: a token bucket that refills at Rate
// lines a second and holds at most Burst. An entry that finds the bucket
// empty is dropped and counted, and a "dropped" line with the count is
// written once a second while entries are being dropped, and at Close. So
// over a session of T seconds a Log writes at most Burst + Rate×T entries
// plus T+1 dropped lines, however fast the sandbox provokes refusals.
type Limit struct {
	Rate  float64 // lines per second
	Burst int
}

// DefaultLimit is what New uses: 50 lines a second with bursts of 500. A
// line is about 250 bytes, so a session that refuses in a loop adds at
// most about 12 kB a second to the log (it was 10 MB/s unbounded). People
// read the log; the metrics count every refusal, dropped lines included.
var DefaultLimit = Limit{Rate: 50, Burst: 500}

// summaryEvery is how often a dropped line is written while dropping.
const summaryEvery = time.Second

// Log writes entries as JSON lines, rate-limited. Safe for concurrent use;
// a failed write is remembered, not retried, so a full disk cannot stall a
// session.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	err error

	limit   Limit
	now     func() time.Time
	every   time.Duration
	tokens  float64
	last    time.Time   // when tokens was last refilled
	session string      // of the entries, for the dropped lines
	pending uint64      // dropped since the last dropped line
	total   uint64      // dropped in all
	timer   *time.Timer // writes the next dropped line; nil when none is due
	closed  bool
}

// New returns a Log writing to w under DefaultLimit.
func New(w io.Writer) *Log { return NewLimited(w, DefaultLimit) }

// NewLimited returns a Log writing to w under l.
func NewLimited(w io.Writer, l Limit) *Log {
	return &Log{w: w, limit: l, now: time.Now, every: summaryEvery, tokens: float64(l.Burst)}
}

// Write appends one entry, or counts it as dropped when the rate limit
// says so.
func (l *Log) Write(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.session == "" {
		l.session = e.Session
	}
	if !l.take() {
		l.pending++
		l.total++
		if l.timer == nil && !l.closed {
			l.timer = time.AfterFunc(l.every, l.summarize)
		}
		return
	}
	// Marshalled under the lock: a dropped entry costs no marshalling,
	// and a written one is cheap next to the refusal that caused it.
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	l.write(append(b, '\n'))
}

// take takes a token from the bucket, refilling it for the time passed;
// false when it is empty.
func (l *Log) take() bool {
	now := l.now()
	if !l.last.IsZero() {
		if d := now.Sub(l.last); d > 0 {
			l.tokens += d.Seconds() * l.limit.Rate
			if max := float64(l.limit.Burst); l.tokens > max {
				l.tokens = max
			}
		}
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// summarize writes the dropped line that is due.
func (l *Log) summarize() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if !l.closed { // Close wrote the last one; the writer may be closed now
		l.flushDropped()
	}
}

// flushDropped writes a dropped line for the entries dropped since the
// last one, if any. The caller holds mu.
func (l *Log) flushDropped() {
	if l.pending == 0 {
		return
	}
	b, err := json.Marshal(dropped{Time: l.now(), Session: l.session, Kind: "dropped", Count: l.pending})
	if err != nil {
		return
	}
	l.pending = 0
	l.write(append(b, '\n'))
}

func (l *Log) write(b []byte) {
	if l.err == nil {
		_, l.err = l.w.Write(b)
	}
}

// Close writes the last dropped line, if entries were dropped since the
// previous one, and stops writing them. Later entries are still limited
// and counted. It does not close the writer.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.flushDropped()
}

// Dropped is how many entries the rate limit has left out so far.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
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
