package policy

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenNoSymlinks opens the absolute path with flags without following a
// symlink in any component: openat2 with RESOLVE_NO_SYMLINKS, or, where
// openat2 answers ENOSYS (ronly nested in another ronly, whose filter
// refuses it; kernels before 5.6), a walk from / that opens each component
// with O_NOFOLLOW. A symlink anywhere gives ELOOP either way.
func OpenNoSymlinks(path string, flags int) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_NO_SYMLINKS})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	return openWalk(path, flags)
}

// openWalk is OpenNoSymlinks without openat2.
func openWalk(path string, flags int) (int, error) {
	if !strings.HasPrefix(path, "/") {
		return -1, unix.EINVAL
	}
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	for i, name := range parts {
		if name == ".." {
			// RESOLVE_NO_SYMLINKS allows "..", but the walk cannot
			// check where it leads; the paths ronly opens are clean.
			unix.Close(dir)
			return -1, unix.EINVAL
		}
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags | unix.O_NOFOLLOW
		}
		next, err := unix.Openat(dir, name, f, 0)
		if err != nil {
			// O_DIRECTORY|O_NOFOLLOW on a symlink gives ENOTDIR, and
			// O_PATH|O_NOFOLLOW opens the link itself: say ELOOP, as
			// openat2 does.
			var st unix.Stat_t
			if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		} else if i == len(parts)-1 {
			var st unix.Stat_t
			if unix.Fstat(next, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				unix.Close(next)
				next, err = -1, unix.ELOOP
			}
		}
		unix.Close(dir)
		if err != nil {
			return -1, err
		}
		dir = next
	}
	if len(parts) == 0 {
		unix.Close(dir)
		return unix.Open("/", flags, 0)
	}
	return dir, nil
}
