package writewatch

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Where the kernel has BPF trampolines, a Watch counts with fexit
// programs, one on each write-class syscall's entry function: the kernel
// patches a call into those functions only, so every other syscall on the
// host pays nothing, and a write-class call outside the watched cgroups
// pays a trampoline and the program's first compare. The sys_exit
// tracepoint, by contrast, puts every syscall of every task on the slow
// exit path while it is attached.
//
// The fexit path counts only the calls named here (writeCalls); the
// tracepoint counts any syscall that returns EROFS. A refusal by another
// call (an ioctl that sets inode flags, fallocate) goes uncounted on the
// fexit path.

// ErrNoFexit says the kernel cannot run fexit programs: no BTF, no BPF
// trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS), or a policy that
// refuses tracing programs.
var ErrNoFexit = errors.New("the kernel cannot attach fexit programs")

// writeCalls are the x86_64 syscalls whose EROFS the fexit programs count:
// each call that modifies a file system object by path or by descriptor
// (the operations of ronly_blocked_writes_total), and the access checks,
// which answer EROFS for W_OK on a read-only mount.
var writeCalls = map[string]int{
	"open": unix.SYS_OPEN, "openat": unix.SYS_OPENAT, "openat2": unix.SYS_OPENAT2, "creat": unix.SYS_CREAT,
	"unlink": unix.SYS_UNLINK, "unlinkat": unix.SYS_UNLINKAT, "rmdir": unix.SYS_RMDIR,
	"rename": unix.SYS_RENAME, "renameat": unix.SYS_RENAMEAT, "renameat2": unix.SYS_RENAMEAT2,
	"mkdir": unix.SYS_MKDIR, "mkdirat": unix.SYS_MKDIRAT,
	"link": unix.SYS_LINK, "linkat": unix.SYS_LINKAT, "symlink": unix.SYS_SYMLINK, "symlinkat": unix.SYS_SYMLINKAT,
	"chmod": unix.SYS_CHMOD, "fchmod": unix.SYS_FCHMOD, "fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2,
	"chown": unix.SYS_CHOWN, "fchown": unix.SYS_FCHOWN, "lchown": unix.SYS_LCHOWN, "fchownat": unix.SYS_FCHOWNAT,
	"utime": unix.SYS_UTIME, "utimes": unix.SYS_UTIMES, "utimensat": unix.SYS_UTIMENSAT, "futimesat": unix.SYS_FUTIMESAT,
	"truncate": unix.SYS_TRUNCATE, "ftruncate": unix.SYS_FTRUNCATE,
	"setxattr": unix.SYS_SETXATTR, "lsetxattr": unix.SYS_LSETXATTR, "fsetxattr": unix.SYS_FSETXATTR,
	"removexattr": unix.SYS_REMOVEXATTR, "lremovexattr": unix.SYS_LREMOVEXATTR, "fremovexattr": unix.SYS_FREMOVEXATTR,
	"setxattrat": unix.SYS_SETXATTRAT, "removexattrat": unix.SYS_REMOVEXATTRAT,
	"mknod": unix.SYS_MKNOD, "mknodat": unix.SYS_MKNODAT,
	"access": unix.SYS_ACCESS, "faccessat": unix.SYS_FACCESSAT, "faccessat2": unix.SYS_FACCESSAT2,
	"acct": unix.SYS_ACCT,
}

// ia32Names are i386 entry points whose name is not the x86_64 call's: the
// calls that take a 32-bit time.
var ia32Names = map[string]string{
	"utime32": "utime", "utimes_time32": "utimes", "futimesat_time32": "futimesat", "utimensat_time32": "utimensat",
}

// abiI386Named marks, in a count's key, an i386 call that an fexit program
// counted under the x86_64 number of the same call (it knows which call it
// is by the function it is attached to). The tracepoint's i386 calls (abi
// 1) carry i386 numbers, which name other calls in the x86_64 table.
const abiI386Named = 2

// target is a kernel function an fexit program attaches to.
type target struct {
	fn  string
	nr  int32  // the x86_64 syscall number it is counted under
	abi uint32 // 0, or abiI386Named
	id  uint32 // its BTF id
}

// targets are the functions an fexit Watch attaches to, in a fixed order:
// the x86_64 entry of each write-class call and its i386 one (the compat
// one where the kernel has one: that is the one in the i386 table). Those
// the kernel lacks are left out.
func targets() ([]target, error) {
	var all []target
	for name, nr := range writeCalls {
		all = append(all,
			target{fn: "__x64_sys_" + name, nr: int32(nr)},
			target{fn: "__ia32_sys_" + name, nr: int32(nr), abi: abiI386Named},
			target{fn: "__ia32_compat_sys_" + name, nr: int32(nr), abi: abiI386Named})
	}
	for name, call := range ia32Names {
		all = append(all, target{fn: "__ia32_sys_" + name, nr: int32(writeCalls[call]), abi: abiI386Named})
	}
	names := map[string]bool{}
	for _, t := range all {
		names[t.fn] = true
	}
	ids, err := funcIDs(names)
	if err != nil {
		return nil, err
	}
	var found []target
	for _, t := range all {
		id, ok := ids[t.fn]
		if alt, isSys := strings.CutPrefix(t.fn, "__ia32_sys_"); isSys && ids["__ia32_compat_sys_"+alt] != 0 {
			ok = false // the i386 table has the compat one; this one serves no call
		}
		if ok {
			t.id = id
			found = append(found, t)
		}
	}
	slices.SortFunc(found, func(a, b target) int { return strings.Compare(a.fn, b.fn) })
	return found, nil
}

