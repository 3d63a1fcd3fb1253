// Package kernelver tells which Linux release is running, for what came
// with a release and that no cheaper check finds: the hint a failed call
// gets (a call the kernel lacks, or one a container's profile refuses),
// whether the seccomp listener can install descriptors, whether tmpfs
// holds user.* extended attributes.
package kernelver

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release is the running kernel's release, as `uname -r` prints it; ""
// when uname fails.
func Release() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// AtLeast says whether release rel ("6.1.0-27-amd64") is major.minor or
// newer; false when it cannot tell.
func AtLeast(rel string, major, minor int) bool {
	f := strings.FieldsFunc(rel, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(f[0])
	mi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
