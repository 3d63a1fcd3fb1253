// Package rawtp counts refused writes in the calling process, with the
// counting program that go/writewatch's Shared Watches share at the
// sys_exit raw tracepoint, found, loaded and read with bare bpf(2) calls.
//
// A session that counts on a kernel without BPF trampolines (no fexit)
// gets the same program either way, and the sys_exit tracepoint is all
// such a kernel offers. Started as ronly-writewatch, the second Go
// runtime's start costs more than the rest of a counting session's start
// on a 2-core VM; here the supervisor joins or attaches the program on a
// goroutine of its own, while it plans the session. The eBPF library's
// package init is what keeps go/writewatch out of the session binary;
// this package links none of it.
//
// The program is writewatch's, as bytes (program_gen.go, which
// go/writewatch's tests write and check with -update): same instructions,
// same name, same maps, so a Watch here joins a program a helper attached
// and the other way round, and the host pays for one program however many
// sessions count. Events (an audit log) and fexit programs stay
// writewatch's, in the helper.
//
// Its caller decides by FexitPossible, this process's view of the kernel:
// where another process could load fexit programs and this one cannot
// (the kernel's BTF hidden from its mount namespace, a security module
// that refuses it tracing programs), a helper's fexit set and this
// package's tracepoint program may both be attached. Each counts its own
// sessions exactly; the host then pays for both.
package rawtp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/mountinfo"
)

// ABIi386Named marks, in a count's key, an i386 call that an fexit program
// counted under its x86_64 number (the tracepoint counts i386 calls with
// ABI 1, under "other").
const ABIi386Named = 2

// Watch holds the shared program's link, program and maps; its methods are
// safe for concurrent use.
type Watch struct {
	mu     sync.Mutex
	maps   [numMaps]int
	prog   int
	link   int
	joined bool            // the program was another process's
	added  map[uint64]bool // forgotten by Close
	closed bool
}

// Hook is where the program runs: the sys_exit tracepoint.
func (w *Watch) Hook() string { return "tracepoint" }

// Joined is true when the Watch took a program another process attached.
func (w *Watch) Joined() bool { return w.joined }

// ProgramFD is the fd of the program the Watch holds (for tests).
func (w *Watch) ProgramFD() int { return w.prog }

// Shared returns a Watch on the shared counting program: it joins the one
// attached on the host (another session's, this package's or
// writewatch.Shared's), found among the host's links by its name, or
// loads and attaches it. On joining, cgroups that no longer exist are
// forgotten, with their counts. Needs root (CAP_BPF and CAP_PERFMON).
func Shared() (*Watch, error) {
	if runtime.GOARCH != "amd64" {
		// The program reads x86_64 struct pt_regs; the attributes here
		// hold 8-byte pointers.
		return nil, fmt.Errorf("rawtp: %s is not supported", runtime.GOARCH)
	}
	w := &Watch{maps: noMaps(), prog: -1, link: -1, added: map[uint64]bool{}}
	if w.join() {
		w.prune()
		return w, nil
	}
	if err := w.load(); err != nil {
		w.release()
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (needs root, or CAP_BPF and CAP_PERFMON)", err)
		}
		return nil, fmt.Errorf("rawtp: %w", err)
	}
	return w, nil
}

// load creates the maps, loads the program with them and attaches it.
func (w *Watch) load() error {
	for i, s := range mapSpecs {
		fd, err := mapCreate(s)
		if err != nil {
			return fmt.Errorf("create map %s: %w", s.name, err)
		}
		w.maps[i] = fd
	}
	insns := append([]byte(nil), progInsns...)
	for _, l := range mapLoads {
		// The low half of the 16-byte load's immediate is the map's fd.
		binary.LittleEndian.PutUint32(insns[l.insn*8+4:], uint32(w.maps[l.m]))
	}
	fd, err := progLoad(progName, insns)
	if err != nil {
		return err
	}
	w.prog = fd
	// Last: attaching is what makes every syscall on the host pay.
	if w.link, err = rawTracepointOpen("sys_exit", w.prog); err != nil {
		return fmt.Errorf("attach to raw tracepoint sys_exit: %w", err)
	}
	return nil
}

// join looks for a link of the shared program among the host's and takes
// references to it, its program and its maps. False when there is none,
// or it went away while we looked.
func (w *Watch) join() bool {
	var id uint32
	for {
		next, err := getNextID(unix.BPF_LINK_GET_NEXT_ID, id)
		if err != nil {
			return false // ENOENT: no more links
		}
		id = next
		l, err := getFDByID(cmdLinkGetFDByID, id)
		if err != nil {
			continue // gone meanwhile
		}
		if w.adopt(l) {
			return true
		}
		unix.Close(l)
	}
}

