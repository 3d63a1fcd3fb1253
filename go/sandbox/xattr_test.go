package sandbox

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readCString reads another process's memory with process_vm_readv; its
// own works the same way.
func TestReadCString(t *testing.T) {
	page := unix.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// The second page inaccessible: a name that ends at the first page's
	// end must still be read, one that runs into the second must not.
	if err := unix.Mprotect(mem[page:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	pid := os.Getpid()

	name := capabilityXattr + "\x00"
	at := page - len(name)
	copy(mem[at:], name)
	if got, ok := readCString(pid, base+uint64(at), xattrNameMax+1); !ok || got != capabilityXattr {
		t.Errorf("name at the end of a page: %q, %v", got, ok)
	}
	copy(mem[page-4:], "user")
	if got, ok := readCString(pid, base+uint64(page-4), xattrNameMax+1); ok {
		t.Errorf("name running into an unmapped page: read %q", got)
	}
	// Across a page boundary, in the middle of a mapping.
	long := strings.Repeat("x", 200)
	buf := make([]byte, 3*page)
	start := page - 100 - int(uintptr(unsafe.Pointer(&buf[0])))%page + page
	copy(buf[start:], long+"\x00")
	if got, ok := readCString(pid, uint64(uintptr(unsafe.Pointer(&buf[start]))), xattrNameMax+1); !ok || got != long {
		t.Errorf("name across pages: %d bytes, %v", len(got), ok)
	}
	copy(buf[start:], strings.Repeat("y", 300))
	if _, ok := readCString(pid, uint64(uintptr(unsafe.Pointer(&buf[start]))), xattrNameMax+1); ok {
		t.Error("a name longer than XATTR_NAME_MAX was read")
	}
	if _, ok := readCString(pid, 0, xattrNameMax+1); ok {
		t.Error("NULL was read")
	}
}
