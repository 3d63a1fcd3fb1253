// Command bench measures ronly against named baselines in one run on one
// machine and prints medians and ratios:
//
//	startup     ronly /bin/true  vs  plain exec  vs  bwrap with comparable isolation
//	            vs  the Go floor: ronly's C init driven by a minimal Go program
//	syscall     an allowed getppid loop inside ronly vs outside, and outside
//	            while a session runs, with and without --count-writes
//	refused     a refused call (keyctl) inside ronly: the supervisor's
//	            deny-and-count round trip, vs an allowed call inside
//	write-heavy untar then delete 20,000 small files in /tmp: ronly (with and
//	            without --count-writes) vs bwrap vs outside
//	sockets     TCP connects and UDP sendmsg, which the supervisor mediates,
//	            inside vs outside
//	sockfd      socket() and UDP socket+connect+send+close in landlock-only
//	            mode under a Docker-like seccomp filter, with pidfd_getfd
//	            allowed and refused (the supervisor makes the sockets:
//	            go/sandbox/sockfd.go), vs outside (sockfd.go)
//	stdio       cat of 1 GB from a file to a file inside ronly (stdio relayed
//	            through pipes by the supervisor) vs directly
//	kube        kubectl get pods through the Kubernetes guard vs directly,
//	            and the events/s one watch carries (a real kube-apiserver:
//	            tools/kube/build, kube.go)
//	mounts      startup with 2,000 more mounts on the host, as on a
//	            Kubernetes node, vs the host's own table: ronly vs bwrap vs
//	            the Go floor, in private mount namespaces (mounts.go)
//
// Each target also gets a floor: the same work under only the layers the
// issue requires (one Go runtime start; an allow-all seccomp filter;
// Landlock with ronly's write rules), so a missed target can be told apart
// from a cost the kernel charges any sandbox built this way.
//
// ronly runs with default flags and with --count-writes (writecount.go):
// counting refused writes attaches eBPF programs, which, where the kernel
// has no BPF trampolines, run at every syscall's exit on the whole host.
//
// Runs are interleaved (A B C A B C …) so drift on a busy machine hits every
// variant alike, and a ratio is the median of the per-round ratios.
// Without -only, one run measures the startup table (every peer that is
// installed: bwrap, nsjail, crun, firejail), the getppid loops and the
// write-heavy untar; -only all runs every target, and -only breakdown
// times ronly's start step by step (breakdown.go).
//
// Usage: bench [-ronly PATH] [-runs N] [-bwrap PATH] [-only TARGET,...].
// Without -ronly, ronly and ronly-writewatch (which --count-writes runs,
// beside ronly) are built from this checkout as Bazel links them (static,
// netgo, osusergo); with -ronly, ronly-writewatch must be beside it or on
// PATH.
package main

