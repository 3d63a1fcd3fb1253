package writewatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmlinuxBTF is where the kernel describes its own types and functions;
// an fexit program names the function it attaches to by its id there.
const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// BTF_KIND_FUNC, and the size of struct btf_type, which each kind's own
// data follows in the type section.
const (
	btfKindFunc = 12
	btfTypeLen  = 12
)

// funcIDs returns the BTF type ids of the functions of these names in the
// kernel's own BTF; names it lacks are missing from the result.
func funcIDs(names map[string]bool) (map[string]uint32, error) {
	b, err := kernelBTF()
	if err != nil {
		return nil, err
	}
	return scanFuncs(b, names)
}

// kernelBTF returns the kernel's BTF (about 6 MB). The bpf syscall copies
// it in one call; sysfs hands it out a page per read (1,300 reads, about
// 10 ms on a VM), so that file is only the fallback.
func kernelBTF() ([]byte, error) {
	for id, err := nextID(unix.BPF_BTF_GET_NEXT_ID, 0); err == nil; id, err = nextID(unix.BPF_BTF_GET_NEXT_ID, id) {
		fd, err := fdByID(unix.BPF_BTF_GET_FD_BY_ID, id)
		if err != nil {
			continue
		}
		b, ok := btfOfVmlinux(fd)
		unix.Close(fd)
		if ok {
			return b, nil
		}
	}
	b, err := os.ReadFile(vmlinuxBTF)
	if err != nil {
		return nil, fmt.Errorf("read kernel BTF: %w", err)
	}
	return b, nil
}

// btfOfVmlinux returns the data of the BTF object fd if it is the
// kernel's own (not a module's, not a program's).
func btfOfVmlinux(fd int) ([]byte, bool) {
	// struct bpf_btf_info: btf (u64 address) at 0, btf_size at 8, id at
	// 12, name (u64 address) at 16, name_len at 24, kernel_btf at 28. The
	// kernel writes to memory the info names by address only: pinned.
	le := binary.LittleEndian
	var name [16]byte
	var pin runtime.Pinner
	pin.Pin(&name[0])
	defer pin.Unpin()
	info := make([]byte, 32)
	le.PutUint64(info[16:], uint64(uintptr(unsafe.Pointer(&name[0]))))
	le.PutUint32(info[24:], uint32(len(name)))
	if objInfo(fd, info) != nil || le.Uint32(info[28:]) == 0 || cString(name[:]) != "vmlinux" {
		return nil, false
	}
	b := make([]byte, le.Uint32(info[8:]))
	if len(b) == 0 {
		return nil, false
	}
	pin.Pin(&b[0])
	info = make([]byte, 32)
	le.PutUint64(info[0:], uint64(uintptr(unsafe.Pointer(&b[0]))))
	le.PutUint32(info[8:], uint32(len(b)))
	if objInfo(fd, info) != nil || int(le.Uint32(info[8:])) != len(b) {
		return nil, false
	}
	return b, true
}

// scanFuncs finds the FUNC entries of these names in raw BTF (struct
// btf_header, then the type and string sections; include/uapi/linux/btf.h).
// It walks the type section once and compares a name only when its first
// bytes match a wanted one's: 60,000 functions, a hundred wanted.
func scanFuncs(b []byte, names map[string]bool) (map[string]uint32, error) {
	le := binary.LittleEndian
	// struct btf_header: magic u16, version u8, flags u8, then u32s:
	// hdr_len, type_off, type_len, str_off, str_len.
	if len(b) < 24 || le.Uint16(b) != 0xeb9f {
		return nil, errors.New("kernel BTF: bad header")
	}
	hdrLen := int(le.Uint32(b[4:]))
	typeOff, typeLen := int(le.Uint32(b[8:])), int(le.Uint32(b[12:]))
	strOff, strLen := int(le.Uint32(b[16:])), int(le.Uint32(b[20:]))
	if hdrLen < 24 || hdrLen+typeOff+typeLen > len(b) || hdrLen+strOff+strLen > len(b) {
		return nil, errors.New("kernel BTF: sections out of bounds")
	}
	types := b[hdrLen+typeOff : hdrLen+typeOff+typeLen]
	strs := b[hdrLen+strOff : hdrLen+strOff+strLen]
	prefixes := map[string]bool{}
	for n := range names {
		if len(n) < 4 {
			return nil, fmt.Errorf("kernel BTF: name %q too short", n)
		}
		prefixes[n[:4]] = true
	}
	found := map[string]uint32{}
	id := uint32(1) // id 0 is void
	for off := 0; off+btfTypeLen <= len(types); id++ {
		nameOff, info := int(le.Uint32(types[off:])), le.Uint32(types[off+4:])
		kind, vlen := (info>>24)&0x1f, int(info&0xffff)
		if kind == btfKindFunc && nameOff+4 <= len(strs) && prefixes[string(strs[nameOff:nameOff+4])] {
			if end := bytes.IndexByte(strs[nameOff:], 0); end > 0 && names[string(strs[nameOff:nameOff+end])] {
				found[string(strs[nameOff:nameOff+end])] = id
			}
		}
		extra, err := btfExtra(kind, vlen)
		if err != nil {
			return nil, fmt.Errorf("kernel BTF: type %d: %w", id, err)
		}
		off += btfTypeLen + extra
	}
	return found, nil
}

// btfExtra is the size of the data that follows a struct btf_type of this
// kind.
func btfExtra(kind uint32, vlen int) (int, error) {
	switch kind {
	case 2, 7, 8, 9, 10, 11, 12, 16, 18: // ptr, fwd, typedef, volatile, const, restrict, func, float, type_tag
		return 0, nil
	case 1, 14, 17: // int, var, decl_tag
		return 4, nil
	case 3: // array
		return 12, nil
	case 4, 5, 15, 19: // struct, union, datasec, enum64
		return 12 * vlen, nil
	case 6, 13: // enum, func_proto
		return 8 * vlen, nil
	}
	return 0, fmt.Errorf("unknown kind %d", kind)
}
