package metrics

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	// MaxConns bounds the report connections the exporter serves at once;
	// more wait in the socket's backlog.
	MaxConns = 64
	// connTimeout bounds one report connection, so a stuck writer cannot
	// hold a slot.
	connTimeout = 2 * time.Second
	// recentSessions is how many session ids the exporter remembers to
	// drop a report it already counted (one that was also spooled because
	// its answer came late): at 1,000 sessions a second, the last minute.
	recentSessions = 1 << 16
	// staleTmp is the age after which a temporary spool file is debris of
	// a session that died while writing it.
	staleTmp = 10 * time.Minute
)

// Exporter aggregates the reports of a host's sessions for Prometheus,
// which scrapes its Samples through go/metrics/promexport. Each Exporter
// has its own Set; nothing is global. Its methods are safe for concurrent
// use.
type Exporter struct {
	spool string

	mu     sync.Mutex
	set    *Set
	recent recentSet
}

// NewExporter returns an Exporter that ingests the spool directory spool.
func NewExporter(spool string) *Exporter {
	s := NewSet()
	s.add(reportsReceived, 0, "socket")
	s.add(reportsReceived, 0, "spool")
	s.add(reportsDropped, 0)
	s.add(reportsMalformed, 0)
	return &Exporter{spool: spool, set: s, recent: newRecentSet(recentSessions)}
}

// Ingest counts one JSON report that arrived via "socket" or "spool". A
// report that does not parse or validate is counted as malformed and
// otherwise ignored; one already counted is ignored.
func (e *Exporter) Ingest(data []byte, via string) error {
	var r Report
	err := json.Unmarshal(data, &r)
	if err == nil {
		err = r.Validate()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.set.add(reportsMalformed, 1)
		return err
	}
	if !e.recent.add(r.Session) {
		return nil
	}
	e.set.Add(r)
	e.set.add(reportsReceived, 1, via)
	return nil
}

// ServeSocket accepts report connections on ln until it is closed, serving
// at most MaxConns at once. onError (may be nil) hears of each report that
// was refused. It returns nil once ln is closed.
func (e *Exporter) ServeSocket(ln net.Listener, onError func(error)) error {
	slots := make(chan struct{}, MaxConns)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		slots <- struct{}{}
		c, err := ln.Accept()
		if err != nil {
			<-slots
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off instead of spinning.
			if onError != nil {
				onError(fmt.Errorf("accept: %w", err))
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := e.serveConn(c); err != nil && onError != nil {
				onError(err)
			}
		}()
	}
}

// serveConn reads one newline-terminated report and answers "ok" or
// "error: why".
func (e *Exporter) serveConn(c net.Conn) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(connTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, MaxReportBytes)).ReadBytes('\n')
	switch {
	case err == io.EOF && len(line) == 0:
		return nil // connected and left: a probe, not a report
	case err == io.EOF && len(line) == MaxReportBytes:
		err = fmt.Errorf("report larger than %d bytes", MaxReportBytes)
	case err == io.EOF:
		err = errors.New("report not terminated by a newline")
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = errors.New("report not received in time")
		}
		e.mu.Lock()
		e.set.add(reportsMalformed, 1)
		e.mu.Unlock()
	} else {
		err = e.Ingest(line, "socket")
	}
	answer := ackOK
	if err != nil {
		err = fmt.Errorf("report from %s: %w", peer(c), err)
		answer = ackError + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	c.Write([]byte(answer + "\n"))
	return err
}

// peer names the process at the other end of a unix connection, for the
// exporter's log.
func peer(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return "peer"
	}
	if cred, err := peerCred(uc); err == nil {
		return fmt.Sprintf("pid %d uid %d", cred.Pid, cred.Uid)
	}
	return "peer"
}

// IngestSpool counts and removes every report in the spool, and the
// spool's drop count. Reports that do not parse are removed and counted as
// malformed; their errors are joined in the result.
func (e *Exporter) IngestSpool() error {
	entries, err := os.ReadDir(e.spool)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var errs []error
	for _, ent := range entries {
		name := ent.Name()
		path := filepath.Join(e.spool, name)
		switch {
		case isSpooled(name):
			if err := e.ingestFile(path); err != nil {
				errs = append(errs, err)
			}
		case strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp"): // see hostfile.Dir.WriteFile
			if info, err := ent.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
				os.Remove(path)
			}
		}
	}
	n, err := takeDropped(e.spool)
	if err != nil {
		errs = append(errs, fmt.Errorf("spool drop count: %w", err))
	}
	if n > 0 {
		e.mu.Lock()
		e.set.add(reportsDropped, n)
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}

// ingestFile counts one spooled report, removing it first: if the exporter
// dies in between, one report is lost rather than counted twice.
func (e *Exporter) ingestFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxReportBytes+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if len(data) > MaxReportBytes {
		e.mu.Lock()
		e.set.add(reportsMalformed, 1)
		e.mu.Unlock()
		return fmt.Errorf("spool %s: larger than %d bytes", path, MaxReportBytes)
	}
	if err := e.Ingest(data, "spool"); err != nil {
		return fmt.Errorf("spool %s: %w", path, err)
	}
	return nil
}

// recentSet remembers the last n session ids, as 64-bit hashes in a ring.
type recentSet struct {
	seed maphash.Seed
	ring []uint64
	next int
	in   map[uint64]struct{}
}

func newRecentSet(n int) recentSet {
	return recentSet{seed: maphash.MakeSeed(), ring: make([]uint64, 0, n), in: make(map[uint64]struct{}, n)}
}

// add remembers id and says whether it was new.
func (s *recentSet) add(id string) bool {
	h := maphash.String(s.seed, id)
	if _, ok := s.in[h]; ok {
		return false
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, h)
	} else {
		delete(s.in, s.ring[s.next])
		s.ring[s.next] = h
		s.next = (s.next + 1) % len(s.ring)
	}
	s.in[h] = struct{}{}
	return true
}