// adopt takes link l if it attaches the shared program with its maps.
func (w *Watch) adopt(l int) bool {
	var li linkInfo
	if objInfo(l, unsafe.Pointer(&li), unsafe.Sizeof(li)) != nil || li.Type != unix.BPF_LINK_TYPE_RAW_TRACEPOINT {
		return false
	}
	p, err := getFDByID(cmdProgGetFDByID, li.ProgID)
	if err != nil {
		return false
	}
	var ids [numMaps + 1]uint32
	pi := progInfo{NrMapIDs: uint32(len(ids)), MapIDs: unsafe.Pointer(&ids[0])}
	err = objInfo(p, unsafe.Pointer(&pi), unsafe.Sizeof(pi))
	if err != nil || cString(pi.Name[:]) != progName || pi.NrMapIDs != numMaps {
		unix.Close(p)
		return false
	}
	maps, ok := openMaps(ids[:numMaps])
	if !ok {
		unix.Close(p)
		return false
	}
	w.link, w.prog, w.maps, w.joined = l, p, maps, true
	return true
}

// openMaps opens the maps with these ids, each found by its name.
func openMaps(ids []uint32) (maps [numMaps]int, ok bool) {
	maps, ok = noMaps(), true
	for _, id := range ids {
		fd, err := getFDByID(cmdMapGetFDByID, id)
		if err != nil {
			ok = false
			break
		}
		var mi mapInfo
		i := -1
		if objInfo(fd, unsafe.Pointer(&mi), unsafe.Sizeof(mi)) == nil {
			for j, s := range mapSpecs {
				if s.name == cString(mi.Name[:]) {
					i = j
				}
			}
		}
		if i < 0 || maps[i] >= 0 {
			unix.Close(fd)
			ok = false
			break
		}
		maps[i] = fd
	}
	if !ok {
		for i, fd := range maps {
			if fd >= 0 {
				unix.Close(fd)
				maps[i] = -1
			}
		}
	}
	return maps, ok
}

// noMaps is a Watch's maps before any is open.
func noMaps() (maps [numMaps]int) {
	for i := range maps {
		maps[i] = -1
	}
	return maps
}

// countKey is the key of the counts map (the program's record's first
// 16 bytes).
type countKey struct {
	Cgroup uint64
	Nr     uint32
	ABI    uint32
}

// prune forgets the cgroups that no longer exist, with their counts: a
// Watch whose process was killed could not remove its own. Best effort.
func (w *Watch) prune() {
	gone, done := CgroupGone()
	if gone == nil {
		return
	}
	defer done()
	var stale []uint64
	walk(w.maps[mapSessions], 8, mapSpecs[mapSessions].max, func(k []byte) {
		if id := binary.LittleEndian.Uint64(k); gone(id) {
			stale = append(stale, id)
		}
	})
	for _, id := range stale {
		mapDelete(w.maps[mapSessions], unsafe.Pointer(&id))
	}
	w.dropCounts(gone)
}

// CgroupGone returns gone, which says whether a cgroup v2 id names a
// cgroup that was removed, and done, which frees what gone holds; gone is
// nil when the hierarchy cannot be opened. A cgroup's id is its kernfs
// file handle: opening it by handle fails once the cgroup is removed (ids
// are not reused). Answers are remembered.
func CgroupGone() (gone func(id uint64) bool, done func()) {
	// The whole hierarchy's mount: opening a handle through a mount of a
	// subtree fails (ESTALE) for cgroups outside it, alive or not.
	mounts, err := mountinfo.Read(func(m *mountinfo.Mount) bool { return m.FSType == "cgroup2" && m.Root == "/" })
	if err != nil || len(mounts) == 0 {
		return nil, nil
	}
	root, err := unix.Open(mounts[0].Point, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil
	}
	seen := map[uint64]bool{} // id -> gone
	return func(id uint64) bool {
		if g, ok := seen[id]; ok {
			return g
		}
		h := unix.NewFileHandle(fileidKernfs, binary.LittleEndian.AppendUint64(nil, id))
		fd, err := unix.OpenByHandleAt(root, h, unix.O_RDONLY|unix.O_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		seen[id] = errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENOENT)
		return seen[id]
	}, func() { unix.Close(root) }
}

// fileidKernfs is the type of a kernfs file handle (FILEID_KERNFS), whose
// eight bytes are a cgroup's id.
const fileidKernfs = 0xfe

// countKeys lists the keys of the counts map whose cgroup match says so.
// They are collected first: deleting while walking would restart the walk.
func (w *Watch) countKeys(match func(cgroupID uint64) bool) ([]countKey, error) {
	var keys []countKey
	err := walk(w.maps[mapCounts], int(unsafe.Sizeof(countKey{})), mapSpecs[mapCounts].max, func(b []byte) {
		k := countKey{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:])}
		if match(k.Cgroup) {
			keys = append(keys, k)
		}
	})
	if err != nil {
		return keys, fmt.Errorf("rawtp: walk counts: %w", err)
	}
	return keys, nil
}

