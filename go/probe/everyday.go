package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/shims"
)

// scratchOps are the file operations normal work does where writing is
// allowed. Each makes its own entries in a fresh directory under base(t).
// An empty base means the place does not exist in this run.
func scratchOps(where string, base func(t Targets) string) []Op {
	type fileOp struct {
		name string
		run  func(dir string) error
	}
	create := func(p string) error {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		_, err = unix.Write(fd, []byte("hello\n"))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		return nil
	}
	ops := []fileOp{
		{"create", func(d string) error {
			fd, err := unix.Open(d+"/f", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return err
			}
			return unix.Close(fd)
		}},
		{"write", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			fd, err := unix.Open(d+"/f", unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_, err = unix.Write(fd, []byte("more\n"))
			return err
		}},
		{"rename", func(d string) error {
			if err := create(d + "/a"); err != nil {
				return err
			}
			return unix.Rename(d+"/a", d+"/b")
		}},
		{"rename over existing", func(d string) error {
			if err := create(d + "/a"); err != nil {
				return err
			}
			if err := create(d + "/b"); err != nil {
				return err
			}
			return unix.Rename(d+"/a", d+"/b")
		}},
		{"renameat2 RENAME_EXCHANGE", func(d string) error {
			if err := create(d + "/a"); err != nil {
				return err
			}
			if err := unix.Mkdir(d+"/b", 0o755); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			return unix.Renameat2(unix.AT_FDCWD, d+"/a", unix.AT_FDCWD, d+"/b", unix.RENAME_EXCHANGE)
		}},
		{"unlink", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return unix.Unlink(d + "/f")
		}},
		{"mkdir", func(d string) error { return unix.Mkdir(d+"/sub", 0o755) }},
		{"rmdir", func(d string) error {
			if err := unix.Mkdir(d+"/sub", 0o755); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			return unix.Rmdir(d + "/sub")
		}},
		{"truncate", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return unix.Truncate(d+"/f", 2)
		}},
		{"open O_TRUNC", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return openClose(d+"/f", unix.O_WRONLY|unix.O_TRUNC, 0)
		}},
		{"symlink", func(d string) error { return unix.Symlink("target", d+"/link") }},
		{"link", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return unix.Link(d+"/f", d+"/g")
		}},
		{"mkfifo", func(d string) error { return unix.Mkfifo(d+"/fifo", 0o644) }},
		{"chmod", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return unix.Chmod(d+"/f", 0o755)
		}},
		{"utimensat", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			return unix.UtimesNano(d+"/f", []unix.Timespec{{Sec: 1}, {Sec: 1}})
		}},
		{"mmap MAP_SHARED|PROT_WRITE", func(d string) error {
			if err := create(d + "/f"); err != nil {
				return err
			}
			fd, err := unix.Open(d+"/f", unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			b, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				return err
			}
			b[0] = 'H'
			return unix.Munmap(b)
		}},
	}
	var out []Op
	for i, fo := range ops {
		fo, slug := fo, fmt.Sprintf("%02d", i)
		out = append(out, Op{Name: fo.name + " in " + where, Kind: Everyday, Run: func(t Targets) error {
			b := base(t)
			if b == "" {
				return skip("no %s in this run", where)
			}
			d := filepath.Join(b, "ronly-probe-"+t.Marker+"-"+slug)
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			return fo.run(d)
		}})
	}
	return out
}

func readAll(path string) error {
	_, err := os.ReadFile(path)
	return unwrapPathError(err)
}

// unwrapPathError turns *fs.PathError into its errno, so results name it.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	if se, ok := err.(*os.SyscallError); ok {
		return se.Err
	}
	return err
}

