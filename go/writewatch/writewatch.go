// Package writewatch counts the writes the kernel refuses with EROFS, per
// cgroup v2, so that a ronly session can report how often and with which
// calls its processes ran into the read-only host.
//
// Seccomp cannot see these refusals (the calls are allowed; the file system
// refuses them), and tracing a session's processes would slow every one of
// their calls. Instead small eBPF programs, written here instruction by
// instruction with github.com/cilium/ebpf/asm, look at syscall results:
// each compares the return value with -EROFS and returns at once when it
// differs. Only for a refusal does it look up the task's cgroup (or its
// ancestors) among the watched ones, count the call by number and send an
// event through a ring buffer for an audit log, with the path the call
// named where it has one.
//
// Where they run decides who pays (Hooks). Where the kernel has BPF
// trampolines, fexit programs run on the return of the write-class
// syscalls' entry functions only (fexit.go): every other syscall on the
// host pays nothing. Attaching and detaching them is slow, though: one
// program per function (about 60 with the i386 entries), and each detach
// waits for an RCU-tasks grace period (under qemu's TCG about 0.2 s per
// function; not measured on hardware). Elsewhere one program runs at the
// sys_exit raw tracepoint, after every syscall of every task on the host:
// while a Watch is open every syscall on the host pays, watched or not.
// On a 2-vCPU KVM guest that was about 90 ns per syscall (getppid: 160 ns
// bare, 250 ns with one program), the same as for a program that only
// returns; each further program adds about as much again. A Watch from
// Start has programs of its own, which send events; Shared Watches, which
// only count, share one set among all processes on the host (see Shared).
//
// Limits: x86_64 only. Syscall numbers are named with the x86_64 table
// (bpf.SyscallName: "syscall_N" for a number it does not know). With the
// tracepoint, calls made through the i386 ABI (32-bit programs, int $0x80
// from 64-bit ones) are counted under "other", as are x32 numbers: their
// numbers mean other calls; an fexit program knows its call and counts an
// i386 one under the x86_64 name (without a path), and sees only the
// write-class calls (writeCalls), not every call that returns EROFS.
// A task counts for its own cgroup if watched, else for its deepest watched
// ancestor among the first 16 levels of the hierarchy. The program reads
// kernel structures at fixed offsets (struct pt_regs; struct thread_info as
// laid out since Linux 5.11). Counts are exact while the counts map has
// room; events are best effort. Dropped says what was lost.
//
// An event's path is the path argument as the caller gave it, read from
// its memory after the kernel refused the call: a relative path is
// relative to the caller's working directory or to the directory fd it
// passed, and is reported as given, not resolved. It is for the audit log
// only; nothing decides anything with it (the call was already refused),
// and a caller that rewrites its memory from another thread between the
// refusal and the read can make it say something else. See pathArgs for
// which calls have one.
package writewatch

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/writewatch/rawtp"
)

// Sizes of the maps: cgroups watched at once, (cgroup, syscall) pairs
// counted at once, and the ring buffer for events. A record is 48 bytes,
// then the path with its NUL (none without one), plus an 8-byte header,
// rounded up to 8: with a 39-byte path 96 bytes, 10,922 events between two
// reads; with a path of 255 bytes or more, 312 bytes and 3,360 events.
const (
	maxSessions = 1024
	maxCounts   = 4096
	ringSize    = 1 << 20
)

// readEvery bounds how late an event reaches the Events function: the
// program wakes the reader only once the ring buffer is a quarter full,
// since a wake-up per event tripled the cost of a refusal (see prog.go).
const readEvery = 100 * time.Millisecond

// Event is one refused call, for an audit log.
type Event struct {
	CgroupID uint64 // the watched cgroup, as given to Add, also for a process in a cgroup below it
	PID      int    // process (thread group) id
	Comm     string // the task's name, at most 15 bytes
	Syscall  string // x86_64 name, or "other" (see the package comment)
	// Path is the path the call named, as given (relative ones relative to
	// the caller's working directory or directory fd), cut at 255 bytes;
	// "" for calls by file descriptor, i386 and x32 calls, and when it
	// could not be read. See the package comment.
	Path string
	Time time.Time
}

