package metrics

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustJSON(t *testing.T, r Report) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// serve runs an Exporter on a fresh socket for the length of the test.
func serve(t *testing.T) (*Exporter, DeliverOptions) {
	t.Helper()
	dir := t.TempDir()
	o := DeliverOptions{Socket: filepath.Join(dir, "run", "exporter.sock"), Spool: filepath.Join(dir, "spool")}
	ln, err := ListenSocket(o.Socket, 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	e := NewExporter(o.Spool)
	done := make(chan error)
	go func() { done <- e.ServeSocket(ln, nil) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return e, o
}

func count(e *Exporter, f *family, values ...string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set.counters[f][strings.Join(values, sep)]
}

func TestDeliverToExporter(t *testing.T) {
	e, o := serve(t)
	for _, r := range goldenReports() {
		if err := Deliver(r, o); err != nil {
			t.Fatal(err)
		}
	}
	// The same session again (its first answer "lost"): not counted twice.
	if err := Deliver(goldenReports()[0], o); err != nil {
		t.Fatal(err)
	}
	if got := count(e, blockedSyscalls, "mount"); got != 4 {
		t.Errorf("mount refused %d times, want 4", got)
	}
	if got := count(e, reportsReceived, "socket"); got != 4 {
		t.Errorf("%d reports received, want 4", got)
	}
	if entries, _ := os.ReadDir(o.Spool); len(entries) != 0 {
		t.Errorf("spool used while the exporter was up: %v", entries)
	}
}

func TestExporterRefusesMalformed(t *testing.T) {
	e, o := serve(t)
	for _, bad := range []string{"{nope\n", `{"session":""}` + "\n", `{"session":"x","start":"2025-01-02T00:00:00Z","end":"2025-01-01T00:00:00Z"}` + "\n", "no newline"} {
		c, err := net.Dial("unix", o.Socket)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(bad))
		if bad == "no newline" {
			c.(*net.UnixConn).CloseWrite()
		}
		answer := make([]byte, 512)
		n, _ := c.Read(answer)
		c.Close()
		if !strings.HasPrefix(string(answer[:n]), ackError) {
			t.Errorf("report %q answered %q, want an error", bad, answer[:n])
		}
	}
	if got := count(e, reportsMalformed); got != 4 {
		t.Errorf("%d malformed, want 4", got)
	}
	// Deliver sees the refusal and does not spool.
	err := Deliver(Report{Session: "y", Start: t0, End: t0, SeccompMode: "bogus"}, o)
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Errorf("Deliver of an invalid report: %v, want a RejectedError", err)
	}
	if entries, _ := os.ReadDir(o.Spool); len(entries) != 0 {
		t.Errorf("refused report spooled: %v", entries)
	}
}

func TestDeliverSpoolsWhenExporterDown(t *testing.T) {
	dir := t.TempDir()
	o := DeliverOptions{Socket: filepath.Join(dir, "none.sock"), Spool: filepath.Join(dir, "spool"), SpoolMaxFiles: 2}
	for _, r := range goldenReports() { // 4 reports, room for 2
		if err := Deliver(r, o); err != nil && !errors.Is(err, ErrSpoolFull) {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(o.Spool); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool %v, %v: want a 0700 directory", fi, err)
	}
	e := NewExporter(o.Spool)
	if err := e.IngestSpool(); err != nil {
		t.Fatal(err)
	}
	if got := count(e, reportsReceived, "spool"); got != 2 {
		t.Errorf("%d reports from the spool, want 2", got)
	}
	if got := count(e, reportsDropped); got != 2 {
		t.Errorf("%d reports dropped, want 2", got)
	}
	entries, _ := os.ReadDir(o.Spool)
	for _, ent := range entries {
		t.Errorf("%s left in the spool after ingestion", ent.Name())
	}
	// Ingested once: a second pass adds nothing.
	e.IngestSpool()
	if got := count(e, reportsDropped) + count(e, reportsReceived, "spool"); got != 4 {
		t.Errorf("second ingestion changed the counts: %d", got)
	}
}

// TestDeliverBoundedByTimeout: an exporter that accepts and never answers
// holds a session no longer than the timeout, and the report is spooled.
func TestDeliverBoundedByTimeout(t *testing.T) {
	dir := t.TempDir()
	o := DeliverOptions{Socket: filepath.Join(dir, "stuck.sock"), Spool: filepath.Join(dir, "spool"), Timeout: 100 * time.Millisecond}
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	start := time.Now()
	if err := Deliver(goldenReports()[0], o); err != nil {
		t.Fatal(err)
	}
	// The exporter above never answers: without the timeout Deliver would
	// never return. The bound is a hang guard, far above the timeout, so a
	// loaded machine cannot make this test flaky.
	if d := time.Since(start); d > 50*o.Timeout {
		t.Errorf("Deliver took %v with a %v timeout: the timeout did not bound it", d, o.Timeout)
	}
	if _, err := os.Stat(filepath.Join(o.Spool, "s1.json")); err != nil {
		t.Errorf("report not spooled: %v", err)
	}
}

// TestSpoolWriteWhileLocked: a report reaches the spool while another
// process holds the spool's lock (the exporter ingesting, or a session
// counting a drop); only a drop waits for the lock, and no longer than
// the deadline. 50 sessions ending at once used to lose reports here.
func TestSpoolWriteWhileLocked(t *testing.T) {
	dir := t.TempDir()
	o := DeliverOptions{Socket: filepath.Join(dir, "none.sock"), Spool: filepath.Join(dir, "spool"), SpoolMaxFiles: 1}.withDefaults()
	spool, err := openSpool(o.Spool)
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	held := holdLock(t, spool)
	defer held.Close()
	if err := spoolWrite(spool, o, "first", []byte(`{"session":"first"}`+"\n"), time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatalf("spool write with the lock held elsewhere: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Spool, spoolName("first"))); err != nil {
		t.Fatalf("the report: %v", err)
	}
	// Full now: the drop must be counted under the lock, which is held.
	err = spoolWrite(spool, o, "second", []byte(`{"session":"second"}`+"\n"), time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("write into a full spool with the lock held: %v, want ErrSpoolFull", err)
	}
	if _, err := os.Stat(filepath.Join(o.Spool, spoolName("second"))); !os.IsNotExist(err) {
		t.Errorf("the dropped report is in the spool: %v", err)
	}
	held.Close()
	if err := spoolWrite(spool, o, "third", []byte(`{"session":"third"}`+"\n"), time.Now().Add(time.Second)); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("write into a full spool: %v, want ErrSpoolFull", err)
	}
	if n, err := readDropped(spool); err != nil || n != 1 {
		t.Errorf("drop count %d, %v: want 1 (the one counted once the lock was free)", n, err)
	}
}
