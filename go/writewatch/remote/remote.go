// Package remote runs the write counter (go/writewatch) in its own process,
// the ronly-writewatch binary, and talks to it over a pipe.
//
// The session binary does not link go/writewatch: its eBPF library
// (github.com/cilium/ebpf) costs every ronly start 0.5-0.9 ms of package
// init, and counting refused writes is opt-in (--count-writes). This
// package links nothing of it; only a session that counts pays for the
// second binary's start, and that start overlaps the session's.
//
// The conversation, one line each way at a time:
//
//	ronly-writewatch [--events]         (--events: programs of its own, with events; else the shared set)
//	  <- {"ready":"fexit"}              attached (or {"error":"..."} and exit 1)
//	  -> add <cgroup id>
//	  <- {"added":true}                 (or {"error":"..."})
//	  <- {"event":{...}} ...            refused calls, with --events only
//	  -> EOF on its stdin               the session is over
//	  <- {"counts":{...},"final":true}  (with "error" when Remove failed), then it detaches and exits
//
// Its stdin's EOF is also how it learns that ronly died: it then removes
// the cgroup and exits, so no helper outlives its session.
package remote

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Binary is the helper's file name, looked up next to the running
// executable, then on PATH.
const Binary = "ronly-writewatch"

// Event is one refused call, as writewatch.Event.
type Event struct {
	CgroupID uint64    `json:"cgroup_id"`
	PID      int       `json:"pid"`
	Comm     string    `json:"comm"`
	Syscall  string    `json:"syscall"`
	Path     string    `json:"path"`
	Time     time.Time `json:"time"`
}

// Msg is one line the helper writes: one of Ready, Added, Event, Final
// (with Counts, and Error when Remove failed), or Error alone.
type Msg struct {
	Ready  string            `json:"ready,omitempty"`
	Added  bool              `json:"added,omitempty"`
	Event  *Event            `json:"event,omitempty"`
	Counts map[string]uint64 `json:"counts,omitempty"`
	Final  bool              `json:"final,omitempty"` // the counts line (Counts may be empty)
	Error  string            `json:"error,omitempty"`
}

// waitExit bounds how long Close waits for the helper to detach and exit
// after its stdin closed, before killing it.
const waitExit = 10 * time.Second

// Watch is a running helper with its programs attached.
type Watch struct {
	proc   *os.Process
	copied chan struct{} // closed once its stderr is all read
	stdin  io.WriteCloser
	hook   string
	stderr *bytes.Buffer

	replies chan Msg   // every line but events, in order
	readErr error      // why the reader stopped (set before replies closes)
	mu      sync.Mutex // handler
	handler func(Event)

	waitOnce  sync.Once
	waitErr   error
	closeOnce sync.Once
}

// Find returns the helper's path: beside the running executable, else on
// PATH.
func Find() (string, error) {
	self, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(self), Binary)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, lerr := exec.LookPath(Binary)
	if lerr != nil {
		return "", fmt.Errorf("%s is neither beside %s nor on PATH (--count-writes needs it installed with ronly)", Binary, self)
	}
	return p, nil
}