// Watch is an attached program (its own, or the one Shared Watches share)
// and its maps; its methods are safe for concurrent use.
type Watch struct {
	maps  [numMaps]*ebpf.Map
	progs []*ebpf.Program
	links []link.Link // closing them detaches the programs (Shared ones: their last holder)
	hook  string      // "fexit" or "tracepoint"
	// joined: a Shared Watch that took another process's programs.
	joined bool
	added  map[uint64]bool // a Shared Watch's cgroups, forgotten by Close
	// ring reads the events map without blocking (its deadline is in the
	// past); readLoop waits on epoll, which the drain from Remove need
	// not wait for.
	ring  *ringbuf.Reader
	epoll int
	stop  int // eventfd that ends the reader goroutine

	mu      sync.Mutex // the ring and handler
	handler func(Event)
	reading bool
	done    chan struct{}

	mapMu  sync.Mutex // Add, Remove, Dropped, Close
	closed bool
}

// countKey is the key of the counts map: the first keyLen bytes of a
// record.
type countKey struct {
	Cgroup uint64
	Nr     uint32
	ABI    uint32 // 1: i386 syscall, numbered in the i386 table; abiI386Named
}

// record is the fixed part of what the program sends through the ring
// buffer (recordLen bytes); the path, with its NUL, follows.
type record struct {
	Key  countKey
	Time uint64 // CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns)
	PID  uint32
	_    uint32
	Comm [16]byte
}

// Hooks says where a Watch may see the results of syscalls.
type Hooks int

const (
	// FexitOnly: fexit programs on the write-class syscalls (see
	// fexit.go), which no other syscall pays for; where the kernel cannot
	// attach them, an error that wraps ErrNoFexit.
	FexitOnly Hooks = iota
	// FexitOrTracepoint: those, or the sys_exit raw tracepoint, which
	// every syscall on the host pays for while it is attached.
	FexitOrTracepoint
	// TracepointOnly: the sys_exit raw tracepoint (for tests and
	// measurements that compare the two).
	TracepointOnly
)

// Start loads the programs and attaches them, where hooks allows; from
// then on they count until Close. Needs CAP_BPF and CAP_PERFMON (root).
// The error names the step that failed (creating a map, loading,
// attaching).
func Start(hooks Hooks) (*Watch, error) {
	return newWatch(nil, func(w *Watch) error { return w.start(hooks) })
}

// Hook says what the Watch is attached to: "fexit" (the write-class
// syscalls' functions) or "tracepoint" (sys_exit, every syscall).
func (w *Watch) Hook() string { return w.hook }

// newWatch makes a Watch with start, on one that is released if start
// fails; added is nil for a Watch with a program of its own.
func newWatch(added map[uint64]bool, start func(*Watch) error) (*Watch, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("writewatch: %s is not supported (the program reads x86_64 struct pt_regs)", runtime.GOARCH)
	}
	w := &Watch{epoll: -1, stop: -1, added: added}
	if err := start(w); err != nil {
		w.release()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("writewatch: %w (needs root, or CAP_BPF and CAP_PERFMON)", err)
		}
		return nil, fmt.Errorf("writewatch: %w", err)
	}
	return w, nil
}

// mapSpecs are the maps' names and shapes; a Shared Watch that joins finds
// the maps among its program's by these names.
var mapSpecs = [numMaps]ebpf.MapSpec{
	mapSessions: {Name: "sessions", Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: maxSessions},
	mapCounts:   {Name: "counts", Type: ebpf.Hash, KeySize: keyLen, ValueSize: 8, MaxEntries: maxCounts},
	mapEvents:   {Name: "events", Type: ebpf.RingBuf, MaxEntries: ringSize},
	mapDropped:  {Name: "dropped", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2},
	mapPaths:    {Name: "paths", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: maxNr},
}