// dropCounts deletes the counts of the cgroups for which drop says so.
func (w *Watch) dropCounts(drop func(cgroupID uint64) bool) {
	keys, _ := w.countKeys(drop)
	for i := range keys {
		mapDelete(w.maps[mapCounts], unsafe.Pointer(&keys[i]))
	}
}

// Add starts counting refused writes of the processes in the cgroup v2 with
// this id and of those in cgroups below it.
func (w *Watch) Add(cgroupID uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("rawtp: Add on a closed Watch")
	}
	one := uint32(1)
	if err := mapUpdate(w.maps[mapSessions], unsafe.Pointer(&cgroupID), unsafe.Pointer(&one)); err != nil {
		if errors.Is(err, unix.E2BIG) {
			err = fmt.Errorf("%w: already watching %d cgroups", err, mapSpecs[mapSessions].max)
		}
		return fmt.Errorf("rawtp: watch cgroup %d: %w", cgroupID, err)
	}
	w.added[cgroupID] = true
	return nil
}

// Remove stops counting for a cgroup and returns its counts by syscall
// name, forgetting them. Call it once the cgroup's processes have exited.
func (w *Watch) Remove(cgroupID uint64) (map[string]uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("rawtp: Remove on a closed Watch")
	}
	if err := mapDelete(w.maps[mapSessions], unsafe.Pointer(&cgroupID)); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("rawtp: cgroup %d is not watched", cgroupID)
		}
		return nil, fmt.Errorf("rawtp: unwatch cgroup %d: %w", cgroupID, err)
	}
	delete(w.added, cgroupID)
	keys, err := w.countKeys(func(id uint64) bool { return id == cgroupID })
	if err != nil {
		return nil, err
	}
	counts := map[string]uint64{}
	for i := range keys {
		var n uint64
		err := mapLookupAndDelete(w.maps[mapCounts], unsafe.Pointer(&keys[i]), unsafe.Pointer(&n))
		if errors.Is(err, errNotSupp) || errors.Is(err, unix.EINVAL) {
			// Hash maps take the one call since 5.14: look, then delete
			// (the cgroup is empty, so nothing counts in between).
			if err = mapLookup(w.maps[mapCounts], unsafe.Pointer(&keys[i]), unsafe.Pointer(&n)); err == nil {
				mapDelete(w.maps[mapCounts], unsafe.Pointer(&keys[i]))
			}
		}
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("rawtp: read counts: %w", err)
		}
		counts[SyscallName(keys[i].Nr, keys[i].ABI)] += n
	}
	return counts, nil
}

// Close lets go of the program (the kernel detaches it when its last
// holder does) and forgets the cgroups added and not removed, counts and
// all, so that the program, which other Watches may keep, does not count
// for them.
func (w *Watch) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	for id := range w.added {
		mapDelete(w.maps[mapSessions], unsafe.Pointer(&id))
	}
	if len(w.added) > 0 {
		w.dropCounts(func(id uint64) bool { return w.added[id] })
	}
	if err := w.release(); err != nil {
		return fmt.Errorf("rawtp: close: %w", err)
	}
	return nil
}

// release closes what w holds, the link first.
func (w *Watch) release() error {
	var errs []error
	fds := []*int{&w.link, &w.prog}
	for i := range w.maps {
		fds = append(fds, &w.maps[i])
	}
	for _, fd := range fds {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}

// SyscallName names a counted call: from the x86_64 table (an i386 call an
// fexit program counted is named by its x86_64 twin); other i386 and x32
// calls cannot be named with it and are "other".
func SyscallName(nr, abi uint32) string {
	if (abi != 0 && abi != ABIi386Named) || nr >= 1024 {
		return "other"
	}
	return bpf.SyscallName(int(nr))
}

// FexitPossible answers cheaply whether the kernel may run fexit programs
// (go/writewatch's fexitPossible, without its library): a load that names
// no function fails with EINVAL where tracing programs may be loaded, and
// with EPERM where they may not. Without kernel BTF there is no fexit.
// Where it is false, the sys_exit tracepoint is the only place to count.
func FexitPossible() bool {
	if runtime.GOARCH != "amd64" {
		return true // the helper's, which says it cannot count there
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return false
	}
	insns := make([]byte, 16)
	insns[0] = 0xb7 // mov r0, 0
	insns[8] = 0x95 // exit
	fd, err := load(unix.BPF_PROG_TYPE_TRACING, unix.BPF_TRACE_FEXIT, "ronly_probe", insns, nil)
	if err == nil {
		unix.Close(fd)
	}
	return !(errors.Is(err, unix.EPERM) && os.Geteuid() == 0)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
