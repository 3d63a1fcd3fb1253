package sandbox

import (
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// killDescendants kills everything the command left running. ronly is a
// child subreaper, so every orphan of the session is (or becomes, once its
// parent dies) our child. Each round kills our current children and reaps
// them; their own children then reparent to us for the next round. It never
// uses kill(-1), which would reach far beyond the session.
//
// spare are children of ours that are not the session's, left alone: the
// write counter's helper, which must end on its own after the session (see
// watchWrites), and the watchdog (cinit.WatchdogPid), which must outlive
// this cleanup. Neither starts anything.
func killDescendants(spare ...int) {
	for round := 0; round < 10000; round++ {
		kids := slices.DeleteFunc(children(), func(pid int) bool { return slices.Contains(spare, pid) })
		if len(kids) == 0 {
			return
		}
		for _, pid := range kids {
			// Our unreaped child: its pid cannot be reused under us.
			unix.Kill(pid, unix.SIGKILL)
		}
		for _, pid := range kids {
			var ws unix.WaitStatus
			for {
				_, err := unix.Wait4(pid, &ws, 0, nil)
				if err != unix.EINTR {
					break
				}
			}
		}
	}
}

// children lists this process's child pids from /proc/self/task/*/children.
// Read with bare open and read: os.ReadFile's fstat and fcntl per file
// doubled the cost, a dozen threads' worth at every session's end.
func children() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var out []int
	buf := make([]byte, 4096)
	for _, t := range tasks {
		fd, err := unix.Open("/proc/self/task/"+t.Name()+"/children", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var b []byte
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EINTR {
				continue // the runtime's preemption signal
			}
			if n <= 0 || err != nil {
				break
			}
			b = append(b, buf[:n]...)
		}
		unix.Close(fd)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}