// sharedMaps are the maps of the counting program, which Shared Watches
// share: it sends no events and reads no paths.
var sharedMaps = []int{mapSessions, mapCounts, mapDropped}

// createMaps creates the maps with these indices.
func (w *Watch) createMaps(which []int) error {
	for _, i := range which {
		m, err := ebpf.NewMap(&mapSpecs[i])
		if err != nil {
			return fmt.Errorf("create map %s: %w", mapSpecs[i].Name, err)
		}
		w.maps[i] = m
	}
	return nil
}

func (w *Watch) start(hooks Hooks) error {
	err := w.createMaps([]int{mapSessions, mapCounts, mapEvents, mapDropped, mapPaths})
	if err != nil {
		return err
	}
	for nr, off := range pathArgs {
		if err := w.maps[mapPaths].Update(uint32(nr), off, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill map paths: %w", err)
		}
	}
	if w.ring, err = ringbuf.NewReader(w.maps[mapEvents]); err != nil {
		return fmt.Errorf("ring buffer reader: %w", err)
	}
	w.ring.SetDeadline(time.Unix(1, 0)) // never wait: readLoop does
	if w.epoll, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if w.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	for _, fd := range []int{w.maps[mapEvents].FD(), w.stop} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(w.epoll, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return w.attach(hooks, true, "ronly_erofs_f", "ronly_erofs")
}

// attach loads and attaches the programs, fexit ones where hooks allows
// and the kernel can, else the tracepoint's, with the maps w has.
func (w *Watch) attach(hooks Hooks, events bool, fexitPrefix, tpName string) error {
	if hooks != TracepointOnly {
		err := w.attachFexit(events, fexitPrefix)
		if err == nil || hooks == FexitOnly {
			return err
		}
		// Counting was asked for: any failure of the fexit path falls
		// back to the tracepoint, which every kernel since 4.17 has.
		w.closePrograms()
	}
	insns, err := program(events, nil).instructions(&w.maps)
	if err != nil {
		return err
	}
	prog, err := loadProgram(tpName, insns)
	if err != nil {
		return err
	}
	w.progs = append(w.progs, prog)
	// Last: attaching is what makes every syscall on the host pay.
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_exit", Program: prog})
	if err != nil {
		return fmt.Errorf("attach to raw tracepoint sys_exit: %w", err)
	}
	w.links, w.hook = append(w.links, l), "tracepoint"
	return nil
}

// loadProgram loads a raw tracepoint program.
func loadProgram(name string, insns asm.Instructions) (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.RawTracepoint, License: "GPL", Instructions: insns})
	if err != nil {
		return nil, loadError(err)
	}
	return prog, nil
}

// loadError puts the end of the verifier's log, which the library fetches
// with a second load after a failed one, in the error: its verdict is at
// the end.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) || len(ve.Log) == 0 {
		return fmt.Errorf("load program: %w", err)
	}
	log := strings.TrimSpace(strings.Join(ve.Log, "\n"))
	const keep = 4000
	if len(log) > keep {
		log = "..." + log[len(log)-keep:]
	}
	return fmt.Errorf("load program: %w; verifier log:\n%s", ve.Cause, log)
}

// closePrograms detaches and closes w's programs.
func (w *Watch) closePrograms() error {
	var errs []error
	for _, l := range w.links {
		errs = append(errs, l.Close())
	}
	for _, p := range w.progs {
		errs = append(errs, p.Close())
	}
	w.links, w.progs = nil, nil
	return errors.Join(errs...)
}

