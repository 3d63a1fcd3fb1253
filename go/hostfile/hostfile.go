// Package hostfile writes the files the supervisor leaves on the host —
// the --report, the --audit-log, the --metrics-textfile and the metrics
// spool — through a descriptor of their directory, held from the start of
// the session, never through a symlink.
//
// The supervisor runs as root outside the sandbox, and these directories
// may be writable from inside it (a --rw directory, or one another session
// can write). Whatever the sandbox does there meanwhile — plant symlinks at
// the file's name or at temporary names, rename the directory away, put a
// symlink in its place — no write lands outside the directory the user
// named: names are only ever looked up relative to the held descriptor,
// one component each, with O_NOFOLLOW or O_EXCL, and a file is replaced by
// renameat within that directory. If the sandbox moved the directory, the
// files land in the moved directory: the same inode the user named.
package hostfile

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
)

// Dir is a host directory held open for writing files in.
type Dir struct {
	fd   int
	path string // as resolved when opened: for messages only
}

// OpenDir opens the directory path.
//
// The user's own path is resolved once, here, following its symlinks, so
// that a path named through a symlinked directory (/var/run → /run) works.
// Callers do this when ronly starts, before the session's sandbox exists,
// so nothing in that session can have planted a symlink yet. The resolved
// path is then opened with RESOLVE_NO_SYMLINKS: a symlink swapped into it
// in between is refused, not followed. From then on only the descriptor
// is used.
func OpenDir(path string) (*Dir, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(real) {
		if real, err = filepath.Abs(real); err != nil {
			return nil, err
		}
	}
	fd, err := policy.OpenNoSymlinks(real, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: real, Err: err}
	}
	return &Dir{fd: fd, path: real}, nil
}

// OpenFileDir opens the directory of the file path (see OpenDir) and
// returns it with the file's name in it.
func OpenFileDir(path string) (*Dir, string, error) {
	name := filepath.Base(path)
	if name == "." || name == ".." || name == "/" || strings.HasSuffix(path, "/") {
		return nil, "", fmt.Errorf("%s: not a file name", path)
	}
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return nil, "", err
	}
	return d, name, nil
}

// PendingDir is a directory that may not exist yet: its nearest existing
// ancestor, opened now (OpenDir), and the names below it, created only
// when the directory is needed, each with mkdirat and opened with
// O_NOFOLLOW from the one before. So a directory ronly creates late lies
// where the path led when ronly started, whatever was planted since.
type PendingDir struct {
	base *Dir
	rest []string
}

// OpenPendingDir opens the nearest existing ancestor of the directory path.
func OpenPendingDir(path string) (*PendingDir, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	var rest []string
	for {
		d, err := OpenDir(p)
		if err == nil {
			for i, j := 0, len(rest)-1; i < j; i, j = i+1, j-1 {
				rest[i], rest[j] = rest[j], rest[i]
			}
			return &PendingDir{base: d, rest: rest}, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || p == "/" {
			return nil, err
		}
		rest = append(rest, filepath.Base(p))
		p = filepath.Dir(p)
	}
}

// Create makes the missing directories with perm and opens the last.
func (p *PendingDir) Create(perm os.FileMode) (*Dir, error) {
	fd, err := unix.Openat(p.base.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, p.base.pathErr("open", ".", err)
	}
	path := p.base.path
	for _, name := range p.rest {
		if err := unix.Mkdirat(fd, name, uint32(perm.Perm())); err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return nil, &os.PathError{Op: "mkdir", Path: filepath.Join(path, name), Err: err}
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR {
				err = ErrNotPlain
			}
			return nil, &os.PathError{Op: "open", Path: filepath.Join(path, name), Err: err}
		}
		fd, path = next, filepath.Join(path, name)
	}
	return &Dir{fd: fd, path: path}, nil
}

// Close lets the ancestor go.
func (p *PendingDir) Close() error {
	if p == nil {
		return nil
	}
	return p.base.Close()
}

// Path is the directory's path as it was when opened.
func (d *Dir) Path() string { return d.path }

// Close lets the directory go.
func (d *Dir) Close() error {
	if d == nil || d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// checkName refuses anything but one plain component: a name with a slash
// would be looked up through directories the sandbox may control.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q: not a plain file name", name)
	}
	return nil
}

// ErrNotPlain says a name is a symlink, or not a plain file with one name,
// where ronly expected its own file: ronly neither follows nor appends to it.
var ErrNotPlain = errors.New("is a symlink or not a plain file with one name, which ronly does not follow")

