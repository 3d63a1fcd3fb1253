package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The sockfd suite: socket calls in landlock-only mode where pidfd_getfd is
// refused (Docker's default seccomp profile without CAP_SYS_PTRACE). The
// supervisor then makes the session's sockets itself and installs them with
// SECCOMP_IOCTL_NOTIF_ADDFD (go/sandbox/sockfd.go), so socket() takes a
// round trip too, and it reads the caller's memory through /proc/PID/mem,
// since process_vm_readv is refused as well. Three ways, interleaved:
// outside ronly; inside `ronly --mode landlock-only` under a Docker-like
// filter with CAP_SYS_PTRACE (pidfd_getfd allowed); and the same without
// it (the sockfd path).

// dockerFilter is Docker's default seccomp profile as far as ronly's calls
// go (not its whole list): no new namespaces (unshare or clone with a
// namespace flag, EPERM), clone3 ENOSYS (libc then falls back to clone,
// whose flags the filter can read), pivot_root EPERM; and without
// CAP_SYS_PTRACE (ptrace false) pidfd_getfd, process_vm_readv and
// process_vm_writev EPERM.
func dockerFilter(ptrace bool) []unix.SockFilter {
	const newNS = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	refuse := func(e unix.Errno) unix.SockFilter { return ret(unix.SECCOMP_RET_ERRNO | uint32(e)) }
	type rule struct {
		nr    uint32
		errno unix.Errno
	}
	rules := []rule{{unix.SYS_CLONE3, unix.ENOSYS}, {unix.SYS_PIVOT_ROOT, unix.EPERM}}
	if !ptrace {
		rules = append(rules, rule{unix.SYS_PIDFD_GETFD, unix.EPERM},
			rule{unix.SYS_PROCESS_VM_READV, unix.EPERM}, rule{unix.SYS_PROCESS_VM_WRITEV, unix.EPERM})
	}
	prog := []unix.SockFilter{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}} // seccomp_data.nr
	for _, r := range rules {
		prog = append(prog, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: r.nr, Jt: 0, Jf: 1}, refuse(r.errno))
	}
	return append(prog,
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_UNSHARE, Jt: 1, Jf: 0},
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_CLONE, Jt: 0, Jf: 3},
		unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 16}, // args[0], low half on little-endian
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: newNS, Jt: 0, Jf: 1},
		refuse(unix.EPERM),
		ret(unix.SECCOMP_RET_ALLOW),
	)
}

// underDocker is the child keyword "docker-seccomp ptrace|no-ptrace
// ARGV...": it puts this thread under dockerFilter and execs argv, which
// keeps the filter (no_new_privs, so no root needed), as ronly started in
// such a container would be.
func underDocker(which string, argv []string) {
	if which != "ptrace" && which != "no-ptrace" {
		fatal(fmt.Errorf("docker-seccomp %s: want ptrace or no-ptrace", which))
	}
	// The filter binds only this thread (no TSYNC): the one that execs.
	runtime.LockOSThread()
	loadFilter(dockerFilter(which == "ptrace"), 0)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fatal(err)
	}
	fatal(unix.Exec(path, argv, os.Environ()))
}

// loopSocket is the child keyword "loop-socket N": N rounds of
// socket(AF_INET, SOCK_DGRAM) and close. It prints the mean and the median
// wall time per round in ns: the mean carries the supervisor's sweeps of
// its socket copies (one every 64 sockets here), the median a plain round.
func loopSocket(nStr string) {
	timedRounds(nStr, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fatal(fmt.Errorf("socket: %w", err))
		}
		unix.Close(fd)
	})
}

