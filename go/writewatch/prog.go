package writewatch

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The program runs at the sys_exit raw tracepoint, i.e. after every syscall
// of every task on the host, so the common case (any result but -EROFS) is
// two instructions before the exit: a load of the return value and a compare.

// Helper ids (enum bpf_func_id).
const (
	fnMapLookupElem           = 1
	fnMapUpdateElem           = 2
	fnKtimeGetNs              = 5
	fnGetCurrentPidTgid       = 14
	fnGetCurrentComm          = 16
	fnGetCurrentTask          = 35
	fnGetCurrentCgroupID      = 80
	fnGetCurrentAncestorCgrID = 123
	fnProbeReadKernel         = 113
	fnProbeReadUserStr        = 114
	fnRingbufOutput           = 130
	fnRingbufQuery            = 134
)

// Kernel layout this program reads with bpf_probe_read_kernel. Checked
// against /sys/kernel/btf/vmlinux of 6.18 x86_64; pt_regs has had this shape
// for as long as x86_64 has existed, thread_info since 5.11 (syscall_work).
const (
	ptRegsOrigAX      = 120 // offsetof(struct pt_regs, orig_ax)
	ptRegsDI          = 112 // the first argument of an x86_64 syscall
	ptRegsSI          = 104 // the second
	ptRegsDX          = 96  // the third
	ptRegsR10         = 56  // the fourth
	taskThreadInfo    = 0   // thread_info is the first member of task_struct
	threadInfoStatus  = 16  // offsetof(struct thread_info, status)
	tsCompat          = 2   // TS_COMPAT: the current syscall is an i386 one
	errEROFS          = -30
	errEEXIST         = -17
	maxAncestorLevels = 16 // watched cgroups below the root deeper than this count only their own tasks
	wakeAt            = ringSize / 4
)

// Maps, by index into the fd list given to assemble.
const (
	mapSessions = iota // u64 cgroup id -> u32 1
	mapCounts          // countKey -> u64
	mapEvents          // ring buffer of event records
	mapDropped         // array: [0] events lost (ring full), [1] counts lost (counts full)
	mapPaths           // array: x86_64 syscall number -> u32 pt_regs offset of its path argument, 0: none
	numMaps
)

// Stack frame. The event record starts with the counts key (cgroup id,
// number, ABI), and its first 8 bytes are also the sessions key. The path
// follows the fixed part; only as many of its bytes as the string has
// (with its NUL, none without a path) go into the ring buffer.
const (
	fpEvent    = -(recordLen + pathMax) // struct record, up to the frame pointer
	fpCgroup   = fpEvent + 0
	fpNr       = fpEvent + 8
	fpABI      = fpEvent + 12
	fpTime     = fpEvent + 16
	fpPID      = fpEvent + 24
	fpPad      = fpEvent + 28
	fpComm     = fpEvent + 32 // 16 bytes
	fpPath     = fpEvent + recordLen
	fpScratch  = fpEvent - 8
	fpAncestor = fpEvent - 16
	recordLen  = 48  // the fixed part of a record
	pathMax    = 256 // bytes for the path, with its NUL: longer ones are cut at 255
	keyLen     = 16  // bytes of the record that form the counts key
	maxNr      = 512 // entries of the paths map: above every x86_64 syscall number
)

