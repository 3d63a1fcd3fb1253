package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/hostfile"
)

// MergeTextfile adds r to the counters in the node_exporter textfile at
// path and rewrites it atomically (a temporary file from the same
// directory renamed over it), so the collector never sees half a file.
//
// Sessions ending at once combine their merges instead of queueing for
// the file one by one: each first leaves its report beside the textfile
// (.NAME.q.SESSION.json, a name the collector does not read), then waits
// for the directory's flock. Whoever holds it merges every report waiting
// there in one rewrite, so a waiter usually finds its report merged
// before its turn comes and leaves without taking the lock. (Merging one
// report per lock turn did not keep up: 50 sessions ending at once on 2
// loaded CPUs left some waiting past their deadline.) A report still
// waiting at the deadline is not lost: the next session to merge adds it,
// and the error says so (QueuedError).
//
// Each report is counted once even if a merger dies between its rename
// and removing the reports it merged: the textfile names the reports of
// its last merge, and the next merger removes those without adding them.
//
// The file belongs to ronly: lines that are not ronly_ samples are dropped.
// Every session that merges needs write access to the directory.
func MergeTextfile(path string, r Report, deadline time.Time) error {
	dir, name, err := hostfile.OpenFileDir(path)
	if err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	defer dir.Close()
	return mergeTextfileIn(dir, name, r, deadline)
}

// QueuedError says a report waits beside the textfile, because the lock
// was not free before the deadline: the next session to merge adds it.
type QueuedError struct {
	Name string // the waiting report, in the textfile's directory
	Err  error  // why it was not merged
}

func (e *QueuedError) Error() string {
	return fmt.Sprintf("report left in %s for the next session to merge: %v", e.Name, e.Err)
}

func (e *QueuedError) Unwrap() error { return e.Err }

// mergedLine starts the textfile's comment naming its last merge's reports.
const mergedLine = "# ronly merged "

// maxMerge bounds the reports one merge reads, so that one merge cannot
// run long past its deadline; the rest wait for the next.
const maxMerge = 256

// queuedName is the name of session's report waiting beside textfile name.
func queuedName(name, session string) string { return "." + name + ".q." + spoolName(session) }

func isQueued(name, entry string) bool {
	return strings.HasPrefix(entry, "."+name+".q.") && strings.HasSuffix(entry, spoolExt)
}

// mergeTextfileIn is MergeTextfile of the file name in dir, a directory
// held open (hostfile): nothing is read or written through a symlink.
func mergeTextfileIn(dir *hostfile.Dir, name string, r Report, deadline time.Time) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("metrics report: %w", err)
	}
	if len(data) > MaxReportBytes {
		return fmt.Errorf("metrics report of session %q is %d bytes, more than %d", r.Session, len(data), MaxReportBytes)
	}
	q := queuedName(name, r.Session)
	if err := queue(dir, name, q, data); err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	merged := func() bool { return !dir.Has(q) }
	lock, err := lockFile(dir, deadline, merged)
	if err != nil {
		return &QueuedError{Name: filepath.Join(dir.Path(), q), Err: err}
	}
	if lock == nil {
		return nil // merged by the session that held the lock
	}
	defer lock.Close() // closing the only descriptor releases the flock
	if merged() {
		return nil
	}
	return mergeQueued(dir, name)
}

