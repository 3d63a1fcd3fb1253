// Package cinit links ronly's C init (ronly_init.c) into the binary and
// speaks its record protocol.
//
// The C init runs as an ELF constructor, before the Go runtime starts
// threads, and only when the supervisor invited it by naming an inherited
// socket in the environment variable EnvFD. Everything else that links this
// package — `ronly --help`, the shims, test binaries — is untouched.
//
// records.go mirrors records.h; TestRecordSizes keeps the two in step.
package cinit

/*
#cgo CFLAGS: -O2 -Wall -Wextra -Wno-unused-parameter
#include "records.h"
extern int ronly_init_ran;
*/
import "C"

// EnvFD names the environment variable that invites the C init.
const EnvFD = "_RONLY_INIT_FD"

// Ran reports whether the C init built a sandbox around this process
// before the Go runtime started. When true, this process is the sandbox's
// front-end: namespaces, mounts, capabilities, Landlock and seccomp are in
// force.
func Ran() bool { return C.ronly_init_ran != 0 }

// cSizes returns sizeof of the C records and the mount record limit, for
// TestRecordSizes (cgo cannot be used in test files).
func cSizes() (header, mount, msg, maxMounts int) {
	return int(C.sizeof_struct_ronly_header), int(C.sizeof_struct_ronly_mount), int(C.sizeof_struct_ronly_msg), int(C.RONLY_MAX_MOUNTS)
}
