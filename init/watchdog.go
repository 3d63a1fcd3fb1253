package cinit

/*
#include <stdlib.h>
#include "watchdog.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync/atomic"
)

// EnvSweep is set, alone, in the environment of the ronly a watchdog
// (watchdog.c) execs when its supervisor died without dismissing it: that
// ronly sweeps dead sessions' cgroups and exits.
const EnvSweep = C.RONLY_ENV_SWEEP

// Watchdog is the child watchdog.c forked before the Go runtime started:
// until Dismiss, this process's death makes it sweep (see EnvSweep).
type Watchdog struct {
	pid  int
	pipe *os.File
}

// TakeWatchdog returns the watchdog, to the first caller only (nil to the
// others, and when none was forked). The caller dismisses it once it has
// cleaned up.
func TakeWatchdog() *Watchdog {
	if watchdogTaken.Swap(true) || C.ronly_watchdog_pid <= 0 {
		return nil
	}
	return &Watchdog{pid: int(C.ronly_watchdog_pid), pipe: os.NewFile(uintptr(C.ronly_watchdog_fd), "ronly-watchdog")}
}

// watchdogTaken is set by the first TakeWatchdog: the pipe has one owner.
var watchdogTaken atomic.Bool

// WatchdogPid is the watchdog's pid, 0 when none was forked: a child of
// this process that is not a session's, which a session's cleanup must
// spare.
func WatchdogPid() int { return int(C.ronly_watchdog_pid) }

// Dismiss tells the watchdog that this process cleaned up after its
// session, and reaps it. Nil does nothing.
func (w *Watchdog) Dismiss() error {
	if w == nil {
		return nil
	}
	_, werr := w.pipe.Write([]byte{C.RONLY_WATCHDOG_DISMISS})
	w.pipe.Close()
	p, err := os.FindProcess(w.pid)
	if err == nil {
		_, err = p.Wait()
	}
	if werr != nil {
		return fmt.Errorf("dismissing the watchdog (pid %d): %w", w.pid, werr)
	}
	if err != nil {
		return fmt.Errorf("reaping the watchdog (pid %d): %w", w.pid, err)
	}
	return nil
}

// WantsWatchdog is what watchdog.c reads from ronly's arguments (without
// the program name) before the Go runtime starts: whether it forks a
// watchdog. For tests (cgo cannot be used in test files).
func WantsWatchdog(args []string) bool {
	argv, free := cArgv(args)
	defer free()
	return C.ronly_wants_watchdog(C.int(len(argv)-1), &argv[0]) != 0
}