// fexitPossible answers cheaply whether loading fexit programs can work,
// before the kernel's BTF is read: a load that names no function fails
// with EINVAL where tracing programs may be loaded, and with EPERM where
// they may not (a kernel that refuses them for everyone).
func fexitPossible() error {
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		return fmt.Errorf("%w: no kernel BTF (%v)", ErrNoFexit, err)
	}
	var a asm
	a.MovImm(r0, 0)
	a.Exit()
	insns, err := a.assemble(nil)
	if err != nil {
		return err
	}
	fd, err := loadFexit("ronly_probe", insns, 0)
	if err == nil {
		unix.Close(fd)
	}
	if errors.Is(err, unix.EPERM) && os.Geteuid() == 0 {
		return fmt.Errorf("%w: loading a tracing program fails with %v", ErrNoFexit, err)
	}
	return nil
}

// notSupported says the kernel cannot attach a trampoline: ENOTSUPP
// (524, kernel-internal) or EOPNOTSUPP.
func notSupported(err error) bool {
	return errors.Is(err, syscall.Errno(524)) || errors.Is(err, unix.EOPNOTSUPP)
}

// fexitPrefix names an fexit set's programs after a hash of the program
// and of the function list (another version of ronly has its own); the
// name ends in the number of programs in the set, so that one who joins
// knows when it holds them all: "rof" + 8 hex digits + "n" + 3 digits,
// the 15 bytes a program's name has.
func fexitPrefix() (string, error) {
	insns, err := program(false, &target{}).assemble(make([]int, numMaps))
	if err != nil {
		return "", fmt.Errorf("assemble program: %w", err)
	}
	h := sha256.New()
	h.Write(insns)
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range writeCalls {
			if !yield(n) {
				return
			}
		}
	}) {
		h.Write([]byte(n + "\x00"))
	}
	return fmt.Sprintf("rof%x", h.Sum(nil)[:4]) + "n", nil
}

// attachFexit loads one program per target with the maps w has, and
// attaches them. On failure w holds what it loaded, for release.
func (w *Watch) attachFexit(events bool, prefix string) error {
	if err := fexitPossible(); err != nil {
		return err
	}
	ts, err := targets()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoFexit, err)
	}
	if len(ts) == 0 || len(ts) > 999 {
		return fmt.Errorf("%w: the kernel's BTF names %d of the write-class syscalls' functions", ErrNoFexit, len(ts))
	}
	name := prefix + fmt.Sprintf("%03d", len(ts))
	for _, t := range ts {
		insns, err := program(events, &t).assemble(w.maps[:])
		if err != nil {
			return fmt.Errorf("assemble program: %w", err)
		}
		prog, err := loadFexit(name, insns, t.id)
		if err != nil {
			return fmt.Errorf("%s: %w", t.fn, err)
		}
		w.progs = append(w.progs, prog)
	}
	// Last: attaching is what patches the functions.
	for i, prog := range w.progs {
		link, err := attachRawTracepoint("", prog)
		if err != nil {
			if notSupported(err) {
				err = fmt.Errorf("%w: %v", ErrNoFexit, err)
			}
			return fmt.Errorf("%s: %w", ts[i].fn, err)
		}
		w.links = append(w.links, link)
	}
	w.hook = "fexit"
	return nil
}

// joinFexit takes references to every link of a shared fexit set another
// process attached (its programs named prefix + their number), and to its
// maps. False when there is none, or not all of one (its last holder is
// letting go of it): w then holds nothing.
func (w *Watch) joinFexit(prefix string) bool {
	want := 0
	var mapIDs []uint32
	var links, progs []int
	drop := func() {
		for _, fd := range append(links, progs...) {
			unix.Close(fd)
		}
		links, progs = nil, nil
	}
	for id, err := nextID(unix.BPF_LINK_GET_NEXT_ID, 0); err == nil; id, err = nextID(unix.BPF_LINK_GET_NEXT_ID, id) {
		link, err := fdByID(unix.BPF_LINK_GET_FD_BY_ID, id)
		if err != nil {
			continue // gone since listed
		}
		prog, name, ids, ok := linkProgram(link, unix.BPF_LINK_TYPE_TRACING, len(sharedMaps))
		rest, isOurs := strings.CutPrefix(name, prefix)
		n, err := strconv.Atoi(rest)
		if !ok || !isOurs || err != nil || n <= 0 || (want > 0 && (n != want || !slices.Equal(ids, mapIDs))) {
			if ok {
				unix.Close(prog)
			}
			unix.Close(link)
			continue
		}
		want, mapIDs = n, ids
		links, progs = append(links, link), append(progs, prog)
		if len(links) == want {
			break
		}
	}
	if want == 0 || len(links) != want {
		drop()
		return false
	}
	maps, ok := openMaps(mapIDs)
	if !ok {
		drop()
		return false
	}
	w.links, w.progs, w.maps, w.hook, w.joined = links, progs, maps, "fexit", true
	return true
}

// linkProgram opens the program of link if the link has type typ, with
// its name and the ids of its maps, which must number nMaps.
func linkProgram(link int, typ uint32, nMaps int) (prog int, name string, mapIDs []uint32, ok bool) {
	// struct bpf_link_info: type, id, prog_id.
	li := make([]byte, 64)
	if objInfo(link, li) != nil || binary.LittleEndian.Uint32(li[0:]) != typ {
		return -1, "", nil, false
	}
	prog, err := fdByID(unix.BPF_PROG_GET_FD_BY_ID, binary.LittleEndian.Uint32(li[8:]))
	if err != nil {
		return -1, "", nil, false
	}
	ids, name, err := progMaps(prog, nMaps)
	if err != nil {
		unix.Close(prog)
		return -1, "", nil, false
	}
	return prog, name, ids, true
}