// loopUDP is the child keyword "loop-udp N": a UDP socket of this process
// on 127.0.0.1 drains what it gets, and N rounds of socket, connect to
// it, send of 64 bytes (sendto without an address, as libc's send) and
// close; it prints as loopSocket does.
func loopUDP(nStr string) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fatal(err)
	}
	defer srv.Close()
	got := make(chan int)
	go func() {
		b, n := make([]byte, 128), 0
		for {
			if _, err := srv.Read(b); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	to := &unix.SockaddrInet4{Port: srv.LocalAddr().(*net.UDPAddr).Port, Addr: [4]byte{127, 0, 0, 1}}
	msg := make([]byte, 64)
	timedRounds(nStr, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fatal(fmt.Errorf("socket: %w", err))
		}
		if err := unix.Connect(fd, to); err != nil {
			fatal(fmt.Errorf("connect: %w", err))
		}
		if err := unix.Sendto(fd, msg, 0, nil); err != nil {
			fatal(fmt.Errorf("send: %w", err))
		}
		unix.Close(fd)
	})
}

// timedRounds runs round n times on one thread and prints the mean and
// the median wall time per round, in ns. Wall time, not CPU time: the
// cost is mostly the supervisor's, in another process.
func timedRounds(nStr string, round func()) {
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 1 {
		fatal(fmt.Errorf("rounds %q: want a positive number", nStr))
	}
	runtime.LockOSThread()
	each := make([]time.Duration, n)
	t0 := time.Now()
	for i := range each {
		c0 := time.Now()
		round()
		each[i] = time.Since(c0)
	}
	total := time.Since(t0)
	fmt.Println(float64(total.Nanoseconds())/float64(n), float64(median(each).Nanoseconds()))
}

// sockfdHold is the child keyword "sockfd-hold": inside the session, it
// makes a UDP socket, prints its inode and holds the socket until its
// stdin closes, so the bench can look for the supervisor's copy from
// outside.
func sockfdHold() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal(fmt.Errorf("socket: %w", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		fatal(err)
	}
	fmt.Println(st.Ino)
	b := make([]byte, 1)
	for {
		if n, err := os.Stdin.Read(b); n == 0 || err != nil {
			break
		}
	}
	unix.Close(fd)
}

// checkSockfdPath runs `ronly -v` under the filter (ptrace or no-ptrace)
// with sockfdHold as the command and fails the suite unless the session
// took the path the variant is named for. From outside: the supervisor
// (the process the bench started, which execs ronly) holds a descriptor of
// the socket the session just made, before any connect, only on the
// sockfd path (with pidfd_getfd allowed it takes one per mediated call and
// closes it). From ronly: the -v layers line says landlock-only with
// socket mediation on (Layers has no field of its own for the sockfd
// path), and no warning says every socket call is refused (nons.go's
// refuseSockets, where ADDFD is missing).
func checkSockfdPath(ronly, self, which string) {
	cmd := exec.Command(self, "docker-seccomp", which, ronly, "-v", "--no-metrics", "--mode", "landlock-only", "--", self, "sockfd-hold")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		fatal(err)
	}
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	fail := func(format string, a ...any) {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
		fatal(fmt.Errorf("sockfd check (%s): %s\nronly -v said:\n%s", which, fmt.Sprintf(format, a...), stderr.String()))
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var ino uint64
	if _, serr := fmt.Sscan(line, &ino); err != nil || serr != nil {
		fail("no inode from the session: %q (%v)", line, err)
	}
	// ronly's own policy refuses pidfd_getfd inside, so only the
	// supervisor's status tells that the outer filter is on it.
	if n := seccompFilters(cmd.Process.Pid); n < 1 {
		fail("the supervisor (pid %d) runs under no seccomp filter", cmd.Process.Pid)
	}
	held := supervisorHolds(cmd.Process.Pid, ino)
	in.Close()
	if err := cmd.Wait(); err != nil {
		fatal(fmt.Errorf("sockfd check (%s): %v\n%s", which, err, stderr.String()))
	}
	var layers string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, " mode=") {
			layers = l
		}
	}
	switch {
	case !strings.Contains(layers, "mode=landlock-only") || !strings.Contains(layers, "socket_mediation=true"):
		fail("the layers line is not mode=landlock-only with socket_mediation=true: %q", layers)
	case strings.Contains(stderr.String(), "pidfd_getfd is refused here"):
		fail("ronly refuses every socket call (no SECCOMP_IOCTL_NOTIF_ADDFD?) instead of making the sockets")
	case which == "no-ptrace" && !held:
		fail("the supervisor (pid %d) holds no copy of the session's socket (inode %d): not the sockfd path", cmd.Process.Pid, ino)
	case which == "ptrace" && held:
		fail("the supervisor (pid %d) holds a copy of the session's socket (inode %d) with pidfd_getfd allowed", cmd.Process.Pid, ino)
	}
}

