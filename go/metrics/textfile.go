package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/hostfile"
)

// MergeTextfile adds r to the counters in the node_exporter textfile at
// path and rewrites it atomically: concurrent sessions serialise on an
// flock of its directory, read the file's ronly_ samples, add their own and
// rename a temporary file from the same directory over it, so the collector
// never sees half a file and no session's counts are lost. It gives up at
// deadline rather than block the session.
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

// mergeTextfileIn is MergeTextfile of the file name in dir, a directory
// held open (hostfile): nothing is read or written through a symlink.
func mergeTextfileIn(dir *hostfile.Dir, name string, r Report, deadline time.Time) error {
	lock, err := lockFile(dir, deadline)
	if err != nil {
		return err
	}
	defer lock.Close() // closing the only descriptor releases the flock

	s := NewSet()
	switch f, err := dir.Open(name); {
	case err == nil:
		err = s.readText(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("textfile %s: %w", f.Name(), err)
		}
	case errors.Is(err, hostfile.ErrNotPlain):
		// Not ronly's file (a symlink planted there): start afresh
		// and replace it.
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("textfile: %w", err)
	}
	s.Add(r)
	return dir.WriteFile(name, 0o644, s.WriteText)
}

// lockFile takes an exclusive flock on dir itself (hostfile.Dir.LockFile),
// waiting at most until deadline. The wait is a blocking flock, so that
// the kernel hands the lock from one session to the next as soon as it is
// free: polling with LOCK_NB starved the holder when 50 sessions ended at
// once on 2 CPUs. When the deadline passes first, the waiting flock is
// abandoned: if it succeeds later it lets go at once.
func lockFile(dir *hostfile.Dir, deadline time.Time) (*os.File, error) {
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
	done := make(chan error, 1)
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
		done <- err
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("flock(%s): %w", f.Name(), err)
		}
		return f, nil
	case <-timer.C:
		if state.CompareAndSwap(waiting, abandoned) {
			return nil, fmt.Errorf("flock(%s): still held by another session at the deadline", f.Name())
		}
		// Taken just as the deadline passed: use it.
		if err := <-done; err != nil {
			f.Close()
			return nil, fmt.Errorf("flock(%s): %w", f.Name(), err)
		}
		return f, nil
	}
}

// readText adds the ronly_ samples of a text exposition, as WriteText
// writes it, to s: counters and the histogram add, gauges are replaced.
// Lines that are not ronly_ samples or their HELP and TYPE are blanked
// before expfmt parses the rest (so its errors keep the file's line
// numbers); samples of metrics this version does not know are ignored.
// Label values go through the same cap as a report's.
func (s *Set) readText(r io.Reader) error {
	var kept bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("ronly_")) ||
			bytes.HasPrefix(line, []byte("# HELP ronly_")) || bytes.HasPrefix(line, []byte("# TYPE ronly_")) {
			kept.Write(line)
		}
		kept.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(&kept)
	if err != nil {
		return err
	}
	for _, f := range families {
		for _, m := range mfs[f.name].GetMetric() {
			if f.kind == histogram {
				s.readHistogram(m.GetHistogram())
				continue
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			if math.IsNaN(v) || v < 0 {
				continue
			}
			if f.kind == gauge {
				s.gauges[f] = v
				continue
			}
			values := make([]string, len(f.labels))
			for i, l := range f.labels {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == l {
						values[i] = lp.GetValue()
					}
				}
			}
			s.add(f, toCount(v), values...)
		}
	}
	return nil
}

// readHistogram adds the buckets and sum of h (nil: none) to the session
// duration histogram. Buckets with bounds this version does not have are
// ignored; the count is the +Inf bucket's.
func (s *Set) readHistogram(h *dto.Histogram) {
	if h == nil {
		return
	}
	for _, b := range h.GetBucket() {
		n := b.GetCumulativeCountFloat()
		if n == 0 {
			n = float64(b.GetCumulativeCount())
		}
		if i := bucketIndex(b.GetUpperBound()); i >= 0 && !math.IsNaN(n) && n >= 0 {
			s.durBuckets[i] += toCount(n)
			s.durPresent = true
		}
	}
	if sum := h.GetSampleSum(); !math.IsNaN(sum) && sum >= 0 {
		s.durSum += sum
		s.durPresent = true
	}
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
