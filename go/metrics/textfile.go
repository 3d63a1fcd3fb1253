package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MergeTextfile adds r to the counters in the node_exporter textfile at
// path and rewrites it atomically: concurrent sessions serialise on an
// flock of path+".lock", read the file's ronly_ samples, add their own and
// rename a temporary file from the same directory over it, so the collector
// never sees half a file and no session's counts are lost. It gives up at
// deadline rather than block the session.
//
// The file belongs to ronly: lines that are not ronly_ samples are dropped.
// Every session that merges needs write access to the directory.
func MergeTextfile(path string, r Report, deadline time.Time) error {
	lock, err := lockFile(path+".lock", deadline)
	if err != nil {
		return err
	}
	defer lock.Close() // closing the only descriptor releases the flock

	s := NewSet()
	switch f, err := os.Open(path); {
	case err == nil:
		err = s.readText(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("textfile %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("textfile: %w", err)
	}
	s.Add(r)
	return writeAtomic(path, 0o644, s.WriteText)
}

// lockFile opens (creating) path and takes an exclusive flock on it,
// retrying until deadline: a blocking flock could hold a session past its
// metrics budget.
func lockFile(path string, deadline time.Time) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644) // flock needs no write access
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock(%s): %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("flock(%s): still held by another session at the deadline", path)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeAtomic writes path through a temporary file in the same directory
// (rename is atomic only within one filesystem) renamed over it. It does
// not fsync: after a crash a counter may restart from zero, which
// Prometheus's rate() handles, and a session does not wait for the disk.
func writeAtomic(path string, mode os.FileMode, write func(io.Writer) error) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(tmp)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readText adds the ronly_ samples of a text exposition, as WriteText
// writes it, to s: counters and the histogram add, gauges are replaced.
// Other lines, and samples of metrics this version does not know, are
// ignored. Label values go through the same cap as a report's.
func (s *Set) readText(r io.Reader) error {
	byName := map[string]*family{}
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
		name, labels, value, err := parseSample(text)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if math.IsNaN(value) || value < 0 {
			continue
		}
		if f := byName[name]; f != nil {
			switch f.kind {
			case counter:
				values := make([]string, len(f.labels))
				for i, l := range f.labels {
					values[i] = labels[l]
				}
				s.add(f, toCount(value), values...)
			case gauge:
				s.gauges[f] = value
			}
			continue
		}
		h := sessionDuration.name
		switch name {
		case h + "_bucket":
			if i := bucketIndex(labels["le"]); i >= 0 {
				s.durBuckets[i] += toCount(value)
				s.durPresent = true
			}
		case h + "_sum":
			s.durSum += value
			s.durPresent = true
		}
	}
	return sc.Err()
}

func toCount(v float64) uint64 {
	if v >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(math.Round(v))
}

// bucketIndex is the index in durBuckets of an le label value, or -1 for a
// bound this version does not have.
func bucketIndex(le string) int {
	if le == "+Inf" {
		return len(durationBuckets)
	}
	v, err := strconv.ParseFloat(le, 64)
	if err != nil {
		return -1
	}
	for i, b := range durationBuckets {
		if b == v {
			return i
		}
	}
	return -1
}

// parseSample parses `name{l="v",…} value [timestamp]`.
func parseSample(line string) (name string, labels map[string]string, value float64, err error) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, fmt.Errorf("no value in %q", line)
	}
	name, rest := line[:i], line[i:]
	labels = map[string]string{}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return "", nil, 0, fmt.Errorf("bad labels in %q", line)
			}
			key := strings.TrimSpace(rest[:eq])
			val, n, err := unquoteLabel(rest[eq+2:])
			if err != nil {
				return "", nil, 0, fmt.Errorf("%w in %q", err, line)
			}
			labels[key] = val
			rest = strings.TrimPrefix(strings.TrimLeft(rest[eq+2+n:], " "), ",")
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, fmt.Errorf("no value in %q", line)
	}
	value, err = strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, fmt.Errorf("bad value in %q", line)
	}
	return name, labels, value, nil
}

// unquoteLabel reads an escaped label value up to its closing quote and
// returns it with the number of bytes consumed, quote included.
func unquoteLabel(s string) (string, int, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 == len(s) {
				return "", 0, errors.New("unterminated label value")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			default: // \\ and \"
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated label value")
}
