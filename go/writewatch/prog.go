package writewatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The program runs at the sys_exit raw tracepoint, i.e. after every syscall
// of every task on the host, so the common case (any result but -EROFS) is
// two instructions before the exit: a load of the return value and a compare.

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

// Maps, by index into Watch.maps.
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

// builder collects a program's instructions with labels placed before the
// instruction they name, so that the program reads top to bottom; jumps
// name their label, which the library resolves to an offset when it
// encodes the program. The library gives an instruction one symbol: a
// second label on the same instruction becomes an alias of the first.
type builder struct {
	insns   asm.Instructions
	pending []string
	alias   map[string]string
}

// Label names the next instruction.
func (a *builder) Label(name string) { a.pending = append(a.pending, name) }

func (a *builder) emit(ins asm.Instruction) {
	if len(a.pending) > 0 {
		ins = ins.WithSymbol(a.pending[0])
		for _, l := range a.pending[1:] {
			if a.alias == nil {
				a.alias = map[string]string{}
			}
			a.alias[l] = a.pending[0]
		}
		a.pending = nil
	}
	a.insns = append(a.insns, ins)
}

// jump: if dst op imm goto label (64-bit compare, imm sign-extended).
func (a *builder) jump(op asm.JumpOp, dst asm.Register, imm int32, label string) {
	a.emit(op.Imm(dst, imm, label))
}

// loadMap puts map m in dst: the map's name until instructions binds it.
func (a *builder) loadMap(dst asm.Register, m int) {
	a.emit(asm.LoadMapPtr(dst, 0).WithReference(mapSpecs[m].Name))
}

// symbol is the symbol the library knows label by.
func (a *builder) symbol(label string) string {
	if s, ok := a.alias[label]; ok {
		return s
	}
	return label
}

// instructions returns a copy of the program with its jumps aimed at the
// labels' symbols and, with maps, its map loads bound to those maps;
// without, each map load keeps its name and a zero fd (for hashing).
func (a *builder) instructions(maps *[numMaps]*ebpf.Map) (asm.Instructions, error) {
	if len(a.pending) > 0 {
		return nil, fmt.Errorf("labels %q at the end of the program", a.pending)
	}
	insns := slices.Clone(a.insns)
	for i := range insns {
		ins := &insns[i]
		ref := ins.Reference()
		if ref == "" {
			continue
		}
		if !ins.IsLoadFromMap() {
			*ins = ins.WithReference(a.symbol(ref))
			continue
		}
		if maps == nil {
			continue
		}
		m := slices.IndexFunc(mapSpecs[:], func(s ebpf.MapSpec) bool { return s.Name == ref })
		if m < 0 || maps[m] == nil {
			return nil, fmt.Errorf("program uses map %s, which it was not given", ref)
		}
		if err := ins.AssociateMap(maps[m]); err != nil {
			return nil, fmt.Errorf("map %s: %w", ref, err)
		}
	}
	return insns, nil
}

// encode returns the program's bytes, map fds zero: what its name is a
// hash of.
func (a *builder) encode() ([]byte, error) {
	insns, err := a.instructions(nil)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := insns.Marshal(&b, binary.LittleEndian); err != nil {
		return nil, fmt.Errorf("encode program: %w", err)
	}
	return b.Bytes(), nil
}