import (
	"archive/tar"
	"cmp"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "loop" {
		loop(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) == 3 {
		// The inner halves of the suites, which this binary runs as
		// children (inside ronly or under a peer).
		switch n := os.Args[2]; os.Args[1] {
		case "loop-allow-all":
			loopAllowAll(n)
			return
		case "notify-floor":
			notifyFloor(os.Args[0], n)
			return
		case "loop-notify-child":
			loopNotifyChild(n)
			return
		case "loop-connect":
			loopConnect(n)
			return
		case "loop-sendmsg":
			loopSendmsg(n)
			return
		case "loop-socket":
			loopSocket(n)
			return
		case "loop-udp":
			loopUDP(n)
			return
		}
	}
	if len(os.Args) == 2 && os.Args[1] == "hello" {
		return // one Go runtime start, nothing else
	}
	if len(os.Args) == 2 && os.Args[1] == "sockfd-hold" {
		sockfdHold()
		return
	}
	if len(os.Args) > 3 && os.Args[1] == "docker-seccomp" {
		underDocker(os.Args[2], os.Args[3:])
		return
	}
	if len(os.Args) > 4 && os.Args[1] == "confine" {
		confine(os.Args[2], os.Args[3] == "filter", os.Args[4:])
		return
	}
	ronly := flag.String("ronly", "", "path of the ronly binary (default: go build it from this checkout, static)")
	bwrap := flag.String("bwrap", "/usr/bin/bwrap", "path of bubblewrap, the startup baseline")
	runs := flag.Int("runs", 40, "runs of each variant")
	only := flag.String("only", "startup,syscall,write-heavy", "run only these targets, comma-separated: startup, syscall, refused, sockets, sockfd, write-heavy, stdio, kube, mounts, breakdown; or all")
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	work, err := os.MkdirTemp("/var/tmp", "ronly-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	workDir = work
	// The loops run inside ronly, whose /tmp is its own: a copy of this
	// binary outside /tmp (go run builds into it) is what they run.
	if self, err = copyExecutable(self, filepath.Join(work, "bench")); err != nil {
		fatal(err)
	}

	targets := []target{
		{"startup", func() { startup(*ronly, *bwrap, self, work, *runs) }},
		{"syscall", func() { syscalls(*ronly, self, *runs/4+1) }},
		{"refused", func() { refused(*ronly, self, *runs/4+1) }},
		{"sockets", func() { sockets(*ronly, self, *runs/4+1) }},
		{"sockfd", func() { sockfdBench(*ronly, self, *runs) }},
		{"write-heavy", func() { writeHeavy(*ronly, *bwrap, self, work, *runs/4+1) }},
		{"stdio", func() { stdioCopy(*ronly, work, *runs/8+5) }},
		{"kube", func() { kubeBench(*ronly, *runs/2+1) }},
		{"mounts", func() { manyMounts(*ronly, *bwrap, work, *runs/4+1) }},
		{"breakdown", func() { breakdown(*ronly, *runs) }},
	}
	want := strings.Split(*only, ",")
	for _, w := range want {
		if w != "all" && !slices.ContainsFunc(targets, func(t target) bool { return t.name == w }) {
			fmt.Fprintf(os.Stderr, "bench: -only %s: no such target\n", w)
			os.RemoveAll(work)
			os.Exit(2)
		}
	}
	if *ronly == "" {
		*ronly = filepath.Join(work, "ronly")
		// ronly-writewatch too: --count-writes runs it, looked up beside
		// ronly; without it the counting rows would time sessions that
		// count nothing (ronly only warns).
		for _, bin := range []string{"ronly", "ronly-writewatch"} {
			if err := buildStatic(filepath.Join(work, bin), "ronly.dev/ronly/go/cmd/"+bin); err != nil {
				fatal(fmt.Errorf("%v (or pass -ronly)", err))
			}
		}
	} else if _, err := os.Stat(filepath.Join(filepath.Dir(*ronly), "ronly-writewatch")); err != nil {
		if _, err := exec.LookPath("ronly-writewatch"); err != nil {
			fatal(fmt.Errorf("-ronly %s: no ronly-writewatch beside it or on PATH, so the --count-writes rows would count nothing", *ronly))
		}
	}
	ww := filepath.Join(filepath.Dir(*ronly), "ronly-writewatch")
	if _, err := os.Stat(ww); err != nil {
		ww, _ = exec.LookPath("ronly-writewatch")
	}
	settle(*ronly, ww)
	fmt.Printf("ronly benchmark: %d interleaved runs per variant, medians\n", *runs)
	fmt.Printf("every binary timed is written back to disk and dropped from the page cache first, so that its first run reads it back as an installed binary's is\n\n")
	for _, t := range targets {
		if (slices.Contains(want, "all") && t.name != "breakdown") || slices.Contains(want, t.name) {
			t.run()
		}
	}
}

// buildStatic builds pkg into bin as Bazel links ronly: static, with
// cgo's libseccomp and glibc inside, and the extra build tags given.
func buildStatic(bin, pkg string, tags ...string) error {
	cmd := exec.Command("go", "build", "-tags", strings.Join(append([]string{"netgo", "osusergo"}, tags...), ","),
		"-ldflags", "-linkmode=external -extldflags=-static", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -tags %s %s: %v\n%s", strings.Join(tags, ","), pkg, err, out)
	}
	return nil
}

// settle puts each executable in the state an installed binary is in on a
// host: on disk, and read back into the page cache by the page faults of
// its first run. A binary just built sits in the page cache as its writer
// left it, and the same bytes of ronly start 9-11% faster that way (577
// minor faults against 680: the kernel holds the freshly written file in
// larger folios), so a comparison of a fresh build with an older one, or
// with a system binary, measured the page cache. Pages a running process
// maps stay (the Go hello row runs a copy of the bench, which no process
// maps). Best effort: a path that cannot be opened is left as it is.
func settle(paths ...string) {
	for _, p := range paths {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		// Written back first: dirty pages are not dropped.
		if f.Sync() == nil {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		f.Close()
	}
}

func copyExecutable(from, to string) (string, error) {
	b, err := os.ReadFile(from)
	if err != nil {
		return "", err
	}
	return to, os.WriteFile(to, b, 0o755)
}

// workDir is removed by fatal too, which exits without running defers.
var workDir string

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(1)
}

type target struct {
	name string
	run  func()
}

type variant struct {
	name string
	argv []string
}

// timeRuns runs each variant runs times, interleaved, and returns each
// variant's wall times in the order they ran: sample r of every variant
// comes from the same round.
func timeRuns(vs []variant, runs int) [][]time.Duration {
	samples := make([][]time.Duration, len(vs))
	for r := 0; r < runs; r++ {
		for i, v := range vs {
			cmd := exec.Command(v.argv[0], v.argv[1:]...)
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				fatal(fmt.Errorf("%s: %v", v.name, err))
			}
			samples[i] = append(samples[i], time.Since(t0))
		}
	}
	return samples
}

// ratio is the median of the per-round ratios a/b: a slow round slows both.
func ratio(a, b []time.Duration) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = float64(a[i]) / float64(b[i])
	}
	return median(r)
}