// queue leaves a report beside the textfile, unless DefaultSpoolMaxFiles
// reports already wait there (say, sessions of a user who can write the
// directory but whose merges always fail).
func queue(dir *hostfile.Dir, name, q string, data []byte) error {
	entries, err := dir.Entries()
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if isQueued(name, e.Name) {
			n++
		}
	}
	if n >= DefaultSpoolMaxFiles {
		return fmt.Errorf("%d reports already wait beside %s: report dropped", n, name)
	}
	return dir.WriteFile(q, 0o600, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// mergeQueued adds every report waiting beside the textfile to it, in one
// rewrite, then removes them. The caller holds the lock.
func mergeQueued(dir *hostfile.Dir, name string) error {
	s := NewSet()
	last := map[string]bool{}
	switch text, err := dir.ReadFile(name); {
	case err == nil:
		for _, line := range strings.Split(string(text), "\n") {
			if rest, ok := strings.CutPrefix(line, mergedLine); ok {
				for _, n := range strings.Fields(rest) {
					last[n] = true
				}
			}
		}
		if err := s.readText(bytes.NewReader(text)); err != nil {
			return fmt.Errorf("textfile %s: %w", filepath.Join(dir.Path(), name), err)
		}
	case errors.Is(err, hostfile.ErrNotPlain):
		// Not ronly's file (a symlink planted there): start afresh
		// and replace it.
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("textfile: %w", err)
	}
	entries, err := dir.Entries()
	if err != nil {
		return err
	}
	var batch []string
	for _, e := range entries {
		switch {
		case !isQueued(name, e.Name):
		case last[e.Name]:
			dir.Remove(e.Name) // in the file already: its merger died before removing it
		case len(batch) < maxMerge:
			if r, ok := readQueued(dir, e); ok {
				s.Add(r)
			}
			batch = append(batch, e.Name)
		}
	}
	err = dir.WriteFile(name, 0o644, func(w io.Writer) error {
		if err := s.WriteText(w); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%s%s\n", mergedLine, strings.Join(batch, " "))
		return err
	})
	if err != nil {
		return err
	}
	for _, n := range batch {
		dir.Remove(n)
	}
	return nil
}

// readQueued is a waiting report; one that is too large or not a report
// is merged as nothing (and removed with the others).
func readQueued(dir *hostfile.Dir, e hostfile.Entry) (Report, bool) {
	var r Report
	if e.Size > MaxReportBytes {
		return r, false
	}
	data, err := dir.ReadFile(e.Name)
	if err != nil || len(data) > MaxReportBytes || json.Unmarshal(data, &r) != nil {
		return r, false
	}
	return r, true
}

// lockFile takes an exclusive flock on dir itself (hostfile.Dir.LockFile),
// waiting at most until deadline. The wait is a blocking flock, so that
// the kernel hands the lock from one session to the next as soon as it is
// free: polling with LOCK_NB starved the holder when 50 sessions ended at
// once on 2 CPUs. When the deadline passes first, the waiting flock is
// abandoned: if it succeeds later it lets go at once. done, when not nil,
// is asked every few milliseconds whether the lock is still needed: when
// it says no, lockFile gives up waiting and returns nil, nil.
func lockFile(dir *hostfile.Dir, deadline time.Time, done func() bool) (*os.File, error) {
	f, err := dir.LockFile()
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	const (
		waiting int32 = iota
		taken
		abandoned
	)
	var state atomic.Int32
	got := make(chan error, 1)
	go func() {
		var err error
		for {
			if err = unix.Flock(int(f.Fd()), unix.LOCK_EX); err != unix.EINTR {
				break
			}
		}
		if !state.CompareAndSwap(waiting, taken) {
			f.Close() // abandoned: closing releases the lock, if taken
			return
		}
		got <- err
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var poll <-chan time.Time
	if done != nil {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case err := <-got:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("flock(%s): %w", f.Name(), err)
			}
			return f, nil
		case <-poll:
			if !done() {
				continue
			}
			if state.CompareAndSwap(waiting, abandoned) {
				return nil, nil
			}
			// Taken just now: let go at once.
			<-got
			f.Close()
			return nil, nil
		case <-timer.C:
			if state.CompareAndSwap(waiting, abandoned) {
				return nil, fmt.Errorf("flock(%s): still held by another session at the deadline", f.Name())
			}
			// Taken just as the deadline passed: use it.
			if err := <-got; err != nil {
				f.Close()
				return nil, fmt.Errorf("flock(%s): %w", f.Name(), err)
			}
			return f, nil
		}
	}
}

