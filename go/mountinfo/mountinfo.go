// Package mountinfo reads this process's mount table, /proc/self/mountinfo:
// the supervisor looks for sockets' mounts under /run, the cgroup code
// for the cgroup hierarchies, the probe for what a sandbox can see.
package mountinfo

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of the table.
type Mount struct {
	ID        uint64 // the mount id (statx STATX_MNT_ID)
	Opts      string // the mount's own options ("rw,nosuid"), comma-separated
	Root      string // the directory of the file system mounted here ("/" for its root)
	Point     string // where it is mounted
	FSType    string
	Source    string
	SuperOpts string // the super block's options, comma-separated
}

// Read returns the mounts of this process's mount namespace, in the
// kernel's order (parents before children).
func Read() ([]Mount, error) {
	// Parsed afresh every time: a cache validated by polling the open
	// file for POLLPRI served a table that still held a just-unmounted
	// tmpfs (5 of 30 runs under Bazel), and a stale table would plan
	// the sandbox's mounts from mounts that are gone.
	return ReadFile("/proc/self/mountinfo")
}

// ReadFile reads a mount table in mountinfo's format: /proc/<pid>/mountinfo
// is another process's, with mount points relative to its root.
func ReadFile(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads a mount table in mountinfo's format from r. An open
// /proc/<pid>/mountinfo keeps the mount namespace it was opened in: it
// still reads after pid has exited.
//
// The table is read whole and every field is a substring of it: a
// Kubernetes node has thousands of mounts, a session reads its table
// twice (the host's and the sandbox's), and a string and a slice of fields
// for each line were most of the parse's cost there.
func Parse(r io.Reader) ([]Mount, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	text := string(b)
	out := make([]Mount, 0, strings.Count(text, "\n"))
	for line := range strings.Lines(text) {
		// id parent maj:min root point options [optional...] - fstype source superopts
		var f [16]string
		n := 0
		for field := range strings.FieldsSeq(line) {
			if n == len(f) {
				break // optional fields beyond any the kernel writes
			}
			f[n] = field
			n++
		}
		if n < 5 {
			continue
		}
		m := Mount{Root: Unescape(f[3]), Point: Unescape(f[4])}
		m.ID, _ = strconv.ParseUint(f[0], 10, 64)
		if n > 5 {
			m.Opts = f[5]
		}
		for i := 5; i < n; i++ {
			if f[i] == "-" && i+3 < n {
				m.FSType, m.Source, m.SuperOpts = f[i+1], Unescape(f[i+2]), f[i+3]
				break
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Points lists the mount points alone.
func Points() ([]string, error) {
	ms, err := ReadFile("/proc/self/mountinfo") // afresh: the probe asks after hostile mount ops
	var out []string
	for _, m := range ms {
		out = append(out, m.Point)
	}
	return out, err
}

// Unescape undoes the kernel's octal escapes (\040 for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