// median leaves s as it was: the benchmarks pair samples by index.
func median[T cmp.Ordered](s []T) T {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loop is the inner half of the syscall benchmarks: it prints ns per call
// of getppid (allowed) or keyctl (refused by ronly's policy). getppid is
// timed in the thread's CPU time, which a busy host's other processes do
// not inflate the way they inflate wall time; keyctl in wall time, since
// its cost is mostly the supervisor's, in another process.
func loop(call, nStr string) {
	n, _ := strconv.Atoi(nStr)
	runtime.LockOSThread()
	t0, c0 := time.Now(), threadCPU()
	for i := 0; i < n; i++ {
		if call == "keyctl" {
			unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0)
		} else {
			unix.Getppid()
		}
	}
	d := time.Since(t0)
	if call != "keyctl" {
		d = threadCPU() - c0
	}
	fmt.Println(float64(d.Nanoseconds()) / float64(n))
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		fatal(err)
	}
	return time.Duration(ts.Nano())
}

// loopAllowAll loops getppid under a seccomp filter that allows everything:
// the cost any filter adds (the kernel's slower syscall entry), whatever
// its rules.
func loopAllowAll(nStr string) {
	runtime.LockOSThread()
	allowAll()
	n, _ := strconv.Atoi(nStr)
	c0 := threadCPU()
	for i := 0; i < n; i++ {
		unix.Getppid()
	}
	fmt.Println(float64((threadCPU() - c0).Nanoseconds()) / float64(n))
}

// allowAll puts the calling thread under a one-instruction seccomp filter
// that allows everything.
func allowAll() {
	loadFilter([]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}, 0)
}

// loadFilter puts the calling thread (no TSYNC) under the seccomp filter
// prog, with the flags of seccomp(SECCOMP_SET_MODE_FILTER), and returns
// what the kernel returns: the listener under
// SECCOMP_FILTER_FLAG_NEW_LISTENER.
func loadFilter(prog []unix.SockFilter, flags uintptr) uintptr {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fatal(err)
	}
	r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		fatal(fmt.Errorf("seccomp filter: %w", e))
	}
	return r
}

func refused(ronly, self string, runs int) {
	const n = "20000"
	var in, floor, ratio []float64
	for r := 0; r < runs; r++ {
		f := loopRun(exec.Command(self, "notify-floor", n))
		v := loopRun(exec.Command(ronly, "--no-metrics", self, "loop", "keyctl", n))
		floor, in, ratio = append(floor, f), append(in, v), append(ratio, v/f)
	}
	fmt.Println("refused syscall (keyctl), answered and counted by the supervisor")
	fmt.Printf("  floor: a bare listener   %8.2f us per call (another process answers EPERM, counts nothing)\n", median(floor)/1000)
	fmt.Printf("  inside ronly             %8.2f us per call (%.2fx the floor)\n\n", median(in)/1000, median(ratio))
}

