// Package cinit links ronly's C init (ronly_init.c) into the binary and
// speaks its record protocol.
//
// The C init runs as an ELF constructor, before the Go runtime starts
// threads, and only when the supervisor invited it by naming an inherited
// socket in the environment variable EnvFD. Everything else that links this
// package — `ronly --help`, the shims, test binaries — is untouched.
//
// records.go takes records.h's numbers through cgo; TestRecordLayout checks
// that its encoders put every field where the C compiler does.
package cinit

/*
#cgo CFLAGS: -O2 -Wall -Wextra -Wno-unused-parameter
#include <stddef.h>
#include "records.h"
extern int ronly_init_ran;

// Every field of the records, for TestRecordLayout.
struct ronly_field {
	const char *name;
	size_t off, size;
};
#define RONLY_FIELD(s, f) { #s "." #f, offsetof(struct s, f), sizeof(((struct s *)0)->f) }
static const struct ronly_field ronly_fields[] = {
	RONLY_FIELD(ronly_header, magic),
	RONLY_FIELD(ronly_header, version),
	RONLY_FIELD(ronly_header, flags),
	RONLY_FIELD(ronly_header, n_mounts),
	RONLY_FIELD(ronly_header, bpf_len),
	RONLY_FIELD(ronly_header, landlock_abi),
	RONLY_FIELD(ronly_header, fallback_len),
	RONLY_FIELD(ronly_header, report_fd),
	RONLY_FIELD(ronly_header, userns_limits),
	RONLY_FIELD(ronly_header, argv_len),
	RONLY_FIELD(ronly_header, env_len),
	RONLY_FIELD(ronly_userns_limit, name),
	RONLY_FIELD(ronly_userns_limit, value),
	RONLY_FIELD(ronly_mount, kind),
	RONLY_FIELD(ronly_mount, mode),
	RONLY_FIELD(ronly_mount, size),
	RONLY_FIELD(ronly_mount, dev),
	RONLY_FIELD(ronly_mount, ino),
	RONLY_FIELD(ronly_mount, path),
	RONLY_FIELD(ronly_mount, source),
	RONLY_FIELD(ronly_msg, type),
	RONLY_FIELD(ronly_msg, err),
	RONLY_FIELD(ronly_msg, value),
	RONLY_FIELD(ronly_msg, flags),
	RONLY_FIELD(ronly_msg, step),
	RONLY_FIELD(ronly_msg, detail),
};
static struct ronly_field ronly_field_at(size_t i) { return ronly_fields[i]; }
static size_t ronly_n_fields(void) { return sizeof ronly_fields / sizeof ronly_fields[0]; }
*/
import "C"

// EnvFD names the environment variable that invites the C init.
const EnvFD = C.RONLY_ENV_INIT_FD

// Ran reports whether the C init built a sandbox around this process
// before the Go runtime started. When true, this process is the sandbox's
// front-end: namespaces, mounts, capabilities, Landlock and seccomp are in
// force.
func Ran() bool { return C.ronly_init_ran != 0 }

// cField is one field of a record as the C compiler lays it out.
type cField struct{ off, size int }

// cLayout returns every field of the records, by "struct.field", and each
// record's size by "struct", for TestRecordLayout (cgo cannot be used in
// test files).
func cLayout() map[string]cField {
	l := map[string]cField{
		"ronly_header":       {0, int(C.sizeof_struct_ronly_header)},
		"ronly_userns_limit": {0, int(C.sizeof_struct_ronly_userns_limit)},
		"ronly_mount":        {0, int(C.sizeof_struct_ronly_mount)},
		"ronly_msg":          {0, int(C.sizeof_struct_ronly_msg)},
	}
	for i := C.size_t(0); i < C.ronly_n_fields(); i++ {
		f := C.ronly_field_at(i)
		l[C.GoString(f.name)] = cField{int(f.off), int(f.size)}
	}
	return l
}
