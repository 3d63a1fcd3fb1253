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

	"ronly.dev/ronly/go/hostfile"
)

// The spool is a directory of reports that could not reach the exporter,
// one file per session, <session>.json, each written to a temporary file
// and renamed so the exporter never reads half a report. It is bounded;
// a report that does not fit is dropped and counted in the file "dropped",
// which the exporter adds to ronly_reports_dropped_total. A report is
// written without a lock: 50 sessions ending at once on a loaded 2-core
// host starved the last quarter of their 200 ms budget waiting for one, and
// their reports were lost. So the bound can be passed by the reports being
// written at that moment, one per concurrent session at most. The drop
// count is added under an flock on the directory, so that it is exact.

const (
	// DefaultSpoolMaxFiles bounds the reports waiting in the spool.
	DefaultSpoolMaxFiles = 1000
	// DefaultSpoolMaxBytes bounds their total size.
	DefaultSpoolMaxBytes = 16 << 20

	spoolDropped = "dropped"
	spoolExt     = ".json"
)

// ErrSpoolFull says the report was dropped (and counted) because the spool
// is at its bound.
var ErrSpoolFull = errors.New("spool full: report dropped")

// spoolWrite writes a session's report into the spool, the directory dir.
func spoolWrite(dir *hostfile.Dir, o DeliverOptions, session string, data []byte, deadline time.Time) error {
	entries, err := dir.Entries()
	if err != nil {
		return err
	}
	name := spoolName(session)
	files, size := 0, int64(0)
	for _, e := range entries {
		if e.Name == name || !isSpooled(e.Name) {
			continue // a report of the same session is replaced, not added
		}
		files++
		size += e.Size
	}
	if files+1 > o.SpoolMaxFiles || size+int64(len(data)) > o.SpoolMaxBytes {
		lock, err := lockFile(dir, deadline, nil)
		if err != nil {
			return fmt.Errorf("%w, and counting it failed: %v", ErrSpoolFull, err)
		}
		defer lock.Close()
		if err := addDropped(dir, 1); err != nil {
			return fmt.Errorf("%w, and counting it failed: %v", ErrSpoolFull, err)
		}
		return ErrSpoolFull
	}
	return dir.WriteFile(name, 0o600, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// openSpool opens the spool directory, creating it (0700) when missing.
func openSpool(path string) (*hostfile.Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, err
	}
	return hostfile.OpenDir(path)
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
func addDropped(dir *hostfile.Dir, n uint64) error {
	old, err := readDropped(dir)
	if err != nil {
		return err
	}
	return dir.WriteFile(spoolDropped, 0o600, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%d\n", old+n)
		return err
	})
}

func readDropped(dir *hostfile.Dir) (uint64, error) {
	b, err := dir.ReadFile(spoolDropped)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, hostfile.ErrNotPlain) {
		return 0, nil // a symlink planted there is not ronly's count, and is replaced
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(dir.Path(), spoolDropped), err)
	}
	return n, nil
}

// takeDropped returns the spool's drop count and resets it.
func takeDropped(path string) (uint64, error) {
	dir, err := hostfile.OpenDir(path)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	lock, err := lockFile(dir, time.Now().Add(5*time.Second), nil)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	n, err := readDropped(dir)
	if err != nil {
		dir.Remove(spoolDropped) // a corrupt count would otherwise stick
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return n, dir.Remove(spoolDropped)
}