// program is the sys_exit raw tracepoint program (fx nil), or the fexit
// program of the function fx. Either way ctx (r1) is u64 args[2]: args[0]
// the struct pt_regs * of the syscall, args[1] its return value (a raw
// tracepoint's arguments; the one argument of a __x64_sys_* or
// __ia32_sys_* function, then its return value). Without events it only
// counts, and uses only the sessions, counts and dropped maps: that one is
// shared by every Watch on the host.
func program(events bool, fx *target) *builder {
	var a builder

	// Fast path: anything but -EROFS leaves at once.
	a.emit(asm.LoadMem(asm.R2, asm.R1, 8, asm.DWord))
	a.jump(asm.JNE, asm.R2, errEROFS, "out")
	a.emit(asm.Mov.Reg(asm.R6, asm.R1))

	// Is the task in a watched cgroup? Most often its own cgroup is.
	a.emit(asm.FnGetCurrentCgroupId.Call())
	a.emit(asm.StoreMem(asm.R10, fpCgroup, asm.R0, asm.DWord))
	a.loadMap(asm.R1, mapSessions)
	a.emit(asm.Mov.Reg(asm.R2, asm.R10))
	a.emit(asm.Add.Imm(asm.R2, fpCgroup))
	a.emit(asm.FnMapLookupElem.Call())
	a.jump(asm.JNE, asm.R0, 0, "watched")

	// Or below one? Walk its ancestors from the top of the hierarchy down
	// to its own level (the helper returns 0 past it), so a task in the
	// root cgroup costs one call; the deepest watched ancestor wins and its
	// id goes to fpCgroup. r7 (kept across calls) says whether one did.
	a.emit(asm.Mov.Imm(asm.R7, 0))
	for level := int32(1); level <= maxAncestorLevels; level++ {
		next := fmt.Sprintf("level%d", level)
		a.emit(asm.Mov.Imm(asm.R1, level))
		a.emit(asm.FnGetCurrentAncestorCgroupId.Call())
		a.jump(asm.JEq, asm.R0, 0, "scanned")
		a.emit(asm.StoreMem(asm.R10, fpAncestor, asm.R0, asm.DWord))
		a.loadMap(asm.R1, mapSessions)
		a.emit(asm.Mov.Reg(asm.R2, asm.R10))
		a.emit(asm.Add.Imm(asm.R2, fpAncestor))
		a.emit(asm.FnMapLookupElem.Call())
		a.jump(asm.JEq, asm.R0, 0, next)
		a.emit(asm.LoadMem(asm.R1, asm.R10, fpAncestor, asm.DWord))
		a.emit(asm.StoreMem(asm.R10, fpCgroup, asm.R1, asm.DWord))
		a.emit(asm.Mov.Imm(asm.R7, 1))
		a.Label(next)
	}
	a.Label("scanned")
	a.jump(asm.JEq, asm.R7, 0, "out")

	a.Label("watched")
	if fx != nil {
		// The function says which call it is, and with which ABI.
		a.emit(asm.Mov.Imm(asm.R1, fx.nr))
		a.emit(asm.StoreMem(asm.R10, fpNr, asm.R1, asm.Word))
		a.emit(asm.StoreImm(asm.R10, fpABI, int64(fx.abi), asm.Word))
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
	// *(u64 *)(r10 + fpScratch) = 1, the 32-bit immediate sign-extended:
	// the kernel takes it, the library's StoreImm refuses DWord.
	a.emit(asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: asm.R10, Offset: fpScratch, Constant: 1})
	a.loadMap(asm.R1, mapCounts)
	a.emit(asm.Mov.Reg(asm.R2, asm.R10))
	a.emit(asm.Add.Imm(asm.R2, fpEvent))
	a.emit(asm.Mov.Reg(asm.R3, asm.R10))
	a.emit(asm.Add.Imm(asm.R3, fpScratch))
	a.emit(asm.Mov.Imm(asm.R4, 1)) // BPF_NOEXIST
	a.emit(asm.FnMapUpdateElem.Call())
	a.jump(asm.JEq, asm.R0, 0, "out")
	a.jump(asm.JNE, asm.R0, errEEXIST, "full")
	increment(&a, mapCounts, fpEvent, "out", "out")

	a.Label("full")
	dropped(&a, 1, "out")

	a.Label("out")
	a.emit(asm.Mov.Imm(asm.R0, 0))
	a.emit(asm.Return())
	return &a
}