// program is the sys_exit raw tracepoint program (fx nil), or the fexit
// program of the function fx. Either way ctx (r1) is u64 args[2]: args[0]
// the struct pt_regs * of the syscall, args[1] its return value (a raw
// tracepoint's arguments; the one argument of a __x64_sys_* or
// __ia32_sys_* function, then its return value). Without events it only
// counts, and uses only the sessions, counts and dropped maps: that one is
// shared by every Watch on the host.
func program(events bool, fx *target) *asm {
	var a asm

	// Fast path: anything but -EROFS leaves at once.
	a.Load64(r2, r1, 8)
	a.JumpImm(jmpJNE, r2, errEROFS, "out")
	a.MovReg(r6, r1)

	// Is the task in a watched cgroup? Most often its own cgroup is.
	a.Call(fnGetCurrentCgroupID)
	a.Store64(r10, fpCgroup, r0)
	a.LoadMap(r1, mapSessions)
	a.MovReg(r2, r10)
	a.AddImm(r2, fpCgroup)
	a.Call(fnMapLookupElem)
	a.JumpImm(jmpJNE, r0, 0, "watched")

	// Or below one? Walk its ancestors from the top of the hierarchy down
	// to its own level (the helper returns 0 past it), so a task in the
	// root cgroup costs one call; the deepest watched ancestor wins and its
	// id goes to fpCgroup. r7 (kept across calls) says whether one did.
	a.MovImm(r7, 0)
	for level := int32(1); level <= maxAncestorLevels; level++ {
		next := fmt.Sprintf("level%d", level)
		a.MovImm(r1, level)
		a.Call(fnGetCurrentAncestorCgrID)
		a.JumpImm(jmpJEQ, r0, 0, "scanned")
		a.Store64(r10, fpAncestor, r0)
		a.LoadMap(r1, mapSessions)
		a.MovReg(r2, r10)
		a.AddImm(r2, fpAncestor)
		a.Call(fnMapLookupElem)
		a.JumpImm(jmpJEQ, r0, 0, next)
		a.Load64(r1, r10, fpAncestor)
		a.Store64(r10, fpCgroup, r1)
		a.MovImm(r7, 1)
		a.Label(next)
	}
	a.Label("scanned")
	a.JumpImm(jmpJEQ, r7, 0, "out")

	a.Label("watched")
	if fx != nil {
		// The function says which call it is, and with which ABI.
		a.MovImm(r1, fx.nr)
		a.Store32(r10, fpNr, r1)
		a.StoreImm32(r10, fpABI, int32(fx.abi))
	} else {
		syscallNumber(&a)
	}
	if events {
		sendEvent(&a, fx)
	}

	a.Label("count")
	increment(&a, mapCounts, fpEvent, "create", "out")

	// First refusal of this call in this cgroup. Another CPU may create the
	// entry between our lookup and update: then add to theirs.
	a.Label("create")
	a.StoreImm64(r10, fpScratch, 1)
	a.LoadMap(r1, mapCounts)
	a.MovReg(r2, r10)
	a.AddImm(r2, fpEvent)
	a.MovReg(r3, r10)
	a.AddImm(r3, fpScratch)
	a.MovImm(r4, 1) // BPF_NOEXIST
	a.Call(fnMapUpdateElem)
	a.JumpImm(jmpJEQ, r0, 0, "out")
	a.JumpImm(jmpJNE, r0, errEEXIST, "full")
	increment(&a, mapCounts, fpEvent, "out", "out")

	a.Label("full")
	dropped(&a, 1, "out")

	a.Label("out")
	a.MovImm(r0, 0)
	a.Exit()
	return &a
}

// syscallNumber stores, for the tracepoint's program, the call's number
// and ABI in the record, or leaves for "out".
func syscallNumber(a *asm) {
	// Syscall number: regs->orig_ax. -1 if it cannot be read (it always
	// can). rt_sigreturn leaves orig_ax at -1 and returns whatever the
	// interrupted code's rax held: after a signal that arrived just as a
	// refused call returned, that is -EROFS again. Not a refusal: skipped.
	a.MovReg(r1, r10)
	a.AddImm(r1, fpScratch)
	a.MovImm(r2, 8)
	a.Load64(r3, r6, 0)
	a.AddImm(r3, ptRegsOrigAX)
	a.Call(fnProbeReadKernel)
	a.Load64(r1, r10, fpScratch)
	a.JumpImm(jmpJEQ, r0, 0, "nr")
	a.MovImm(r1, -1)
	a.Label("nr")
	a.JumpImm(jmpJEQ, r1, -1, "out")
	a.Store32(r10, fpNr, r1)

	// ABI: an i386 syscall (32-bit task, or int $0x80 from a 64-bit one)
	// numbers calls differently; TS_COMPAT is still set at sys_exit.
	a.Call(fnGetCurrentTask)
	a.MovReg(r3, r0)
	a.AddImm(r3, taskThreadInfo+threadInfoStatus)
	a.MovReg(r1, r10)
	a.AddImm(r1, fpScratch)
	a.MovImm(r2, 4)
	a.Call(fnProbeReadKernel) // zeroes the buffer on failure: counted as x86_64
	a.Load32(r1, r10, fpScratch)
	a.AndImm(r1, tsCompat)
	a.RshImm(r1, 1)
	a.Store32(r10, fpABI, r1)
}

