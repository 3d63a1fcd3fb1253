package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The spool is a directory of reports that could not reach the exporter,
// one file per session, <session>.json, each written to a temporary file
// and renamed so the exporter never reads half a report. It is bounded;
// a report that does not fit is dropped and counted in the file "dropped",
// which the exporter adds to ronly_reports_dropped_total. Writers take an
// flock on "lock" so that the bound and the drop count are exact.

const (
	// DefaultSpoolMaxFiles bounds the reports waiting in the spool.
	DefaultSpoolMaxFiles = 1000
	// DefaultSpoolMaxBytes bounds their total size.
	DefaultSpoolMaxBytes = 16 << 20

	spoolLock    = "lock"
	spoolDropped = "dropped"
	spoolExt     = ".json"
)

// ErrSpoolFull says the report was dropped (and counted) because the spool
// is at its bound.
var ErrSpoolFull = errors.New("spool full: report dropped")

func spoolWrite(o DeliverOptions, session string, data []byte, deadline time.Time) error {
	if err := os.MkdirAll(o.Spool, 0o700); err != nil {
		return err
	}
	lock, err := lockFile(filepath.Join(o.Spool, spoolLock), deadline)
	if err != nil {
		return err
	}
	defer lock.Close()

	entries, err := os.ReadDir(o.Spool)
	if err != nil {
		return err
	}
	name := spoolName(session)
	files, size := 0, int64(0)
	for _, e := range entries {
		if e.Name() == name || !isSpooled(e.Name()) {
			continue // a report of the same session is replaced, not added
		}
		files++
		if info, err := e.Info(); err == nil {
			size += info.Size()
		}
	}
	if files+1 > o.SpoolMaxFiles || size+int64(len(data)) > o.SpoolMaxBytes {
		if err := addDropped(o.Spool, 1); err != nil {
			return fmt.Errorf("%w, and counting it failed: %v", ErrSpoolFull, err)
		}
		return ErrSpoolFull
	}
	return writeAtomic(filepath.Join(o.Spool, name), 0o600, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// spoolName is the file name of a session's report: the session id when it
// is a plain name, else a hash of it, so that an id is never a path.
func spoolName(session string) string {
	plain := session != "" && len(session) <= maxSessionLen
	for i, c := range session {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '-' || c == '_' || c == '.')
		plain = plain && ok
	}
	if !plain {
		sum := sha256.Sum256([]byte(session))
		session = hex.EncodeToString(sum[:16])
	}
	return session + spoolExt
}

func isSpooled(name string) bool {
	return strings.HasSuffix(name, spoolExt) && !strings.HasPrefix(name, ".")
}

// addDropped adds n to the spool's drop count. The caller holds the lock.
func addDropped(dir string, n uint64) error {
	path := filepath.Join(dir, spoolDropped)
	old, err := readDropped(path)
	if err != nil {
		return err
	}
	return writeAtomic(path, 0o600, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%d\n", old+n)
		return err
	})
}

func readDropped(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// takeDropped returns the spool's drop count and resets it.
func takeDropped(dir string) (uint64, error) {
	lock, err := lockFile(filepath.Join(dir, spoolLock), time.Now().Add(5*time.Second))
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	path := filepath.Join(dir, spoolDropped)
	n, err := readDropped(path)
	if err != nil {
		os.Remove(path) // a corrupt count would otherwise stick
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return n, os.Remove(path)
}