// syscallNumber stores, for the tracepoint's program, the call's number
// and ABI in the record, or leaves for "out".
func syscallNumber(a *builder) {
	// Syscall number: regs->orig_ax. -1 if it cannot be read (it always
	// can). rt_sigreturn leaves orig_ax at -1 and returns whatever the
	// interrupted code's rax held: after a signal that arrived just as a
	// refused call returned, that is -EROFS again. Not a refusal: skipped.
	a.emit(asm.Mov.Reg(asm.R1, asm.R10))
	a.emit(asm.Add.Imm(asm.R1, fpScratch))
	a.emit(asm.Mov.Imm(asm.R2, 8))
	a.emit(asm.LoadMem(asm.R3, asm.R6, 0, asm.DWord))
	a.emit(asm.Add.Imm(asm.R3, ptRegsOrigAX))
	a.emit(asm.FnProbeReadKernel.Call())
	a.emit(asm.LoadMem(asm.R1, asm.R10, fpScratch, asm.DWord))
	a.jump(asm.JEq, asm.R0, 0, "nr")
	a.emit(asm.Mov.Imm(asm.R1, -1))
	a.Label("nr")
	a.jump(asm.JEq, asm.R1, -1, "out")
	a.emit(asm.StoreMem(asm.R10, fpNr, asm.R1, asm.Word))

	// ABI: an i386 syscall (32-bit task, or int $0x80 from a 64-bit one)
	// numbers calls differently; TS_COMPAT is still set at sys_exit.
	a.emit(asm.FnGetCurrentTask.Call())
	a.emit(asm.Mov.Reg(asm.R3, asm.R0))
	a.emit(asm.Add.Imm(asm.R3, taskThreadInfo+threadInfoStatus))
	a.emit(asm.Mov.Reg(asm.R1, asm.R10))
	a.emit(asm.Add.Imm(asm.R1, fpScratch))
	a.emit(asm.Mov.Imm(asm.R2, 4))
	a.emit(asm.FnProbeReadKernel.Call()) // zeroes the buffer on failure: counted as x86_64
	a.emit(asm.LoadMem(asm.R1, asm.R10, fpScratch, asm.Word))
	a.emit(asm.And.Imm(asm.R1, tsCompat))
	a.emit(asm.RSh.Imm(asm.R1, 1))
	a.emit(asm.StoreMem(asm.R10, fpABI, asm.R1, asm.Word))
}

// sendEvent fills the rest of the event record, reads the path and sends
// the record through the ring buffer, then goes on to count.
func sendEvent(a *builder, fx *target) {
	a.emit(asm.FnKtimeGetNs.Call())
	a.emit(asm.StoreMem(asm.R10, fpTime, asm.R0, asm.DWord))
	a.emit(asm.FnGetCurrentPidTgid.Call())
	a.emit(asm.RSh.Imm(asm.R0, 32))
	a.emit(asm.StoreMem(asm.R10, fpPID, asm.R0, asm.Word))
	a.emit(asm.StoreImm(asm.R10, fpPad, 0, asm.Word))
	a.emit(asm.Mov.Reg(asm.R1, asm.R10))
	a.emit(asm.Add.Imm(asm.R1, fpComm))
	a.emit(asm.Mov.Imm(asm.R2, 16))
	a.emit(asm.FnGetCurrentComm.Call())

	// The path the call named, for the audit log only: it is read after
	// the kernel refused the call, from the caller's memory, which the
	// caller may have changed since. Which argument holds it depends on
	// the call (pathArgs): the paths map gives its pt_regs offset, 0 for
	// none; numbers past the map (x32, unreadable) and i386 calls have
	// none. r7 (kept across calls) is the path's length with its NUL, 0
	// for no path; a failed read (bad or NULL pointer) leaves none.
	a.emit(asm.Mov.Imm(asm.R7, 0))
	if fx != nil {
		// An fexit program knows its call: the argument is read straight
		// from the struct pt_regs its function was given (the verifier
		// knows its type from BTF).
		off, ok := pathArgs[int(fx.nr)]
		if !ok || fx.abi != 0 {
			sendRecord(a) // none: the read below would be unreachable, which the verifier refuses
			return
		}
		a.emit(asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord))
		a.emit(asm.LoadMem(asm.R3, asm.R1, int16(off), asm.DWord))
		a.jump(asm.JEq, asm.R3, 0, "send")
	} else {
		a.emit(asm.LoadMem(asm.R1, asm.R10, fpABI, asm.Word))
		a.jump(asm.JNE, asm.R1, 0, "send")
		a.loadMap(asm.R1, mapPaths)
		a.emit(asm.Mov.Reg(asm.R2, asm.R10))
		a.emit(asm.Add.Imm(asm.R2, fpNr))
		a.emit(asm.FnMapLookupElem.Call())
		a.jump(asm.JEq, asm.R0, 0, "send")
		a.emit(asm.LoadMem(asm.R3, asm.R0, 0, asm.Word))
		a.jump(asm.JEq, asm.R3, 0, "send")
		a.emit(asm.LoadMem(asm.R1, asm.R6, 0, asm.DWord))
		a.emit(asm.Add.Reg(asm.R3, asm.R1))
		a.emit(asm.Mov.Reg(asm.R1, asm.R10))
		a.emit(asm.Add.Imm(asm.R1, fpScratch))
		a.emit(asm.Mov.Imm(asm.R2, 8))
		a.emit(asm.FnProbeReadKernel.Call())
		a.jump(asm.JNE, asm.R0, 0, "send")
		a.emit(asm.LoadMem(asm.R3, asm.R10, fpScratch, asm.DWord))
		a.jump(asm.JEq, asm.R3, 0, "send")
	}
	a.emit(asm.Mov.Reg(asm.R1, asm.R10))
	a.emit(asm.Add.Imm(asm.R1, fpPath))
	a.emit(asm.Mov.Imm(asm.R2, pathMax))
	a.emit(asm.FnProbeReadUserStr.Call()) // length with the NUL, or < 0
	a.jump(asm.JSLE, asm.R0, 0, "send")
	a.emit(asm.Mov.Reg(asm.R7, asm.R0))
	a.jump(asm.JLE, asm.R7, pathMax, "send")
	a.emit(asm.Mov.Imm(asm.R7, pathMax)) // cannot happen; bounds the size for the verifier
	sendRecord(a)
}

