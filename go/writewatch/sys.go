package writewatch

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The prefixes of union bpf_attr each command needs. Pointer fields are
// unsafe.Pointer (8 bytes on the only architecture the program supports) so
// the garbage collector keeps what they point to alive during the call.

type mapCreateAttr struct {
	mapType    uint32
	keySize    uint32
	valueSize  uint32
	maxEntries uint32
	mapFlags   uint32
	innerMapFD uint32
	numaNode   uint32
	mapName    [16]byte
}

type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       unsafe.Pointer
	license     unsafe.Pointer
	logLevel    uint32
	logSize     uint32
	logBuf      unsafe.Pointer
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
	// What a tracing (fexit) program needs on top; zero for a raw
	// tracepoint program.
	progIfindex        uint32
	expectedAttachType uint32
	progBTFFD          uint32
	funcInfoRecSize    uint32
	funcInfo           unsafe.Pointer
	funcInfoCnt        uint32
	lineInfoRecSize    uint32
	lineInfo           unsafe.Pointer
	lineInfoCnt        uint32
	attachBTFID        uint32 // the function's id in the kernel's BTF
	attachBTFObjFD     uint32 // 0: vmlinux
	_                  uint32
}

type mapElemAttr struct {
	mapFD uint32
	_     uint32
	key   unsafe.Pointer
	value unsafe.Pointer // or next_key
	flags uint64
}

type rawTracepointAttr struct {
	name   unsafe.Pointer
	progFD uint32
	_      uint32
}

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func name16(s string) (b [16]byte) {
	copy(b[:15], s)
	return b
}

func createMap(name string, typ, key, value, max uint32) (int, error) {
	attr := mapCreateAttr{mapType: typ, keySize: key, valueSize: value, maxEntries: max, mapName: name16(name)}
	fd, err := bpfCall(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, fmt.Errorf("create map %s: %w", name, err)
	}
	return fd, nil
}

// loadProgram loads a raw tracepoint program; on failure it loads it again
// with the verifier log on and puts the end of the log in the error.
func loadProgram(name string, insns []byte) (int, error) {
	return load(progLoadAttr{progType: unix.BPF_PROG_TYPE_RAW_TRACEPOINT, progName: name16(name)}, insns)
}

// loadFexit loads a program that runs when the kernel function with this
// BTF id returns, as loadProgram does.
func loadFexit(name string, insns []byte, btfID uint32) (int, error) {
	return load(progLoadAttr{progType: unix.BPF_PROG_TYPE_TRACING, expectedAttachType: unix.BPF_TRACE_FEXIT,
		attachBTFID: btfID, progName: name16(name)}, insns)
}

func load(attr progLoadAttr, insns []byte) (int, error) {
	license := []byte("GPL\x00")
	attr.insnCnt = uint32(len(insns) / 8)
	attr.insns = unsafe.Pointer(&insns[0])
	attr.license = unsafe.Pointer(&license[0])
	fd, err := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == nil {
		return fd, nil
	}
	if errors.Is(err, unix.EPERM) {
		return -1, fmt.Errorf("load program: %w", err) // not the verifier: no log to get
	}
	log := make([]byte, 1<<20)
	attr.logLevel = 1
	attr.logSize = uint32(len(log))
	attr.logBuf = unsafe.Pointer(&log[0])
	if fd, err2 := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err2 == nil {
		return fd, nil // loads with the log on: cannot happen, but it is loaded
	}
	if i := bytes.IndexByte(log, 0); i >= 0 {
		log = log[:i]
	}
	log = bytes.TrimSpace(log)
	if len(log) == 0 {
		return -1, fmt.Errorf("load program: %w (empty verifier log)", err)
	}
	const keep = 4000 // the verifier's verdict is at the end
	if len(log) > keep {
		log = append([]byte("..."), log[len(log)-keep:]...)
	}
	return -1, fmt.Errorf("load program: %w; verifier log:\n%s", err, log)
}

// attachRawTracepoint attaches prog to the raw tracepoint tp, or, with tp
// "", a tracing (fexit) program to the function it was loaded for.
func attachRawTracepoint(tp string, prog int) (int, error) {
	attr := rawTracepointAttr{progFD: uint32(prog)}
	if tp != "" {
		name := append([]byte(tp), 0)
		attr.name = unsafe.Pointer(&name[0])
	}
	fd, err := bpfCall(unix.BPF_RAW_TRACEPOINT_OPEN, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil && tp == "" {
		return -1, fmt.Errorf("attach fexit program: %w", err)
	}
	if err != nil {
		return -1, fmt.Errorf("attach to raw tracepoint %s: %w", tp, err)
	}
	return fd, nil
}

func mapUpdate(fd int, key, value unsafe.Pointer, flags uint64) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: key, value: value, flags: flags}
	_, err := bpfCall(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

func mapLookup(fd int, key, value unsafe.Pointer) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: key, value: value}
	_, err := bpfCall(unix.BPF_MAP_LOOKUP_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

func mapDelete(fd int, key unsafe.Pointer) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: key}
	_, err := bpfCall(unix.BPF_MAP_DELETE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

func mapLookupAndDelete(fd int, key, value unsafe.Pointer) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: key, value: value}
	_, err := bpfCall(unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// mapNextKey writes the key after key (the first one if key is nil) to next;
// ENOENT at the end.
func mapNextKey(fd int, key, next unsafe.Pointer) error {
	attr := mapElemAttr{mapFD: uint32(fd), key: key, value: next}
	_, err := bpfCall(unix.BPF_MAP_GET_NEXT_KEY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

type idAttr struct {
	id, nextID, openFlags uint32
}

type infoAttr struct {
	fd, infoLen uint32
	info        unsafe.Pointer
}

// nextID returns the id after id of the links, programs or maps (cmd
// BPF_*_GET_NEXT_ID); ENOENT after the last.
func nextID(cmd int, id uint32) (uint32, error) {
	attr := idAttr{id: id}
	_, err := bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.nextID, err
}

// fdByID opens the link, program or map with this id (cmd
// BPF_*_GET_FD_BY_ID): a reference that keeps it alive.
func fdByID(cmd int, id uint32) (int, error) {
	attr := idAttr{id: id}
	return bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// objInfo fills info (a prefix of struct bpf_link_info, bpf_prog_info or
// bpf_map_info) for the object behind fd.
func objInfo(fd int, info []byte) error {
	attr := infoAttr{fd: uint32(fd), infoLen: uint32(len(info)), info: unsafe.Pointer(&info[0])}
	_, err := bpfCall(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}
