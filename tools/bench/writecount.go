package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// The suites that show what counting refused writes costs: nothing by
// default (no eBPF is attached), and with --count-writes either fexit
// programs on the write-class syscalls (only those pay) or, where the
// kernel has no BPF trampolines, a program at the sys_exit tracepoint,
// which every syscall on the host pays for while the session runs.

// session is a ronly session kept running (its command waits on stdin)
// while something is measured outside it.
type session struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startSession starts ronly with flags and waits until its command runs,
// so that whatever the session attaches is attached.
func startSession(ronly string, flags ...string) *session {
	args := append(append([]string{"--no-metrics"}, flags...), "--", "/bin/sh", "-c", "echo ready; read x; exit 0")
	cmd := exec.Command(ronly, args...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		fatal(fmt.Errorf("session %v did not start: %q %v", args, line, err))
	}
	go io.Copy(io.Discard, stdout)
	return &session{cmd: cmd, stdin: stdin}
}

func (s *session) stop() {
	s.stdin.Close()
	if err := s.cmd.Wait(); err != nil {
		fatal(fmt.Errorf("session: %v", err))
	}
}

// pinOneCPU pins the calling thread, and so the children it starts, to the
// last CPU: a few nanoseconds are the question, so migrations and the
// other CPU's caches stay out of the numbers. It returns the undo.
func pinOneCPU() func() {
	runtime.LockOSThread()
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		fatal(err)
	}
	last := 0
	for cpu := 0; cpu < 1024; cpu++ {
		if all.IsSet(cpu) {
			last = cpu
		}
	}
	one.Set(last)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		fatal(err)
	}
	return func() {
		unix.SchedSetaffinity(0, &all)
		runtime.UnlockOSThread()
	}
}

// syscalls times an allowed getppid loop inside ronly and outside it:
// outside with no session, outside while a default session runs and while
// a --count-writes session runs (the host-wide tax of write counting), and
// inside both. The floor is an allow-all seccomp filter outside.
func syscalls(ronly, self string, runs int) {
	const n = "500000"
	defer pinOneCPU()()
	loop := func(argv ...string) float64 { return loopRun(exec.Command(argv[0], argv[1:]...)) }
	var out, any, outDefault, outCounting, in, inCounting []float64
	for r := 0; r < runs; r++ {
		out = append(out, loop(self, "loop", "getppid", n))
		any = append(any, loop(self, "loop-allow-all", n))
		s := startSession(ronly)
		outDefault = append(outDefault, loop(self, "loop", "getppid", n))
		s.stop()
		s = startSession(ronly, "--count-writes")
		outCounting = append(outCounting, loop(self, "loop", "getppid", n))
		s.stop()
		in = append(in, loop(ronly, "--no-metrics", self, "loop", "getppid", n))
		inCounting = append(inCounting, loop(ronly, "--no-metrics", "--count-writes", self, "loop", "getppid", n))
	}
	hook := writeCounter(ronly)
	// Deltas are medians of the per-round differences: each round runs
	// every variant back to back, so drift between rounds cancels.
	diff := func(a, b []float64) float64 {
		d := make([]float64, len(a))
		for i := range a {
			d[i] = a[i] - b[i]
		}
		return median(d)
	}
	fmt.Printf("allowed syscall (getppid), the loop's CPU time per call, pinned to one CPU; --count-writes counts with %s here\n", hook)
	fmt.Printf("  outside, no session          %8.1f ns\n", median(out))
	fmt.Printf("  outside, a session running   %8.1f ns   %+6.1f ns per call (default flags: nothing attached)\n", median(outDefault), diff(outDefault, out))
	fmt.Printf("  outside, --count-writes one  %8.1f ns   %+6.1f ns per call (the host-wide tax of counting)\n", median(outCounting), diff(outCounting, out))
	fmt.Printf("  outside, allow-all filter    %8.1f ns   %+6.1f ns per call (any filter's entry cost: the floor inside)\n", median(any), diff(any, out))
	fmt.Printf("  inside ronly                 %8.1f ns   %+6.1f ns per call, %+6.1f ns over allow-all\n", median(in), diff(in, out), diff(in, any))
	fmt.Printf("  inside, --count-writes       %8.1f ns   %+6.1f ns per call, %+6.1f ns over allow-all\n\n", median(inCounting), diff(inCounting, out), diff(inCounting, any))
}