// readText adds the ronly_ samples of a text exposition, as WriteText
// writes it, to s: counters and the histogram add, gauges are replaced.
// Lines that are not ronly_ samples are skipped (HELP and TYPE too: the
// metric set knows its own); samples of metrics this version does not know
// are ignored, and so are histogram buckets with bounds it does not have
// (the count is the +Inf bucket's). Label values go through the same cap as
// a report's. A ronly_ line that is not a sample is an error naming it.
func (s *Set) readText(r io.Reader) error {
	byName := make(map[string]*family, len(families))
	for _, f := range families {
		byName[f.name] = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if !strings.HasPrefix(text, "ronly_") {
			continue
		}
		name, labels, v, err := parseSample(text)
		if err != nil {
			return fmt.Errorf("text format parsing error in line %d: %w", line, err)
		}
		if math.IsNaN(v) || v < 0 {
			continue
		}
		switch name {
		case sessionDuration.name + "_bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if i := bucketIndex(le); err == nil && i >= 0 {
				s.durBuckets[i] += toCount(v)
				s.durPresent = true
			}
			continue
		case sessionDuration.name + "_sum":
			s.durSum += v
			s.durPresent = true
			continue
		}
		f := byName[name]
		switch {
		case f == nil || f.kind == histogram:
		case f.kind == gauge:
			s.gauges[f] = v
		default:
			values := make([]string, len(f.labels))
			for i, l := range f.labels {
				values[i] = labels[l]
			}
			s.add(f, toCount(v), values...)
		}
	}
	return sc.Err()
}

// parseSample parses one sample line of the text format:
// name{label="value",...} value [timestamp].
func parseSample(line string) (name string, labels map[string]string, value float64, err error) {
	i := 0
	for i < len(line) && isNameByte(line[i], i > 0) {
		i++
	}
	name, labels = line[:i], map[string]string{}
	if i < len(line) && line[i] == '{' {
		i++
		for {
			i = skipSpace(line, i)
			if i < len(line) && line[i] == '}' {
				i++
				break
			}
			j := i
			for j < len(line) && isNameByte(line[j], j > i) && line[j] != ':' {
				j++
			}
			if j == i || j+1 >= len(line) || line[j] != '=' || line[j+1] != '"' {
				return "", nil, 0, fmt.Errorf("malformed label in %q", line)
			}
			label := line[i:j]
			var b strings.Builder
			for j += 2; ; j++ {
				if j >= len(line) {
					return "", nil, 0, fmt.Errorf("label value of %s not closed in %q", label, line)
				}
				c := line[j]
				if c == '"' {
					break
				}
				if c == '\\' && j+1 < len(line) {
					j++
					switch line[j] {
					case 'n':
						c = '\n'
					case '\\', '"':
						c = line[j]
					default:
						return "", nil, 0, fmt.Errorf("bad escape in label value of %s in %q", label, line)
					}
				}
				b.WriteByte(c)
			}
			labels[label] = b.String()
			i = skipSpace(line, j+1)
			if i < len(line) && line[i] == ',' {
				i++
			}
		}
	}
	fields := strings.Fields(line[i:])
	if len(fields) < 1 || len(fields) > 2 || i == 0 || (i < len(line) && line[i] != ' ' && line[i] != '\t') {
		return "", nil, 0, fmt.Errorf("not a sample: %q", line)
	}
	if value, err = strconv.ParseFloat(fields[0], 64); err != nil {
		return "", nil, 0, fmt.Errorf("value of %q: %w", line, err)
	}
	return name, labels, value, nil
}

// isNameByte: [a-zA-Z_:], and digits after the first byte.
func isNameByte(c byte, notFirst bool) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (notFirst && c >= '0' && c <= '9')
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func toCount(v float64) uint64 {
	if v >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(math.Round(v))
}

// bucketIndex is the index in durBuckets of an upper bound, or -1 for a
// bound this version does not have.
func bucketIndex(le float64) int {
	if math.IsInf(le, +1) {
		return len(durationBuckets)
	}
	for i, b := range durationBuckets {
		if b == le {
			return i
		}
	}
	return -1
}