// Shared returns a Watch that counts but sends no events, on the program
// every Shared Watch on the host uses. It joins the program another
// process attached, found among the host's links by its name, which
// carries a hash of its instructions (another version of ronly has its
// own), and holds a reference to its link; the kernel detaches it when the
// last holder closes it or dies. Without one it loads and attaches it.
// Two that start at the same moment may each load one; both stay correct.
// A cgroup is watched by one Shared Watch at a time, and the counts map is
// shared (maxCounts pairs for the host). On joining, the cgroups that no
// longer exist are forgotten: a Watch whose process was killed could not
// remove its own.
//
// Where hooks allows fexit programs, Watches share a set of them the same
// way (all of the set's links are held); a Watch that may use the
// tracepoint joins or loads that only where the kernel cannot attach
// fexit programs.
func Shared(hooks Hooks) (*Watch, error) {
	return newWatch(map[uint64]bool{}, func(w *Watch) error {
		prefix, err := fexitPrefix()
		if err != nil {
			return err
		}
		name, err := progName()
		if err != nil {
			return err
		}
		if hooks != TracepointOnly && w.joinFexit(prefix) {
			w.prune()
			return nil
		}
		if hooks != FexitOnly && w.join(name) {
			// Another session counts with the tracepoint: the kernel has
			// no fexit (or it failed there); joining adds no cost.
			w.prune()
			return nil
		}
		return w.loadShared(hooks, prefix, name)
	})
}

// progName names the counting program after a hash of its instructions
// (map fds left out).
func progName() (string, error) {
	insns, err := program(false, nil).encode()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(insns)
	return fmt.Sprintf("ronly_w%x", sum[:4]), nil
}

func (w *Watch) loadShared(hooks Hooks, fexitPrefix, tpName string) error {
	if err := w.createMaps(sharedMaps); err != nil {
		return err
	}
	return w.attach(hooks, false, fexitPrefix, tpName)
}

// join looks for a link of the program called name among the host's and
// takes references to it, its program and its maps. False when there is
// none, or it went away while we looked.
func (w *Watch) join(name string) bool {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		if w.adopt(it.Link, name) {
			it.Take()
			return true
		}
	}
	return false
}

// adopt takes link if it attaches a program called name with the counting
// program's maps.
func (w *Watch) adopt(l link.Link, name string) bool {
	prog, got, ids, ok := linkProgram(l, link.RawTracepointType, len(sharedMaps))
	if !ok {
		return false
	}
	if got != name {
		prog.Close()
		return false
	}
	maps, ok := openMaps(ids)
	if !ok {
		prog.Close()
		return false
	}
	w.links, w.progs, w.maps, w.hook, w.joined = []link.Link{l}, []*ebpf.Program{prog}, maps, "tracepoint", true
	return true
}

// openMaps opens the shared maps with these ids, each found by its name.
func openMaps(ids []ebpf.MapID) ([numMaps]*ebpf.Map, bool) {
	var maps [numMaps]*ebpf.Map
	ok := len(ids) == len(sharedMaps)
	for _, id := range ids {
		if !ok {
			break
		}
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			ok = false
			break
		}
		i := -1
		if info, err := m.Info(); err == nil {
			i = slices.IndexFunc(sharedMaps, func(j int) bool { return mapSpecs[j].Name == info.Name })
		}
		if i < 0 || maps[sharedMaps[i]] != nil {
			m.Close()
			ok = false
			break
		}
		maps[sharedMaps[i]] = m
	}
	if !ok {
		for i, m := range maps {
			if m != nil {
				m.Close()
				maps[i] = nil
			}
		}
	}
	return maps, ok
}

// prune forgets the cgroups that no longer exist (rawtp.CgroupGone), with
// their counts: a Watch whose process was killed could not remove its
// own, and the program outlives it while other Watches hold it. Best
// effort: an error leaves the entries.
func (w *Watch) prune() {
	gone, done := rawtp.CgroupGone()
	if gone == nil {
		return
	}
	defer done()
	var id uint64
	var one uint32
	var stale []uint64
	it := w.maps[mapSessions].Iterate()
	for it.Next(&id, &one) {
		if gone(id) {
			stale = append(stale, id)
		}
	}
	for _, id := range stale {
		w.maps[mapSessions].Delete(id)
	}
	w.dropCounts(gone)
}

