package sandbox

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The listener's ioctls copy whole records between the kernel and these
// structs: a struct shorter than the kernel's would be overrun.
func TestNotifSizes(t *testing.T) {
	// struct seccomp_notif_sizes: three __u16.
	var sizes struct{ notif, resp, data uint16 }
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes))); e != 0 {
		t.Fatalf("SECCOMP_GET_NOTIF_SIZES: %v", e)
	}
	if got := unsafe.Sizeof(seccompNotif{}); got != uintptr(sizes.notif) {
		t.Errorf("seccompNotif is %d bytes, the kernel's seccomp_notif %d", got, sizes.notif)
	}
	if got := unsafe.Sizeof(seccompNotifResp{}); got != uintptr(sizes.resp) {
		t.Errorf("seccompNotifResp is %d bytes, the kernel's seccomp_notif_resp %d", got, sizes.resp)
	}
	if got := unsafe.Sizeof(seccompNotif{}.Nr) + unsafe.Sizeof(seccompNotif{}.Arch) + unsafe.Sizeof(seccompNotif{}.IP) +
		unsafe.Sizeof(seccompNotif{}.Args); got != uintptr(sizes.data) {
		t.Errorf("seccompNotif's seccomp_data is %d bytes, the kernel's %d", got, sizes.data)
	}
}