// sendEvent fills the rest of the event record, reads the path and sends
// the record through the ring buffer, then goes on to count.
func sendEvent(a *asm, fx *target) {
	a.Call(fnKtimeGetNs)
	a.Store64(r10, fpTime, r0)
	a.Call(fnGetCurrentPidTgid)
	a.RshImm(r0, 32)
	a.Store32(r10, fpPID, r0)
	a.StoreImm32(r10, fpPad, 0)
	a.MovReg(r1, r10)
	a.AddImm(r1, fpComm)
	a.MovImm(r2, 16)
	a.Call(fnGetCurrentComm)

	// The path the call named, for the audit log only: it is read after
	// the kernel refused the call, from the caller's memory, which the
	// caller may have changed since. Which argument holds it depends on
	// the call (pathArgs): the paths map gives its pt_regs offset, 0 for
	// none; numbers past the map (x32, unreadable) and i386 calls have
	// none. r7 (kept across calls) is the path's length with its NUL, 0
	// for no path; a failed read (bad or NULL pointer) leaves none.
	a.MovImm(r7, 0)
	if fx != nil {
		// An fexit program knows its call: the argument is read straight
		// from the struct pt_regs its function was given (the verifier
		// knows its type from BTF).
		off, ok := pathArgs[int(fx.nr)]
		if !ok || fx.abi != 0 {
			sendRecord(a) // none: the read below would be unreachable, which the verifier refuses
			return
		}
		a.Load64(r1, r6, 0)
		a.Load64(r3, r1, int16(off))
		a.JumpImm(jmpJEQ, r3, 0, "send")
	} else {
		a.Load32(r1, r10, fpABI)
		a.JumpImm(jmpJNE, r1, 0, "send")
		a.LoadMap(r1, mapPaths)
		a.MovReg(r2, r10)
		a.AddImm(r2, fpNr)
		a.Call(fnMapLookupElem)
		a.JumpImm(jmpJEQ, r0, 0, "send")
		a.Load32(r3, r0, 0)
		a.JumpImm(jmpJEQ, r3, 0, "send")
		a.Load64(r1, r6, 0)
		a.AddReg(r3, r1)
		a.MovReg(r1, r10)
		a.AddImm(r1, fpScratch)
		a.MovImm(r2, 8)
		a.Call(fnProbeReadKernel)
		a.JumpImm(jmpJNE, r0, 0, "send")
		a.Load64(r3, r10, fpScratch)
		a.JumpImm(jmpJEQ, r3, 0, "send")
	}
	a.MovReg(r1, r10)
	a.AddImm(r1, fpPath)
	a.MovImm(r2, pathMax)
	a.Call(fnProbeReadUserStr) // length with the NUL, or < 0
	a.JumpImm(jmpJSLE, r0, 0, "send")
	a.MovReg(r7, r0)
	a.JumpImm(jmpJLE, r7, pathMax, "send")
	a.MovImm(r7, pathMax) // cannot happen; bounds the size for the verifier
	sendRecord(a)
}

// sendRecord sends the record, with r7 bytes of path, through the ring
// buffer, then goes on to count.
func sendRecord(a *asm) {
	a.Label("send")
	a.AddImm(r7, recordLen)

	// Event first, count second: once a count is visible, so is its event,
	// which lets Remove drain the ring before it reads the counts.
	// Waking the reader for each record costs an irq_work (a self-IPI,
	// which a VM pays with an exit) per refusal: a refused mkdirat in a
	// watched cgroup took 7 µs instead of 3.5. Wake it only once the ring
	// is a quarter full; it reads on a timer otherwise.
	a.LoadMap(r1, mapEvents)
	a.MovImm(r2, 0) // BPF_RB_AVAIL_DATA
	a.Call(fnRingbufQuery)
	a.MovImm(r4, 1) // BPF_RB_NO_WAKEUP
	a.JumpImm(jmpJLT, r0, wakeAt, "output")
	a.MovImm(r4, 2) // BPF_RB_FORCE_WAKEUP
	a.Label("output")
	a.LoadMap(r1, mapEvents)
	a.MovReg(r2, r10)
	a.AddImm(r2, fpEvent)
	a.MovReg(r3, r7)
	a.Call(fnRingbufOutput)
	a.JumpImm(jmpJEQ, r0, 0, "count")
	dropped(a, 0, "count")
}