// dropCounts deletes the counts of the cgroups for which drop says so.
// Best effort: a failed walk leaves what it did not reach.
func (w *Watch) dropCounts(drop func(cgroupID uint64) bool) {
	keys, _ := w.countKeys(drop)
	for _, k := range keys {
		w.maps[mapCounts].Delete(k)
	}
}

// countKeys lists the keys of the counts map whose cgroup match says so.
// They are collected first: deleting while walking would restart the walk.
func (w *Watch) countKeys(match func(cgroupID uint64) bool) ([]countKey, error) {
	var keys []countKey
	var key countKey
	var n uint64
	it := w.maps[mapCounts].Iterate()
	for it.Next(&key, &n) {
		if match(key.Cgroup) {
			keys = append(keys, key)
		}
	}
	if err := it.Err(); err != nil {
		return keys, fmt.Errorf("writewatch: walk counts: %w", err)
	}
	return keys, nil
}

// Add starts counting refused writes of the processes in the cgroup v2 with
// this id (see CgroupID) and of those in cgroups below it. Adding twice is
// harmless.
func (w *Watch) Add(cgroupID uint64) error {
	w.mapMu.Lock()
	defer w.mapMu.Unlock()
	if w.closed {
		return errors.New("writewatch: Add on a closed Watch")
	}
	if err := w.maps[mapSessions].Update(cgroupID, uint32(1), ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.E2BIG) {
			err = fmt.Errorf("%w: already watching %d cgroups", err, maxSessions)
		}
		return fmt.Errorf("writewatch: watch cgroup %d: %w", cgroupID, err)
	}
	if w.added != nil {
		w.added[cgroupID] = true
	}
	return nil
}

// Remove stops counting for a cgroup and returns its counts by syscall name,
// forgetting them. Events of the cgroup still in the ring buffer are handed
// to the Events function before Remove returns. Call it once the cgroup's
// processes have exited: a refusal that is still in flight on another CPU
// when Remove runs may be missed.
func (w *Watch) Remove(cgroupID uint64) (map[string]uint64, error) {
	w.mapMu.Lock()
	defer w.mapMu.Unlock()
	if w.closed {
		return nil, errors.New("writewatch: Remove on a closed Watch")
	}
	if err := w.maps[mapSessions].Delete(cgroupID); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("writewatch: cgroup %d is not watched", cgroupID)
		}
		return nil, fmt.Errorf("writewatch: unwatch cgroup %d: %w", cgroupID, err)
	}
	delete(w.added, cgroupID)
	w.drain()

	keys, err := w.countKeys(func(id uint64) bool { return id == cgroupID })
	if err != nil {
		return nil, err
	}
	counts := map[string]uint64{}
	for _, k := range keys {
		var n uint64
		err := w.maps[mapCounts].LookupAndDelete(k, &n)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("writewatch: read counts: %w", err)
		}
		counts[rawtp.SyscallName(k.Nr, k.ABI)] += n
	}
	return counts, nil
}

// Events sets the function that receives every refusal in the watched
// cgroups, in order, from a goroutine of the Watch within readEvery (and
// from within Remove and Close, which deliver what is pending first). fn must not call the
// Watch's methods. Events that arrive while no function is set are dropped
// at the next Remove; with nil, delivery stops. An event is lost only when
// the ring buffer is full (see Dropped); counts never are.
func (w *Watch) Events(fn func(Event)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handler = fn
	if fn != nil && !w.reading && len(w.links) > 0 && w.ring != nil {
		w.reading = true
		w.done = make(chan struct{})
		go w.readLoop()
	}
}