// seccompNotif and seccompNotifResp are the kernel's struct seccomp_notif
// and seccomp_notif_resp (linux/seccomp.h).
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// notifyFloor is the refused call's floor: keyctl in a child process sent
// to a seccomp listener and refused (EPERM) here by a bare loop, with no
// policy table, count or record: the kernel's round trip and the wake-ups
// on both sides, which any supervisor pays. It prints the child's wall
// time per call.
func notifyFloor(self, nStr string) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal(err)
	}
	child := exec.Command(self, "loop-notify-child", nStr)
	child.ExtraFiles = []*os.File{os.NewFile(uintptr(pair[1]), "listener socket")}
	var out strings.Builder
	child.Stdout, child.Stderr = &out, os.Stderr
	if err := child.Start(); err != nil {
		fatal(err)
	}
	unix.Close(pair[1])
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(pair[0], buf, oob, 0)
	if err != nil {
		fatal(fmt.Errorf("the listener from the child: %w", err))
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		fatal(fmt.Errorf("the listener from the child: %v", err))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		fatal(fmt.Errorf("the listener from the child: %v", err))
	}
	listener := uintptr(fds[0])
	// As ronly's notifier does (go/sandbox/notify.go): the kernel switches
	// straight to the answering thread and back, on one CPU (Linux 6.6;
	// SECCOMP_IOCTL_NOTIF_SET_FLAGS is _IOW('!', 4, __u64)).
	unix.Syscall(unix.SYS_IOCTL, listener, 0x40082104, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	go func() {
		runtime.LockOSThread()
		for {
			var req seccompNotif
			if _, _, e := unix.Syscall(unix.SYS_IOCTL, listener, unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); e != 0 {
				// EINTR: a signal here. ENOENT: the child's call was
				// interrupted (Go's preemption signal) and withdrawn, or
				// the child is gone and this process is about to exit.
				if e == unix.EINTR || e == unix.ENOENT {
					continue
				}
				return
			}
			resp := seccompNotifResp{id: req.id, error: -int32(unix.EPERM)}
			unix.Syscall(unix.SYS_IOCTL, listener, unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
		}
	}()
	if err := child.Wait(); err != nil {
		fatal(fmt.Errorf("notify floor child: %v", err))
	}
	fmt.Print(out.String())
}

// loopNotifyChild is notifyFloor's child: it filters keyctl to a new
// listener, hands the listener to its parent on fd 3, and loops keyctl.
func loopNotifyChild(nStr string) {
	n, _ := strconv.Atoi(nStr)
	runtime.LockOSThread()
	// Only this thread is filtered, the one that loops.
	listener := loadFilter([]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_KEYCTL, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(listener)), nil, 0); err != nil {
		fatal(err)
	}
	unix.Close(int(listener))
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, _, e := unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0); e != unix.EPERM {
			fatal(fmt.Errorf("keyctl under the bare listener: %v, want EPERM", e))
		}
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
}

func loopRun(cmd *exec.Cmd) float64 {
	b, err := cmd.Output()
	if err != nil {
		fatal(fmt.Errorf("%v: %v", cmd.Args, err))
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		fatal(err)
	}
	return v
}

// Landlock's UAPI as ronly's C init spells it (init/ronly_init.c): the
// write-type rights of each ABI, and the scopes of ABI 6.
const (
	llABI1Writes = 0x1ff2 // WRITE_FILE, REMOVE_DIR/FILE, MAKE_CHAR..MAKE_SYM
	llRefer      = 1 << 13
	llTruncate   = 1 << 14
	llIoctlDev   = 1 << 15
	llScopes     = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
)

type llRulesetAttr struct{ fs, net, scoped uint64 }

// confine runs argv under what ronly's C init puts on a session in the way
// of Landlock (the same handled rights for this kernel's ABI, writable
// below dir and for files under /dev) and, with filter, an allow-all
// seccomp filter — and nothing else: no namespaces, no startup of ronly's
// own. Both bind only the calling thread, which is the one that execs.
func confine(dir string, filter bool, argv []string) {
	runtime.LockOSThread()
	abi, _, e := unix.RawSyscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		fatal(fmt.Errorf("landlock: %w", e))
	}
	attr := llRulesetAttr{fs: llABI1Writes}
	size := unsafe.Sizeof(attr.fs)
	if abi >= 2 {
		attr.fs |= llRefer
	}
	if abi >= 3 {
		attr.fs |= llTruncate
	}
	if abi >= 5 {
		attr.fs |= llIoctlDev
	}
	if abi >= 6 {
		attr.scoped = llScopes
		size = unsafe.Sizeof(attr)
	}
	rs, _, e := unix.RawSyscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		fatal(fmt.Errorf("landlock_create_ruleset: %w", e))
	}
	files := attr.fs & (unix.LANDLOCK_ACCESS_FS_WRITE_FILE | llTruncate | llIoctlDev)
	for _, r := range []struct {
		path   string
		access uint64
	}{{dir, attr.fs}, {"/dev", files}} {
		fd, err := unix.Open(r.path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			fatal(err)
		}
		pb := unix.LandlockPathBeneathAttr{Allowed_access: r.access, Parent_fd: int32(fd)}
		if _, _, e := unix.RawSyscall6(unix.SYS_LANDLOCK_ADD_RULE, rs, unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&pb)), 0, 0, 0); e != 0 {
			fatal(fmt.Errorf("landlock_add_rule %s: %w", r.path, e))
		}
		unix.Close(fd)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fatal(err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, rs, 0, 0); e != 0 {
		fatal(fmt.Errorf("landlock_restrict_self: %w", e))
	}
	if filter {
		allowAll()
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fatal(err)
	}
	fatal(unix.Exec(path, argv, os.Environ()))
}

func makeTarball(path string, files int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	body := []byte("hello from a small file\n")
	for i := 0; i < files; i++ {
		hdr := &tar.Header{Name: fmt.Sprintf("d%03d/f%05d.txt", i/200, i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		tw.Write(body)
	}
	return tw.Close()
}
