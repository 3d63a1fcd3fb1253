package probe

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func connectUnix(addr *unix.SockaddrUnix) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(fd)
	return unix.Connect(fd, addr)
}

func socketOp(domain, typ, proto int) error {
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// openPty opens a new pty pair in the sandbox's devpts.
func openPty() (master, slave int, err error) {
	master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, err
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(master)
		return -1, -1, err
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		unix.Close(master)
		return -1, -1, err
	}
	slave, err = unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(master)
		return -1, -1, err
	}
	return master, slave, nil
}

// ptyIoctl makes request (a full 64-bit word, as an attacker would pass it)
// on the slave side of a fresh pty.
func ptyIoctl(request uint64) error {
	m, s, err := openPty()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer unix.Close(m)
	defer unix.Close(s)
	c := byte('#')
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(s), uintptr(request), uintptr(unsafe.Pointer(&c)))
	return errnoOrNil(e)
}

func netHostile() []Op {
	h := func(name string, want []unix.Errno, run func(t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Run: run, Want: want}
	}
	return []Op{
		h("connect hidden unix socket under /run", []unix.Errno{unix.ECONNREFUSED, unix.EACCES, unix.ENOENT, unix.EPERM}, func(t Targets) error {
			return connectUnix(&unix.SockaddrUnix{Name: t.Socket})
		}),
		h("connect hidden socket via /proc/<canary>/root", []unix.Errno{unix.EACCES, unix.ENOENT, unix.EPERM}, func(t Targets) error {
			return connectUnix(&unix.SockaddrUnix{Name: fmt.Sprintf("/proc/%d/root%s", t.Pid, t.Socket)})
		}),
		h("connect hidden socket via /proc/<parent>/root", []unix.Errno{unix.EACCES, unix.ENOENT, unix.EPERM}, func(t Targets) error {
			return withParent(func(ppid int) error {
				return connectUnix(&unix.SockaddrUnix{Name: fmt.Sprintf("/proc/%d/root%s", ppid, t.Socket)})
			})
		}),
		h("connect host abstract unix socket", []unix.Errno{unix.EPERM, unix.EACCES, unix.ECONNREFUSED}, func(t Targets) error {
			return connectUnix(&unix.SockaddrUnix{Name: "@" + t.Abstract})
		}),
		h("raw socket AF_INET", wantPerm, func(Targets) error { return socketOp(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP) }),
		h("raw socket AF_PACKET", wantPerm, func(Targets) error {
			return socketOp(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		}),
		h("TIOCSTI on a pty", wantPerm, func(Targets) error { return ptyIoctl(unix.TIOCSTI) }),
		h("TIOCSTI with high bits set (CVE-2019-10063)", wantPerm, func(Targets) error { return ptyIoctl(1<<32 | unix.TIOCSTI) }),
		h("TIOCLINUX on a pty", wantPerm, func(Targets) error { return ptyIoctl(unix.TIOCLINUX) }),
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