func (d *Dir) pathErr(op, name string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		err = ErrNotPlain
	}
	return &os.PathError{Op: op, Path: filepath.Join(d.path, name), Err: err}
}

// maxTries bounds the temporary names tried: each is random, so only a
// directory already full of such names (planted) runs out.
const maxTries = 100

// tempSuffix makes temporary names unpredictable (a test replaces it to
// plant a symlink at the very name tried).
var tempSuffix = func() string {
	var b [6]byte
	rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// WriteFile replaces name with what write writes, atomically: a temporary
// file created in the directory with O_EXCL (which never follows a symlink
// planted at that name) is renamed over name (which replaces a symlink
// there rather than following it). It does not fsync.
func (d *Dir) WriteFile(name string, perm os.FileMode, write func(io.Writer) error) error {
	if err := checkName(name); err != nil {
		return err
	}
	var tmp string
	fd := -1
	for i := 0; i < maxTries && fd < 0; i++ {
		tmp = "." + name + ".tmp" + tempSuffix()
		var err error
		fd, err = unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil && err != unix.EEXIST {
			return d.pathErr("create", tmp, err)
		}
	}
	if fd < 0 {
		return d.pathErr("create", name, errors.New("no free temporary name"))
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, tmp))
	bw := bufio.NewWriter(f)
	err := write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(d.fd, tmp, d.fd, name)
	}
	if err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return d.pathErr("write", name, err)
	}
	return nil
}

// OpenAppend opens name for appending, creating it with perm. It refuses
// a symlink at name, a FIFO, and a file with other hard links: a hard link
// planted there earlier could name any file of its owner's on the same
// file system.
func (d *Dir) OpenAppend(name string, perm os.FileMode) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO planted at the name must not hang the start.
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, uint32(perm.Perm()))
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, d.pathErr("fstat", name, err)
	}
	// A character device (/dev/null) is written as it is: a session
	// cannot make one (no CAP_MKNOD, nodev mounts).
	plain := st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1
	if !plain && st.Mode&unix.S_IFMT != unix.S_IFCHR {
		unix.Close(fd)
		return nil, d.pathErr("open", name, ErrNotPlain)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_WRONLY|unix.O_APPEND); err != nil {
		unix.Close(fd)
		return nil, d.pathErr("fcntl", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// Open opens name for reading; os.ErrNotExist when there is none. It
// refuses a symlink and anything but a plain file (ErrNotPlain).
func (d *Dir) Open(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, d.pathErr("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		if err == nil {
			err = ErrNotPlain
		}
		return nil, d.pathErr("open", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// ReadFile is the content of name (see Open).
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// LockFile is a new descriptor of the directory itself, for writers that
// serialise with flock. The directory is the lock, not a lock file in it:
// a session could plant a symlink at a lock file's name, and a lock that
// cannot be taken would lose the write.
func (d *Dir) LockFile() (*os.File, error) {
	// A descriptor of its own: an flock belongs to an open file, and
	// closing this one must release it.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.pathErr("open", ".", err)
	}
	return os.NewFile(uintptr(fd), d.path), nil
}

// Socket opens the unix socket name for connecting: an O_PATH descriptor
// of the socket itself, never of what a symlink at name points to, and
// the path to dial, /proc/self/fd/N, which reaches that very socket. Close
// the file once connected.
func (d *Dir) Socket(name string) (*os.File, string, error) {
	if err := checkName(name); err != nil {
		return nil, "", err
	}
	fd, err := unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", d.pathErr("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(fd)
		if err == nil {
			err = errors.New("is not a unix socket (a symlink is not followed)")
		}
		return nil, "", d.pathErr("open", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), fmt.Sprintf("/proc/self/fd/%d", fd), nil
}

// Entry is a name in the directory, with the size of what it names (not
// followed, when it is a symlink).
type Entry struct {
	Name string
	Size int64
}

// Entries lists the directory.
func (d *Dir) Entries() ([]Entry, error) {
	// A descriptor of its own: reading a directory moves its offset.
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.pathErr("open", ".", err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, d.pathErr("readdir", ".", err)
	}
	out := make([]Entry, 0, len(names))
	for _, n := range names {
		var st unix.Stat_t
		if unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue // gone since
		}
		out = append(out, Entry{Name: n, Size: st.Size})
	}
	return out, nil
}

// Has says whether name exists in the directory (a symlink at name is
// not followed). An error other than ENOENT counts as existing.
func (d *Dir) Has(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != unix.ENOENT
}

// Remove removes the file name; no error when there is none.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && err != unix.ENOENT {
		return d.pathErr("remove", name, err)
	}
	return nil
}