// writeCounter asks a --count-writes session how it counts: "fexit" or
// "tracepoint" (its report's write_counter).
func writeCounter(ronly string) string {
	f, err := os.CreateTemp("", "ronly-bench-report-")
	if err != nil {
		fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	cmd := exec.Command(ronly, "--no-metrics", "--count-writes", "--report", f.Name(), "/bin/true")
	if err := cmd.Run(); err != nil {
		fatal(err)
	}
	b, _ := os.ReadFile(f.Name())
	for _, h := range []string{"fexit", "tracepoint"} {
		if strings.Contains(string(b), `"write_counter": "`+h+`"`) {
			return h
		}
	}
	return "nothing (unavailable)"
}

// writeHeavy untars 20,000 small files into a tmpfs and deletes them:
// outside (a tmpfs of the same size), under bwrap (its own tmpfs /tmp),
// inside ronly (its /tmp) with default flags and with --count-writes, and
// the floors: Landlock with ronly's write rules, and with an allow-all
// filter as well.
func writeHeavy(ronly, bwrap, self, work string, runs int) {
	tarball := filepath.Join(work, "files.tar")
	if err := makeTarball(tarball, 20000); err != nil {
		fatal(err)
	}
	hostTmp := filepath.Join(work, "tmpfs")
	os.Mkdir(hostTmp, 0o755)
	if err := unix.Mount("tmpfs", hostTmp, "tmpfs", 0, "size=512m"); err != nil {
		fatal(fmt.Errorf("mount tmpfs for the outside run: %w", err))
	}
	defer unix.Unmount(hostTmp, unix.MNT_DETACH)
	script := `mkdir "$1/w" && tar -x -C "$1/w" -f "$2" && rm -rf "$1/w"`
	vs := []variant{
		{"outside", []string{"/bin/sh", "-c", script, "sh", hostTmp, tarball}},
		{"inside ronly", []string{ronly, "--no-metrics", "--tmpfs-size", "512m", "/bin/sh", "-c", script, "sh", "/tmp", tarball}},
		{"inside, --count-writes", []string{ronly, "--no-metrics", "--count-writes", "--tmpfs-size", "512m", "/bin/sh", "-c", script, "sh", "/tmp", tarball}},
		{"outside, Landlock", []string{self, "confine", hostTmp, "nofilter", "/bin/sh", "-c", script, "sh", hostTmp, tarball}},
		{"outside, Landlock + filter", []string{self, "confine", hostTmp, "filter", "/bin/sh", "-c", script, "sh", hostTmp, tarball}},
	}
	haveBwrap := false
	if _, err := os.Stat(bwrap); err == nil {
		haveBwrap = true
		vs = append(vs, variant{"bwrap", []string{bwrap, "--unshare-user", "--unshare-ipc", "--unshare-uts",
			"--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/tmp", "--new-session", "--die-with-parent",
			"/bin/sh", "-c", script, "sh", "/tmp", tarball}})
	}
	t := timeRuns(vs, runs)
	fmt.Printf("write-heavy (untar + delete 20,000 files in /tmp), %d rounds; --count-writes counts with %s here\n", runs, writeCounter(ronly))
	fmt.Printf("  outside                      %8.1f ms\n", ms(median(t[0])))
	if haveBwrap {
		fmt.Printf("  bwrap                        %8.1f ms   %5.2fx outside\n", ms(median(t[5])), ratio(t[5], t[0]))
	}
	for i, label := range []string{"inside ronly", "inside, --count-writes"} {
		fmt.Printf("  %-28s %8.1f ms   %5.2fx outside", label, ms(median(t[1+i])), ratio(t[1+i], t[0]))
		if haveBwrap {
			fmt.Printf("   %5.2fx bwrap", ratio(t[1+i], t[5]))
		}
		fmt.Println()
	}
	fmt.Printf("  floor: outside, Landlock     %8.1f ms   %5.2fx outside (ronly's write rules, nothing else)\n", ms(median(t[3])), ratio(t[3], t[0]))
	fmt.Printf("  floor: + allow-all filter    %8.1f ms   %5.2fx outside (the layers the issue requires)\n\n", ms(median(t[4])), ratio(t[4], t[0]))
}
