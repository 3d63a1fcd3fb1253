// Package mountinfo reads this process's mount table, /proc/self/mountinfo:
// the supervisor looks for sockets' mounts under /run, the cgroup code
// for the cgroup hierarchies, the probe for what a sandbox can see.
package mountinfo

import (
	"bytes"
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

// Read returns the mounts of this process's mount namespace that keep
// accepts (every one, with a nil keep), in the kernel's order (parents
// before children).
func Read(keep func(*Mount) bool) ([]Mount, error) {
	// Parsed afresh every time: a cache validated by polling the open
	// file for POLLPRI served a table that still held a just-unmounted
	// tmpfs (5 of 30 runs under Bazel), and a stale table would plan
	// the sandbox's mounts from mounts that are gone.
	return ReadFile("/proc/self/mountinfo", keep)
}

// ReadFile reads a mount table in mountinfo's format: /proc/<pid>/mountinfo
// is another process's, with mount points relative to its root.
func ReadFile(path string, keep func(*Mount) bool) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return Parse(f, keep)
}

// chunk is how much of a table Parse asks for in one read.
const chunk = 64 << 10

// Parse reads a mount table in mountinfo's format from r, and returns the
// mounts keep accepts (every one, with a nil keep). An open
// /proc/<pid>/mountinfo keeps the mount namespace it was opened in: it
// still reads after pid has exited.
//
// A Kubernetes node has thousands of mounts. In a process just started,
// every page of memory touched for the first time is a page fault, and a
// fault costs several microseconds on some VMs. Read whole (io.ReadAll
// grows its buffer several times) with a Mount kept for every line, the
// table of 2,000 mounts (139 KB) cost a fresh process 247 page faults; read
// as here, in pieces into one buffer, each piece's whole lines one string
// whose substrings are the fields, keeping only the mounts asked for, 139,
// and 1.4 ms less.
func Parse(r io.Reader, keep func(*Mount) bool) ([]Mount, error) {
	var out []Mount
	buf := make([]byte, chunk)
	n := 0 // bytes in buf: the start of a line not read whole yet
	for {
		k, err := r.Read(buf[n:])
		n += k
		eof := err == io.EOF
		if err != nil && !eof {
			return nil, fmt.Errorf("read mount table: %w", err)
		}
		end := n // at the end, a last line without its newline too
		if !eof {
			// Only the bytes just read: those before hold no newline.
			end = 0
			if i := bytes.LastIndexByte(buf[n-k:n], '\n'); i >= 0 {
				end = n - k + i + 1
			}
		}
		if end > 0 {
			out = parseLines(string(buf[:end]), keep, out)
			n = copy(buf, buf[end:n])
		}
		if eof {
			return out, nil
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...) // a line longer than the buffer
		}
	}
}

// parseLines appends to out the mounts of text, whole lines, that keep
// accepts; their fields are substrings of text.
func parseLines(text string, keep func(*Mount) bool, out []Mount) []Mount {
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
		if keep == nil || keep(&m) {
			out = append(out, m)
		}
	}
	return out
}

// Points lists the mount points alone.
func Points() ([]string, error) {
	ms, err := ReadFile("/proc/self/mountinfo", nil) // afresh: the probe asks after hostile mount ops
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