// seccompFilters is the number of seccomp filters on process pid
// (Seccomp_filters in its status).
func seccompFilters(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fatal(fmt.Errorf("the supervisor's status: %w", err))
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// supervisorHolds says whether process pid has a descriptor of the socket
// with inode ino.
func supervisorHolds(pid int, ino uint64) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		fatal(fmt.Errorf("the supervisor's descriptors: %w", err))
	}
	want := fmt.Sprintf("socket:[%d]", ino)
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
			return true
		}
	}
	return false
}

// loopRun2 runs a timedRounds child and returns its mean and median.
func loopRun2(cmd *exec.Cmd) (mean, p50 float64) {
	b, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v\n%s", err, ee.Stderr)
		}
		fatal(fmt.Errorf("%v: %v", cmd.Args, err))
	}
	if _, err := fmt.Sscan(string(b), &mean, &p50); err != nil {
		fatal(fmt.Errorf("%v: %q: %v", cmd.Args, b, err))
	}
	return mean, p50
}

// sockfdBench compares the two loops outside, inside with pidfd_getfd
// allowed and inside on the sockfd path, interleaved, runs rounds.
func sockfdBench(ronly, self string, runs int) {
	checkSockfdPath(ronly, self, "ptrace")
	checkSockfdPath(ronly, self, "no-ptrace")
	const n = "2000"
	inside := func(which, loop string) *exec.Cmd {
		return exec.Command(self, "docker-seccomp", which, ronly, "--no-metrics", "--mode", "landlock-only", "--", self, loop, n)
	}
	fmt.Printf("socket calls in landlock-only mode, pidfd_getfd allowed vs refused (the sockfd path), %s calls a run\n", n)
	fmt.Println("  (inside: ronly under a Docker-like seccomp filter, with and without CAP_SYS_PTRACE's calls; wall time per call,")
	fmt.Println("   medians over rounds of each run's mean, and of each run's median call; ratio and difference: medians per round)")
	for _, l := range []struct{ name, arg string }{
		{"socket+close (UDP)", "loop-socket"},
		{"UDP socket+connect+send 64 B+close", "loop-udp"},
	} {
		var mean, p50 [3][]float64
		for r := 0; r < runs; r++ {
			for i, cmd := range []*exec.Cmd{exec.Command(self, l.arg, n), inside("ptrace", l.arg), inside("no-ptrace", l.arg)} {
				m, p := loopRun2(cmd)
				mean[i], p50[i] = append(mean[i], m), append(p50[i], p)
			}
		}
		fmt.Printf("  %s\n", l.name)
		for i, v := range []string{"outside", "pidfd_getfd allowed", "sockfd (refused)"} {
			d, q := make([]float64, runs), make([]float64, runs)
			for r := range d {
				d[r], q[r] = mean[i][r]-mean[0][r], mean[i][r]/mean[0][r]
			}
			fmt.Printf("    %-20s mean %8.2f us (%5.2fx, %+8.2f us)   median call %8.2f us\n",
				v, median(mean[i])/1000, median(q), median(d)/1000, median(p50[i])/1000)
		}
	}
	// Each sweep of the supervisor's copies (sockfd.go) reads every
	// process's descriptors: the mean grows with the host.
	procs, fds := hostDescriptors()
	fmt.Printf("  host at the end: %d processes, %d descriptors\n\n", procs, fds)
}

// hostDescriptors counts the processes in /proc and their descriptors.
func hostDescriptors() (procs, fds int) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if fd, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd")); err == nil {
			procs, fds = procs+1, fds+len(fd)
		}
	}
	return procs, fds
}
