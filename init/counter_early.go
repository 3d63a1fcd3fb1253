package cinit

/*
#include <stdlib.h>
#include "counter_early.h"
*/
import "C"

import (
	"os"
	"sync/atomic"
	"unsafe"
)

// WriteWatchBinary is the write counter helper's file name, as the
// constructor in counter_early.c looks it up (remote.Binary).
const WriteWatchBinary = C.RONLY_WRITEWATCH

// EnvShimReport is set in every session's environment (shims.EnvReportFD):
// the constructor starts no helper inside a session.
const EnvShimReport = C.RONLY_ENV_SHIM_REPORT

// EarlyCounter is the write counter's helper that counter_early.c started
// before the Go runtime, because the command line asked for counting: a
// child of this process, on three pipes.
type EarlyCounter struct {
	Pid    int
	Events bool     // started with --events
	Stdin  *os.File // its stdin's write end
	Stdout *os.File // its stdout's read end
	Stderr *os.File // its stderr's read end
}

// TakeEarlyCounter returns the helper the constructor started, to the
// first caller only (nil to the others, and when none was started). The
// caller owns it: it must adopt it, or end and reap it.
func TakeEarlyCounter() *EarlyCounter {
	if earlyTaken.Swap(true) || C.ronly_early_counter_pid <= 0 {
		return nil
	}
	return &EarlyCounter{
		Pid:    int(C.ronly_early_counter_pid),
		Events: C.ronly_early_counter_events != 0,
		Stdin:  os.NewFile(uintptr(C.ronly_early_counter_fds[0]), "ronly-writewatch stdin"),
		Stdout: os.NewFile(uintptr(C.ronly_early_counter_fds[1]), "ronly-writewatch stdout"),
		Stderr: os.NewFile(uintptr(C.ronly_early_counter_fds[2]), "ronly-writewatch stderr"),
	}
}

// earlyTaken is set by the first TakeEarlyCounter: the descriptors have
// one owner.
var earlyTaken atomic.Bool

// GuessesCounting is what counter_early.c reads from ronly's arguments
// (without the program name) before the Go runtime starts: whether it
// starts the helper, and with --events. For tests, which hold it to the Go
// side's reading (cgo cannot be used in test files).
func GuessesCounting(args []string) (count, events bool) {
	argv, free := cArgv(args)
	defer free()
	var ev C.int
	count = C.ronly_asks_counting(C.int(len(argv)-1), &argv[0], &ev) != 0
	return count, ev != 0
}

// cArgv is ronly's argv as C has it: "ronly", then args, then NULL; free
// releases it.
func cArgv(args []string) (argv []*C.char, free func()) {
	argv = make([]*C.char, 0, len(args)+2)
	argv = append(argv, C.CString("ronly"))
	for _, a := range args {
		argv = append(argv, C.CString(a))
	}
	return append(argv, nil), func() {
		for _, p := range argv {
			C.free(unsafe.Pointer(p))
		}
	}
}
