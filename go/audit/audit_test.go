package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLinesAreJSON(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", PID: i, Kind: "syscall", What: "mount", Errno: ErrnoName(syscall.EPERM)})
		}(i)
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, line := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.What != "mount" || e.Errno != "EPERM" || e.Session != "s1" {
			t.Fatalf("bad line %q: %v", line, err)
		}
	}
}

func TestPathOnlyWhenKnown(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", Kind: "write", What: "unlink", Path: "/etc/hosts", Errno: ErrnoName(syscall.EROFS)})
	l.Write(Entry{Time: time.Unix(0, 0).UTC(), Session: "s1", Kind: "write", What: "chmod", Errno: ErrnoName(syscall.EROFS)})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if !strings.Contains(lines[0], `"path":"/etc/hosts"`) {
		t.Errorf("line %q lacks the path", lines[0])
	}
	if strings.Contains(lines[1], `"path"`) {
		t.Errorf("line %q has a path, want none", lines[1])
	}
}

// fakeClock is a settable clock for the token bucket.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// lines splits a log into its entries and its dropped lines' counts.
func lines(t *testing.T, s string) (entries int, dropped []uint64) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var e struct {
			Kind  string
			Count *uint64
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if e.Kind == "dropped" {
			if e.Count == nil || *e.Count == 0 {
				t.Errorf("dropped line without a count: %q", line)
				continue
			}
			dropped = append(dropped, *e.Count)
			continue
		}
		entries++
	}
	return entries, dropped
}

func sum(xs []uint64) (n uint64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// TestRateLimit: a burst passes, then the refill rate; what is left out is
// counted exactly, in dropped lines and by Dropped.
func TestRateLimit(t *testing.T) {
	var b bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l := NewLimited(&b, Limit{Rate: 10, Burst: 5})
	l.now = clk.now
	l.every = time.Hour // only Close writes the dropped line here
	e := Entry{Session: "s1", Kind: "syscall", What: "mount"}
	for i := 0; i < 20; i++ { // at one instant: the burst, no more
		l.Write(e)
	}
	clk.t = clk.t.Add(300 * time.Millisecond) // 3 more tokens
	for i := 0; i < 20; i++ {
		l.Write(e)
	}
	clk.t = clk.t.Add(100 * time.Second) // refills to the burst, not beyond
	for i := 0; i < 20; i++ {
		l.Write(e)
	}
	l.Close()
	n, dropped := lines(t, b.String())
	if n != 5+3+5 {
		t.Errorf("%d entries written, want 13 (burst 5, then 3 in 0.3 s, then the burst again)", n)
	}
	if len(dropped) != 1 || sum(dropped) != 47 || l.Dropped() != 47 {
		t.Errorf("dropped lines %v, Dropped() %d, want one line of 47", dropped, l.Dropped())
	}
	if !strings.Contains(b.String(), `"session":"s1","kind":"dropped","count":47}`) {
		t.Errorf("dropped line is not as documented:\n%s", b.String())
	}
}

// TestDroppedLineEachInterval: while entries are dropped, a dropped line
// is written each interval, without waiting for Close; written + dropped
// is every entry, counted from many goroutines.
func TestDroppedLineEachInterval(t *testing.T) {
	var mu sync.Mutex
	var b bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return b.Write(p)
	})
	l := NewLimited(w, Limit{Rate: 100, Burst: 10})
	l.every = 20 * time.Millisecond
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.Write(Entry{Session: "s1", Kind: "syscall", What: "mount"})
				if i%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // a dropped line is due by now
	mu.Lock()
	_, before := lines(t, b.String())
	mu.Unlock()
	if len(before) == 0 {
		t.Errorf("no dropped line before Close")
	}
	l.Close()
	elapsed := time.Since(start)
	n, dropped := lines(t, b.String())
	if uint64(n)+sum(dropped) != writers*each || sum(dropped) != l.Dropped() {
		t.Errorf("%d written + %d dropped (Dropped() %d), want %d", n, sum(dropped), l.Dropped(), writers*each)
	}
	if max := 10 + int(100*elapsed.Seconds()) + 1; n > max {
		t.Errorf("%d entries in %v, more than burst + rate allow (%d)", n, elapsed, max)
	}
	// At most one per interval, plus Close's.
	if max := int(elapsed/l.every) + 2; len(dropped) > max {
		t.Errorf("%d dropped lines in %v, more than one per %v", len(dropped), elapsed, l.every)
	}
	l.Write(Entry{Session: "s1", Kind: "syscall", What: "mount"})
	time.Sleep(3 * l.every)
	if after, _ := lines(t, b.String()); after > n+1 {
		t.Errorf("after Close: %d entries", after)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
