package rawtp

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The bpf(2) commands and attributes this package uses, laid out as in
// the kernel's union bpf_attr (include/uapi/linux/bpf.h). A shorter
// attribute than the kernel's is fine: it reads the rest as zero. The
// kernel's u64 pointer fields are unsafe.Pointer here (8 bytes on
// amd64, the one architecture the program supports), so that the
// garbage collector keeps what they point to and a stack that moves
// before the call carries them along. The kernel makes every bpf fd
// close-on-exec.

const (
	cmdProgGetFDByID = 0xd
	cmdMapGetFDByID  = 0xe
	cmdLinkGetFDByID = 0x1e
)

// mapSpec is a map's shape, as writewatch's mapSpecs has it.
type mapSpec struct {
	name                 string
	typ, key, value, max uint32
}

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func mapCreate(s mapSpec) (int, error) {
	attr := struct {
		Type, Key, Value, Max, Flags, Inner, Numa uint32
		Name                                      [16]byte
	}{Type: s.typ, Key: s.key, Value: s.value, Max: s.max}
	copy(attr.Name[:15], s.name)
	return bpfCall(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// elemAttr is the attribute of the map element commands.
type elemAttr struct {
	FD    uint32
	_     uint32
	Key   unsafe.Pointer
	Value unsafe.Pointer // or the next key
	Flags uint64
}

func mapElem(cmd int, fd int, key, value unsafe.Pointer) error {
	attr := elemAttr{FD: uint32(fd), Key: key, Value: value}
	_, err := bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

func mapUpdate(fd int, key, value unsafe.Pointer) error {
	return mapElem(unix.BPF_MAP_UPDATE_ELEM, fd, key, value) // flags 0: BPF_ANY
}

func mapDelete(fd int, key unsafe.Pointer) error {
	return mapElem(unix.BPF_MAP_DELETE_ELEM, fd, key, nil)
}

func mapLookup(fd int, key, value unsafe.Pointer) error {
	return mapElem(unix.BPF_MAP_LOOKUP_ELEM, fd, key, value)
}

// errNotSupp is the kernel's ENOTSUPP (524), which it returns for a map
// command the map's type lacks.
const errNotSupp = unix.Errno(524)

func mapLookupAndDelete(fd int, key, value unsafe.Pointer) error {
	return mapElem(unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value)
}

// walk calls fn with each key of a hash map (keySize bytes, at most
// entries keys), in the kernel's order. A key deleted meanwhile restarts the
// walk from the beginning (the kernel's answer to a key it no longer
// has), so callers collect first and delete after; under other sessions'
// churn the walk gives up after twice entries keys.
func walk(fd, keySize int, entries uint32, fn func(key []byte)) error {
	key := make([]byte, keySize)
	next := make([]byte, keySize)
	var cur unsafe.Pointer // nil: the first key
	for n := uint32(0); ; n++ {
		if n > 2*entries {
			return fmt.Errorf("walk of %d keys: the map changed all along", n)
		}
		err := mapElem(unix.BPF_MAP_GET_NEXT_KEY, fd, cur, unsafe.Pointer(&next[0]))
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(next)
		copy(key, next)
		cur = unsafe.Pointer(&key[0])
	}
}

// load loads a program of type typ; for other than a raw tracepoint's,
// expected names the attach type.
func load(typ, expected uint32, name string, insns []byte, log []byte) (int, error) {
	license := []byte("GPL\x00")
	attr := struct {
		Type, InsnCnt          uint32
		Insns, License         unsafe.Pointer
		LogLevel, LogSize      uint32
		LogBuf                 unsafe.Pointer
		KernVersion, ProgFlags uint32
		Name                   [16]byte
		Ifindex, Expected      uint32
	}{Type: typ, InsnCnt: uint32(len(insns) / 8), Insns: unsafe.Pointer(&insns[0]),
		License: unsafe.Pointer(&license[0]), Expected: expected}
	copy(attr.Name[:15], name)
	if len(log) > 0 {
		attr.LogLevel, attr.LogSize, attr.LogBuf = 1, uint32(len(log)), unsafe.Pointer(&log[0])
	}
	return bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// progLoad loads the raw tracepoint program; a refusal carries the end of
// the verifier's log, from a second load that asks for it, since its
// verdict is at the end.
func progLoad(name string, insns []byte) (int, error) {
	fd, err := load(unix.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, name, insns, nil)
	if err == nil {
		return fd, nil
	}
	log := make([]byte, 1<<20)
	if fd2, err2 := load(unix.BPF_PROG_TYPE_RAW_TRACEPOINT, 0, name, insns, log); err2 == nil {
		unix.Close(fd2) // loaded the second time: report the first refusal bare
		return -1, fmt.Errorf("load program: %w", err)
	}
	text := strings.TrimSpace(cString(log))
	const keep = 4000
	if len(text) > keep {
		text = "..." + text[len(text)-keep:]
	}
	if text == "" {
		return -1, fmt.Errorf("load program: %w", err)
	}
	return -1, fmt.Errorf("load program: %w; verifier log:\n%s", err, text)
}

func rawTracepointOpen(name string, prog int) (int, error) {
	b := append([]byte(name), 0)
	attr := struct {
		Name   unsafe.Pointer
		ProgFD uint32
		_      uint32
	}{Name: unsafe.Pointer(&b[0]), ProgFD: uint32(prog)}
	return bpfCall(unix.BPF_RAW_TRACEPOINT_OPEN, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// getNextID is the id after id of the objects cmd walks.
func getNextID(cmd int, id uint32) (uint32, error) {
	attr := struct{ Start, Next, Flags uint32 }{Start: id}
	if _, err := bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return 0, err
	}
	return attr.Next, nil
}

// getFDByID opens the object with this id (cmd says which kind).
func getFDByID(cmd int, id uint32) (int, error) {
	attr := struct{ ID, Next, Flags uint32 }{ID: id}
	return bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// objInfo fills info (size bytes of a struct bpf_*_info) for fd.
func objInfo(fd int, info unsafe.Pointer, size uintptr) error {
	attr := struct {
		FD, Len uint32
		Info    unsafe.Pointer
	}{FD: uint32(fd), Len: uint32(size), Info: info}
	_, err := bpfCall(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// linkInfo is the start of struct bpf_link_info.
type linkInfo struct {
	Type, ID, ProgID uint32
}

// progInfo is struct bpf_prog_info up to its name.
type progInfo struct {
	Type, ID                uint32
	Tag                     [8]byte
	JitedLen, XlatedLen     uint32
	JitedInsns, XlatedInsns uint64
	LoadTime                uint64
	CreatedByUID, NrMapIDs  uint32
	MapIDs                  unsafe.Pointer
	Name                    [16]byte
}

// mapInfo is struct bpf_map_info up to its name.
type mapInfo struct {
	Type, ID, Key, Value, Max, Flags uint32
	Name                             [16]byte
}