func everyday() []Op {
	e := func(name string, run func(t Targets) error) Op { return Op{Name: name, Kind: Everyday, Run: run} }
	ops := scratchOps("/tmp", func(t Targets) string { return t.Tmp() })
	ops = append(ops, scratchOps("--rw dir", func(t Targets) string { return t.RWDir })...)
	return append(ops,
		e("create in /dev/shm (private)", func(t Targets) error {
			if t.NoNS {
				return skip("landlock-only mode: /dev/shm is the host's, read-only")
			}
			fd, err := unix.Open("/dev/shm/"+t.ShmName(), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			unix.Write(fd, []byte(t.Marker))
			return unix.Close(fd) // left there: the host must not see it
		}),
		e("kill own child", func(Targets) error {
			pid, err := inChildWait()
			if err != nil {
				return err
			}
			err = unix.Kill(pid, unix.SIGKILL)
			waitChild(pid)
			return err
		}),
		e("pidfd_send_signal own child", func(Targets) error {
			pid, err := inChildWait()
			if err != nil {
				return err
			}
			defer waitChild(pid)
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				unix.Kill(pid, unix.SIGKILL)
				return err
			}
			defer unix.Close(fd)
			if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
				unix.Kill(pid, unix.SIGKILL)
				return err
			}
			return nil
		}),
		e("kill self with signal 0", func(Targets) error { return unix.Kill(unix.Getpid(), 0) }),
		e("write /dev/null", func(Targets) error {
			fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			_, err = unix.Write(fd, []byte("x"))
			return err
		}),
		e("read /dev/urandom", func(Targets) error { b := make([]byte, 8); return readN("/dev/urandom", b) }),
		e("open /dev/tty", func(Targets) error {
			err := openClose("/dev/tty", unix.O_RDWR, 0)
			if err == unix.ENXIO || err == unix.ENOENT {
				return skip("no controlling terminal")
			}
			return err
		}),
		e("open a new pty", func(t Targets) error {
			if t.NoNS {
				return skip("landlock-only mode: /dev/pts is the host's, whose terminals the session may not write")
			}
			m, s, err := openPty()
			if err != nil {
				return err
			}
			unix.Close(s)
			return unix.Close(m)
		}),
		e("read /etc/passwd", func(Targets) error { return readAll("/etc/passwd") }),
		e("read a root-only file as root", func(Targets) error {
			if unix.Getuid() != 0 {
				return skip("not root: the sandbox keeps no capability for a user")
			}
			for _, p := range []string{"/etc/shadow", "/root"} {
				var st unix.Stat_t
				if unix.Stat(p, &st) == nil && st.Mode&0o007 == 0 {
					if st.Mode&unix.S_IFMT == unix.S_IFDIR {
						_, err := os.ReadDir(p)
						return unwrapPathError(err)
					}
					return readAll(p)
				}
			}
			return skip("no root-only file found")
		}),
		e("list /proc", func(Targets) error {
			ents, err := os.ReadDir("/proc")
			if err != nil {
				return unwrapPathError(err)
			}
			if len(ents) < 10 {
				return fmt.Errorf("only %d entries in /proc", len(ents))
			}
			return nil
		}),
		e("read /proc/1/status", func(Targets) error { return readAll("/proc/1/status") }),
		e("see the canary in /proc", func(t Targets) error {
			var st unix.Stat_t
			return unix.Stat(fmt.Sprintf("/proc/%d", t.Pid), &st)
		}),
		e("getpid agrees with /proc/self", func(Targets) error {
			self, err := os.Readlink("/proc/self")
			if err != nil {
				return unwrapPathError(err)
			}
			if self != strconv.Itoa(unix.Getpid()) {
				return fmt.Errorf("getpid() = %d but /proc/self -> %s", unix.Getpid(), self)
			}
			return nil
		}),
		e("read /proc/self/mountinfo", func(Targets) error { return readAll("/proc/self/mountinfo") }),
		e("prlimit self", func(Targets) error {
			var lim unix.Rlimit
			if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
				return err
			}
			return unix.Prlimit(0, unix.RLIMIT_NOFILE, &lim, nil)
		}),
		e("setpriority self (nice +1)", func(Targets) error {
			// Raising one's own nice value never needs privilege; it is
			// per thread here, so only this thread gets nicer.
			prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
			if err != nil {
				return err
			}
			return unix.Setpriority(unix.PRIO_PROCESS, 0, min(19, 20-prio+1))
		}),
		e("sched_setaffinity self", func(Targets) error {
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(0, &set); err != nil {
				return err
			}
			return unix.SchedSetaffinity(0, &set)
		}),
		e("abstract unix socket within the sandbox", func(t Targets) error {
			name := "@ronly-probe-inner-" + t.Marker
			l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(l)
			if err := unix.Bind(l, &unix.SockaddrUnix{Name: name}); err != nil {
				return err
			}
			if err := unix.Listen(l, 1); err != nil {
				return err
			}
			return connectUnix(&unix.SockaddrUnix{Name: name})
		}),
		e("unix socket file in /tmp", func(t Targets) error {
			p := t.Tmp() + "/ronly-probe-" + t.Marker + ".sock"
			l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(l)
			if err := unix.Bind(l, &unix.SockaddrUnix{Name: p}); err != nil {
				return err
			}
			defer unix.Unlink(p)
			if err := unix.Listen(l, 1); err != nil {
				return err
			}
			return connectUnix(&unix.SockaddrUnix{Name: p})
		}),
		e("clone without namespace flags (fork)", func(Targets) error {
			return inChild(sysCall{nr: unix.SYS_GETPID})
		}),
		e("no inherited descriptors above stderr", func(Targets) error {
			ents, err := os.ReadDir("/proc/self/fd")
			if err != nil {
				return unwrapPathError(err)
			}
			// The one descriptor ronly passes on purpose: the write end of
			// the pipe on which shims report refused commands.
			report := os.Getenv(shims.EnvReportFD)
			// Above 2 only the Go runtime's own may be open: its epoll
			// descriptors and the cgroup CPU limit files it keeps open.
			// (ReadDir's descriptor is closed by the time we look.)
			var extra []string
			for _, e := range ents {
				n, _ := strconv.Atoi(e.Name())
				if n <= 2 {
					continue
				}
				target, err := os.Readlink("/proc/self/fd/" + e.Name())
				if err != nil || strings.HasPrefix(target, "anon_inode:") || strings.HasPrefix(target, "/sys/fs/cgroup/") {
					continue
				}
				if e.Name() == report && strings.HasPrefix(target, "pipe:") {
					if fl, err := unix.FcntlInt(uintptr(n), unix.F_GETFL, 0); err == nil && fl&unix.O_ACCMODE == unix.O_WRONLY {
						continue
					}
				}
				extra = append(extra, e.Name()+"->"+target)
			}
			if len(extra) > 0 {
				return fmt.Errorf("open descriptors: %s", strings.Join(extra, " "))
			}
			return nil
		}),
	)
}

func readN(path string, b []byte) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Read(fd, b)
	return err
}