// Start runs the helper and waits until its programs are attached. events
// asks for programs of its own that report each refusal (Events); without,
// it joins the set every counting session on the host shares.
func Start(events bool) (*Watch, error) {
	bin, err := Find()
	if err != nil {
		return nil, err
	}
	var args []string
	if events {
		args = append(args, "--events")
	}
	// Three pipes, as the C side's early start makes them (Adopt): ours
	// are the ends of its stdin, stdout and stderr that Adopt takes.
	var ours, theirs [3]*os.File
	defer func() {
		for _, f := range theirs {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range ours {
		r, w, err := os.Pipe()
		if err != nil {
			for _, f := range ours[:i] {
				f.Close()
			}
			return nil, fmt.Errorf("%s: %w", Binary, err)
		}
		ours[i], theirs[i] = r, w
		if i == 0 { // we write its stdin
			ours[i], theirs[i] = w, r
		}
	}
	proc, err := os.StartProcess(bin, append([]string{bin}, args...), &os.ProcAttr{
		Files: theirs[:],
		// Its own process group: a ^C at the terminal is for the
		// sandboxed command, and the counts must still be collected
		// after it.
		Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return adopt(proc, ours[0], ours[1], ours[2])
}

// Adopt takes a helper this process started before its Go runtime did
// (cinit.EarlyCounter): a child in a process group of its own, as Start
// makes it, on pipes whose ends here are stdin, stdout and stderr, which
// Adopt takes over. It waits, as Start does, until the programs are
// attached.
func Adopt(pid int, stdin, stdout, stderr *os.File) (*Watch, error) {
	proc, err := os.FindProcess(pid)
	if err != nil {
		stdin.Close()
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("%s: %w", Binary, err)
	}
	return adopt(proc, stdin, stdout, stderr)
}

// adopt reads the helper's stdout and keeps the start of its stderr, and
// waits for its ready line.
func adopt(proc *os.Process, stdin, stdout, stderr *os.File) (*Watch, error) {
	w := &Watch{replies: make(chan Msg, 4), stderr: &bytes.Buffer{}, proc: proc, stdin: stdin, copied: make(chan struct{})}
	go func() {
		defer close(w.copied)
		io.Copy(&limitedBuffer{b: w.stderr, max: 4096}, stderr)
		stderr.Close()
	}()
	go func() {
		w.read(stdout)
		stdout.Close()
	}()
	return w.ready()
}

// ready waits for the helper's first line: its programs attached.
func (w *Watch) ready() (*Watch, error) {
	m, err := w.reply()
	if err == nil && m.Ready == "" {
		err = fmt.Errorf("%s: expected ready, got %+v", Binary, m)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	w.hook = m.Ready
	return w, nil
}

// read hands events to the handler and queues every other line.
func (w *Watch) read(r io.Reader) {
	defer close(w.replies)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m Msg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			w.readErr = fmt.Errorf("%s: bad line %q: %w", Binary, sc.Bytes(), err)
			return
		}
		if m.Event != nil {
			w.mu.Lock()
			if w.handler != nil {
				w.handler(*m.Event)
			}
			w.mu.Unlock()
			continue
		}
		w.replies <- m
	}
	w.readErr = sc.Err()
}

// reply is the helper's next line other than an event; its error line as
// an error, or why it said nothing (it died: with what it wrote on
// stderr).
func (w *Watch) reply() (Msg, error) {
	m, ok := <-w.replies
	if !ok {
		// The reader is done: Wait may close the pipes now, and once it
		// returns, stderr is all copied.
		werr := w.wait()
		err := w.readErr
		if err == nil {
			err = errors.New("exited without answering")
			if werr != nil {
				err = fmt.Errorf("exited without answering: %w", werr)
			}
		}
		if s := bytes.TrimSpace(w.stderr.Bytes()); len(s) > 0 {
			return m, fmt.Errorf("%s: %v: %s", Binary, err, s)
		}
		return m, fmt.Errorf("%s: %w", Binary, err)
	}
	if m.Error != "" && !m.Final {
		return m, errors.New(m.Error)
	}
	return m, nil
}

// Hook says what the programs are attached to: "fexit" or "tracepoint".
func (w *Watch) Hook() string { return w.hook }

// Pid is the helper's process id: the supervisor's child until Close
// has reaped it, so it names no other process before then.
func (w *Watch) Pid() int { return w.proc.Pid }

// Add counts refusals in the cgroup with this id (and those below it).
func (w *Watch) Add(cgroupID uint64) error {
	if _, err := fmt.Fprintf(w.stdin, "add %d\n", cgroupID); err != nil {
		return fmt.Errorf("%s: %w", Binary, err)
	}
	m, err := w.reply()
	if err == nil && !m.Added {
		err = fmt.Errorf("%s: expected added, got %+v", Binary, m)
	}
	return err
}

// Events sets the function each refusal is handed to (from another
// goroutine, one at a time); the helper must have been started with
// events.
func (w *Watch) Events(fn func(Event)) {
	w.mu.Lock()
	w.handler = fn
	w.mu.Unlock()
}

// Remove ends the session: the helper delivers the events still pending,
// then the counts by syscall name of the cgroup Add gave it, and detaches.
// The Watch takes no more calls but Close.
func (w *Watch) Remove() (map[string]uint64, error) {
	w.stdin.Close()
	m, err := w.reply()
	if err != nil {
		return nil, err
	}
	if !m.Final {
		return nil, fmt.Errorf("%s: expected counts, got %+v", Binary, m)
	}
	if m.Error != "" {
		return m.Counts, errors.New(m.Error)
	}
	return m.Counts, nil
}

// Close ends the helper (it detaches on its stdin's EOF) and waits for it,
// killing it if it takes longer than waitExit.
func (w *Watch) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.stdin.Close()
		// Read what is left (a helper writing its counts must not block on
		// a full pipe) until it closes its end by exiting; only then may
		// Wait close ours.
		done := make(chan error, 1)
		go func() {
			for range w.replies {
			}
			done <- w.wait()
		}()
		select {
		case err = <-done:
		case <-time.After(waitExit):
			w.proc.Kill()
			<-done
			err = fmt.Errorf("%s did not exit within %v after its stdin closed; killed", Binary, waitExit)
		}
	})
	return err
}

// wait reaps the helper, once.
func (w *Watch) wait() error {
	w.waitOnce.Do(func() {
		st, err := w.proc.Wait()
		<-w.copied // its stderr ends with it
		switch {
		case err != nil:
			w.waitErr = err
		case !st.Success():
			w.waitErr = errors.New(st.String())
		}
	})
	return w.waitErr
}

// limitedBuffer keeps the first max bytes of the helper's stderr, for the
// error when it dies.
type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b.Write(p[:room])
	}
	return len(p), nil
}
