package writewatch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/writewatch/rawtp"
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
// rawtp reads the same keys.
const abiI386Named = rawtp.ABIi386Named

// vmlinuxBTF is where the kernel describes its own types and functions;
// an fexit program names the function it attaches to by its id there.
const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// target is a kernel function an fexit program attaches to.
type target struct {
	fn  string
	nr  int32  // the x86_64 syscall number it is counted under
	abi uint32 // 0, or abiI386Named
}

// targets are the functions an fexit Watch attaches to, in a fixed order:
// the x86_64 entry of each write-class call and its i386 one (the compat
// one where the kernel has one: that is the one in the i386 table). Those
// the kernel's BTF lacks are left out. kernel is that BTF, which the
// loader then finds each function's id in.
func targets(kernel *btf.Spec) []target {
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
	has := func(fn string) bool {
		var f *btf.Func
		return kernel.TypeByName(fn, &f) == nil // not found, or ambiguous: not attachable by name
	}
	var found []target
	for _, t := range all {
		if alt, isSys := strings.CutPrefix(t.fn, "__ia32_sys_"); isSys && has("__ia32_compat_sys_"+alt) {
			continue // the i386 table has the compat one; this one serves no call
		}
		if has(t.fn) {
			found = append(found, t)
		}
	}
	slices.SortFunc(found, func(a, b target) int { return strings.Compare(a.fn, b.fn) })
	return found
}

// fexitPossible answers cheaply whether loading fexit programs can work,
// before the kernel's BTF is read: a load that names no function fails
// with EINVAL where tracing programs may be loaded, and with EPERM where
// they may not (a kernel that refuses them for everyone).
func fexitPossible() error {
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		return fmt.Errorf("%w: no kernel BTF (%v)", ErrNoFexit, err)
	}
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name: "ronly_probe", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	}, ebpf.ProgramOptions{LogDisabled: true}) // the verdict is in the errno, not worth a second load with a log
	if err == nil {
		prog.Close()
	}
	if errors.Is(err, unix.EPERM) && os.Geteuid() == 0 {
		return fmt.Errorf("%w: loading a tracing program fails with %v", ErrNoFexit, err)
	}
	return nil
}

// fexitPrefix names an fexit set's programs after a hash of the program
// and of the function list (another version of ronly has its own); the
// name ends in the number of programs in the set, so that one who joins
// knows when it holds them all: "rof" + 8 hex digits + "n" + 3 digits,
// the 15 bytes a program's name has.
func fexitPrefix() (string, error) {
	insns, err := program(false, &target{}).encode()
	if err != nil {
		return "", err
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
	// One parse of the kernel's BTF (about 15 ms) serves the target list
	// and every program's load: loaded one by one, each would parse it
	// again.
	cache := btf.NewCache()
	kernel, err := cache.Kernel()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoFexit, err)
	}
	ts := targets(kernel)
	if len(ts) == 0 || len(ts) > 999 {
		return fmt.Errorf("%w: the kernel's BTF names %d of the write-class syscalls' functions", ErrNoFexit, len(ts))
	}
	name := prefix + fmt.Sprintf("%03d", len(ts))
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{}}
	for _, t := range ts {
		insns, err := program(events, &t).instructions(&w.maps)
		if err != nil {
			return fmt.Errorf("%s: %w", t.fn, err)
		}
		spec.Programs[t.fn] = &ebpf.ProgramSpec{Name: name, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit,
			AttachTo: t.fn, License: "GPL", Instructions: insns}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		return loadError(err)
	}
	for _, t := range ts {
		w.progs = append(w.progs, coll.Programs[t.fn]) // the collection holds nothing else
	}
	// Last: attaching is what patches the functions.
	for i, prog := range w.progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFExit})
		if err != nil {
			// ENOTSUPP (524, kernel-internal) or EOPNOTSUPP: the kernel
			// cannot patch the function.
			if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.Errno(524)) || errors.Is(err, unix.EOPNOTSUPP) {
				err = fmt.Errorf("%w: %v", ErrNoFexit, err)
			}
			return fmt.Errorf("attach fexit program to %s: %w", ts[i].fn, err)
		}
		w.links = append(w.links, l)
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
	var mapIDs []ebpf.MapID
	var links []link.Link
	var progs []*ebpf.Program
	drop := func() {
		for _, l := range links {
			l.Close()
		}
		for _, p := range progs {
			p.Close()
		}
		links, progs = nil, nil
	}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		prog, name, ids, ok := linkProgram(it.Link, link.TracingType, len(sharedMaps))
		rest, isOurs := strings.CutPrefix(name, prefix)
		n, err := strconv.Atoi(rest)
		if !ok || !isOurs || err != nil || n <= 0 || (want > 0 && (n != want || !slices.Equal(ids, mapIDs))) {
			if ok {
				prog.Close()
			}
			continue
		}
		want, mapIDs = n, ids
		links, progs = append(links, it.Take()), append(progs, prog)
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