// dropped adds one to slot i of the dropped array, then goes to next.
func dropped(a *asm, i int32, next string) {
	a.StoreImm32(r10, fpScratch, i)
	increment(a, mapDropped, fpScratch, next, next)
}

// increment adds 1, atomically, to the u64 that map m holds under the key
// at the frame offset key, then goes to next; to missing when there is no
// such entry.
func increment(a *asm, m int, key int32, missing, next string) {
	a.LoadMap(r1, m)
	a.MovReg(r2, r10)
	a.AddImm(r2, key)
	a.Call(fnMapLookupElem)
	a.JumpImm(jmpJEQ, r0, 0, missing)
	a.MovImm(r1, 1)
	a.AtomicAdd64(r0, 0, r1)
	a.Jump(next)
}

// pathArgs says which argument of an x86_64 syscall that can return EROFS
// names the path it would modify: the pt_regs offset of that argument, for
// the paths map. Calls that modify a file by descriptor (fchmod, ftruncate,
// fsetxattr, write…) have none, and neither do those that take a path
// inside a structure (bind of a unix socket) or none at all. For renames
// it is the old path (it is removed; renameat2 with RENAME_EXCHANGE
// modifies both); for links and symlinks the new one, where the link would
// be made.
var pathArgs = map[int]uint32{
	// The path is the first argument.
	unix.SYS_OPEN:         ptRegsDI,
	unix.SYS_CREAT:        ptRegsDI,
	unix.SYS_UNLINK:       ptRegsDI,
	unix.SYS_RMDIR:        ptRegsDI,
	unix.SYS_MKDIR:        ptRegsDI,
	unix.SYS_RENAME:       ptRegsDI,
	unix.SYS_TRUNCATE:     ptRegsDI,
	unix.SYS_CHMOD:        ptRegsDI,
	unix.SYS_CHOWN:        ptRegsDI,
	unix.SYS_LCHOWN:       ptRegsDI,
	unix.SYS_UTIME:        ptRegsDI,
	unix.SYS_UTIMES:       ptRegsDI,
	unix.SYS_SETXATTR:     ptRegsDI,
	unix.SYS_LSETXATTR:    ptRegsDI,
	unix.SYS_REMOVEXATTR:  ptRegsDI,
	unix.SYS_LREMOVEXATTR: ptRegsDI,
	unix.SYS_MKNOD:        ptRegsDI,
	unix.SYS_ACCESS:       ptRegsDI, // W_OK on a read-only mount: EROFS
	unix.SYS_ACCT:         ptRegsDI,

	// The second, after a directory fd (relative paths are relative to it).
	unix.SYS_OPENAT:        ptRegsSI,
	unix.SYS_OPENAT2:       ptRegsSI,
	unix.SYS_UNLINKAT:      ptRegsSI,
	unix.SYS_MKDIRAT:       ptRegsSI,
	unix.SYS_MKNODAT:       ptRegsSI,
	unix.SYS_RENAMEAT:      ptRegsSI,
	unix.SYS_RENAMEAT2:     ptRegsSI,
	unix.SYS_FCHMODAT:      ptRegsSI,
	unix.SYS_FCHMODAT2:     ptRegsSI,
	unix.SYS_FCHOWNAT:      ptRegsSI,
	unix.SYS_UTIMENSAT:     ptRegsSI, // NULL for futimens: no path
	unix.SYS_FUTIMESAT:     ptRegsSI,
	unix.SYS_FACCESSAT:     ptRegsSI,
	unix.SYS_FACCESSAT2:    ptRegsSI,
	unix.SYS_SETXATTRAT:    ptRegsSI,
	unix.SYS_REMOVEXATTRAT: ptRegsSI,

	// Links: where the new name would be.
	unix.SYS_LINK:      ptRegsSI,  // link(old, new)
	unix.SYS_SYMLINK:   ptRegsSI,  // symlink(target, linkpath)
	unix.SYS_SYMLINKAT: ptRegsDX,  // symlinkat(target, newdirfd, linkpath)
	unix.SYS_LINKAT:    ptRegsR10, // linkat(olddirfd, old, newdirfd, new, flags)
}