// sendRecord sends the record, with r7 bytes of path, through the ring
// buffer, then goes on to count.
func sendRecord(a *builder) {
	a.Label("send")
	a.emit(asm.Add.Imm(asm.R7, recordLen))

	// Event first, count second: once a count is visible, so is its event,
	// which lets Remove drain the ring before it reads the counts.
	// Waking the reader for each record costs an irq_work (a self-IPI,
	// which a VM pays with an exit) per refusal: a refused mkdirat in a
	// watched cgroup took 7 µs instead of 3.5. Wake it only once the ring
	// is a quarter full; it reads on a timer otherwise.
	a.loadMap(asm.R1, mapEvents)
	a.emit(asm.Mov.Imm(asm.R2, 0)) // BPF_RB_AVAIL_DATA
	a.emit(asm.FnRingbufQuery.Call())
	a.emit(asm.Mov.Imm(asm.R4, 1)) // BPF_RB_NO_WAKEUP
	a.jump(asm.JLT, asm.R0, wakeAt, "output")
	a.emit(asm.Mov.Imm(asm.R4, 2)) // BPF_RB_FORCE_WAKEUP
	a.Label("output")
	a.loadMap(asm.R1, mapEvents)
	a.emit(asm.Mov.Reg(asm.R2, asm.R10))
	a.emit(asm.Add.Imm(asm.R2, fpEvent))
	a.emit(asm.Mov.Reg(asm.R3, asm.R7))
	a.emit(asm.FnRingbufOutput.Call())
	a.jump(asm.JEq, asm.R0, 0, "count")
	dropped(a, 0, "count")
}

// dropped adds one to slot i of the dropped array, then goes to next.
func dropped(a *builder, i int32, next string) {
	a.emit(asm.StoreImm(asm.R10, fpScratch, int64(i), asm.Word))
	increment(a, mapDropped, fpScratch, next, next)
}

// increment adds 1, atomically, to the u64 that map m holds under the key
// at the frame offset key, then goes to next; to missing when there is no
// such entry.
func increment(a *builder, m int, key int32, missing, next string) {
	a.loadMap(asm.R1, m)
	a.emit(asm.Mov.Reg(asm.R2, asm.R10))
	a.emit(asm.Add.Imm(asm.R2, key))
	a.emit(asm.FnMapLookupElem.Call())
	a.jump(asm.JEq, asm.R0, 0, missing)
	a.emit(asm.Mov.Imm(asm.R1, 1))
	a.emit(asm.AddAtomic.Mem(asm.R0, asm.R1, asm.DWord, 0))
	a.emit(asm.Ja.Label(next))
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