// linkProgram opens the program of l if the link has type typ, with its
// name and the ids of its maps, which must number nMaps.
func linkProgram(l link.Link, typ link.Type, nMaps int) (prog *ebpf.Program, name string, mapIDs []ebpf.MapID, ok bool) {
	li, err := l.Info()
	if err != nil || li.Type != typ {
		return nil, "", nil, false
	}
	prog, err = ebpf.NewProgramFromID(li.Program)
	if err != nil {
		return nil, "", nil, false
	}
	pi, err := prog.Info()
	if err != nil {
		prog.Close()
		return nil, "", nil, false
	}
	ids, _ := pi.MapIDs()
	if len(ids) != nMaps {
		prog.Close()
		return nil, "", nil, false
	}
	return prog, pi.Name, ids, true
}

// detachLater drops this process's references to links (an fexit set)
// without waiting for the kernel to detach them.
//
// Detaching a set's last fexit program from a function unregisters that
// function's trampoline from ftrace, which waits for an RCU Tasks Rude and
// an RCU Tasks grace period while holding ftrace's global lock
// (ftrace_shutdown under unregister_ftrace_function, in 6.1 and 6.12
// alike); each of those grace-period kthreads sleeps HZ/10 between grace
// periods. So the functions are detached one after another, whatever the
// number of threads closing links: about 130 ms each under qemu, 11-13 s
// for the set (closing them from 32 goroutines at once measured the
// same). Waiting for that would keep the helper, and so the last counting
// session, alive that long.
//
// A link pinned in a bpffs instance loses that reference when the
// instance goes, through bpf_link_put, which since 6.5 always leaves the
// detach to a kernel worker (before, only when called in atomic context).
// The instance is a detached mount (fsopen, fsmount) that only this
// process reaches, through its fd; it goes when the fd is closed, or when
// the process dies. What cannot be handed over is closed here, the slow
// way.
//
// Measured under qemu: on 6.12 the helper exits in milliseconds and the
// kernel detaches the set within about 20 s (a set attached meanwhile
// waits for it: attaching takes the same lock). On Debian's 6.1 the
// helper still waited about 11 s in 8 of 9 closes, though every link was
// pinned: there bpf_link_put detaches at once outside atomic context, and
// bpffs drops its references from an RCU callback (atomic) only where the
// stable kernel has not moved that to destroy_inode (process context), as
// recent kernels do. No worse than closing the links.
//
// It returns how many links it handed over.
func detachLater(links []link.Link) (int, error) {
	handed := 0
	mnt, err := privateBPFFS()
	if err == nil {
		// Last, after the links' own fds: then the pins hold the only
		// references.
		defer unix.Close(mnt)
	}
	var errs []error
	for i, l := range links {
		if err == nil {
			// The fd's /proc link leads to the instance's root.
			if err = l.Pin(fmt.Sprintf("/proc/self/fd/%d/%d", mnt, i)); err == nil {
				handed++
			}
		}
		errs = append(errs, l.Close())
	}
	return handed, errors.Join(errs...)
}

// privateBPFFS makes a bpffs instance mounted nowhere and returns its
// mount's fd.
func privateBPFFS() (int, error) {
	fs, err := unix.Fsopen("bpf", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen bpf: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create bpffs: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount bpffs: %w", err)
	}
	return mnt, nil
}