func (w *Watch) readLoop() {
	defer close(w.done)
	evs := make([]unix.EpollEvent, 2)
	for {
		n, err := unix.EpollWait(w.epoll, evs, int(readEvery/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return // cannot happen with a valid epoll fd; Close still drains
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == w.stop {
				return
			}
		}
		w.drain()
	}
}

// drain hands what is in the ring buffer to the handler, or drops it.
func (w *Watch) drain() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ring == nil {
		return
	}
	// Records carry CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
	now := time.Now()
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono := uint64(ts.Nano())
	// Every record read is freed; without a handler it is dropped. A
	// record still being written holds the reader until it is committed,
	// a few instructions of the program later.
	var rec ringbuf.Record
	for w.ring.ReadInto(&rec) == nil { // then os.ErrDeadlineExceeded: all read
		var r record
		if w.handler == nil || len(rec.RawSample) < recordLen {
			continue
		}
		if _, err := binary.Decode(rec.RawSample, binary.LittleEndian, &r); err != nil {
			continue
		}
		ev := Event{
			CgroupID: r.Key.Cgroup,
			Syscall:  rawtp.SyscallName(r.Key.Nr, r.Key.ABI),
			PID:      int(r.PID),
			Comm:     cString(r.Comm[:]),
			Path:     cString(rec.RawSample[recordLen:]),
			Time:     now,
		}
		if r.Time <= mono {
			ev.Time = now.Add(-time.Duration(mono - r.Time))
		}
		w.handler(ev)
	}
}

// Dropped returns how many events were lost because the ring buffer was full
// and how many refusals went uncounted because the counts map was full,
// since Start, over all cgroups.
func (w *Watch) Dropped() (events, counts uint64, err error) {
	w.mapMu.Lock()
	defer w.mapMu.Unlock()
	if w.closed {
		return 0, 0, errors.New("writewatch: Dropped on a closed Watch")
	}
	var v [2]uint64
	for i := range v {
		if err := w.maps[mapDropped].Lookup(uint32(i), &v[i]); err != nil {
			return 0, 0, fmt.Errorf("writewatch: read dropped: %w", err)
		}
	}
	return v[0], v[1], nil
}

// Close detaches the program, hands pending events to the Events function
// and frees everything. Counts not collected with Remove are lost.
func (w *Watch) Close() error {
	w.mapMu.Lock()
	defer w.mapMu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	if len(w.added) > 0 {
		// Not removed: forgotten, counts and all, so that the program,
		// which other Watches may keep, does not count for them.
		for id := range w.added {
			w.maps[mapSessions].Delete(id)
		}
		w.dropCounts(func(id uint64) bool { return w.added[id] })
	}
	if w.hook == "fexit" {
		_, err := detachLater(w.links)
		errs = append(errs, err)
	} else {
		for _, l := range w.links {
			errs = append(errs, l.Close())
		}
	}
	w.links = nil
	w.mu.Lock()
	reading, done := w.reading, w.done
	w.mu.Unlock()
	if reading {
		one := [8]byte{1}
		if _, err := unix.Write(w.stop, one[:]); err != nil {
			errs = append(errs, fmt.Errorf("stop reader: %w", err))
		} else {
			<-done
		}
	}
	w.drain()
	errs = append(errs, w.release())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("writewatch: close: %w", err)
	}
	return nil
}

// release frees what start made, in any state of completion.
func (w *Watch) release() error {
	var errs []error
	closeFD := func(fd *int) {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	for _, l := range w.links {
		errs = append(errs, l.Close())
	}
	w.links = nil
	w.mu.Lock()
	if w.ring != nil {
		errs = append(errs, w.ring.Close())
		w.ring = nil
	}
	w.mu.Unlock()
	closeFD(&w.stop)
	closeFD(&w.epoll)
	for _, p := range w.progs {
		errs = append(errs, p.Close())
	}
	w.progs = nil
	for i, m := range w.maps {
		if m != nil {
			errs = append(errs, m.Close())
			w.maps[i] = nil
		}
	}
	return errors.Join(errs...)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
