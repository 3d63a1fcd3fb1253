package sandbox

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// capabilityXattr is the extended attribute that holds a file's
// capabilities: whoever runs the file on the host gets them.
const capabilityXattr = "security.capability"

// xattrNameMax is the longest attribute name the kernel accepts
// (XATTR_NAME_MAX in linux/limits.h).
const xattrNameMax = 255

// xattrNameArg is the argument that points at the attribute's name, by
// syscall number: setxattr, lsetxattr and fsetxattr (name second),
// setxattrat (dfd, path, at_flags, name, ...: fourth; kernel 6.13).
var xattrNameArg = map[int]int{
	unix.SYS_SETXATTR:  1,
	unix.SYS_LSETXATTR: 1,
	unix.SYS_FSETXATTR: 1,
	463:                3,
}

// xattrPathArg is the argument that points at the file's path, for the
// audit line: setxattr and lsetxattr (first), setxattrat (second, relative
// to its dfd). fsetxattr names a descriptor.
var xattrPathArg = map[int]int{
	unix.SYS_SETXATTR:  0,
	unix.SYS_LSETXATTR: 0,
	463:                1,
}

// addXattrMediators registers mediateSetxattr for every setxattr variant.
func addXattrMediators(m map[int]mediator) {
	for nr := range xattrNameArg {
		m[nr] = mediateSetxattr
	}
}

// mediateSetxattr refuses setting security.capability, and counts it; any
// other attribute continues. The name is read from the caller's memory,
// which it can change once we have looked, so the decision must not rest
// on it: it does not. Setting security.capability needs CAP_SETFCAP, and
// the sandbox has dropped every capability but CAP_DAC_READ_SEARCH, so the
// kernel refuses it whatever we answer; other security.* and trusted.*
// names need CAP_SYS_ADMIN. The supervisor only makes the refusal it can
// see counted and audited. A name it cannot read continues too: the
// kernel then reads it (or fails with EFAULT) and its checks apply.
func mediateSetxattr(c *Call) *Refusal {
	name, ok := readCString(int(c.PID), c.Args[xattrNameArg[int(c.Nr)]], xattrNameMax+1)
	if !ok || !c.Valid() || name != capabilityXattr {
		c.Continue()
		return nil
	}
	r := &Refusal{Errno: unix.EPERM, Reason: "security.capability: file capabilities any host user who runs the file gets"}
	if i, ok := xattrPathArg[int(c.Nr)]; ok {
		// For the record only, and read before the answer: once answered,
		// the caller may exit (a refused setfattr does) and its memory
		// with it.
		r.Path, _ = readCString(int(c.PID), c.Args[i], unix.PathMax)
	}
	c.Reply(0, unix.EPERM)
	return r
}

// readCString reads a NUL-terminated string of at most max bytes at addr
// in process pid's memory. It reads page by page, so that a string ending
// just before an unmapped page is still read.
func readCString(pid int, addr uint64, max int) (string, bool) {
	if addr == 0 {
		return "", false
	}
	page := uint64(unix.Getpagesize())
	var out []byte
	for len(out) < max {
		n := int(page - addr%page) // to the end of addr's page
		n = min(n, max-len(out))
		buf := make([]byte, n)
		local := []unix.Iovec{{Base: &buf[0], Len: uint64(n)}}
		remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: n}}
		got, err := unix.ProcessVMReadv(pid, local, remote, 0)
		if err != nil || got <= 0 {
			return "", false
		}
		buf = buf[:got]
		if i := bytes.IndexByte(buf, 0); i >= 0 {
			return string(append(out, buf[:i]...)), true
		}
		out = append(out, buf...)
		addr += uint64(got)
	}
	return "", false // longer than any name the kernel accepts
}
