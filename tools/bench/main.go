// Command bench measures ronly against named baselines in one run on one
// machine and prints medians and ratios:
//
//	startup     ronly /bin/true  vs  plain exec  vs  bwrap with comparable isolation
//	syscall     an allowed getppid loop inside ronly vs outside
//	refused     a refused call (keyctl) inside ronly: the supervisor's
//	            deny-and-count round trip, vs an allowed call inside
//	write-heavy untar then delete 20,000 small files in /tmp, inside vs outside
//
// ronly runs with and without --no-write-counting: while a session counts
// refused writes, an eBPF program runs at every syscall's exit.
//
// Runs are interleaved (A B C A B C …) so drift on a busy machine hits every
// variant alike. Usage: bench -ronly PATH [-runs N] [-bwrap PATH].
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
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
	if len(os.Args) == 3 && os.Args[1] == "loop-allow-all" {
		loopAllowAll(os.Args[2])
		return
	}
	ronly := flag.String("ronly", "", "path of the ronly binary")
	bwrap := flag.String("bwrap", "/usr/bin/bwrap", "path of bubblewrap, the startup baseline")
	runs := flag.Int("runs", 40, "runs of each variant")
	flag.Parse()
	if *ronly == "" {
		fmt.Fprintln(os.Stderr, "bench: -ronly PATH is required")
		os.Exit(2)
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	work, err := os.MkdirTemp("/var/tmp", "ronly-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)

	fmt.Printf("ronly benchmark: %d interleaved runs per variant, medians\n\n", *runs)
	startup(*ronly, *bwrap, *runs)
	syscalls(*ronly, self, *runs/4+1)
	refused(*ronly, self, *runs/4+1)
	writeHeavy(*ronly, work, *runs/4+1)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type variant struct {
	name string
	argv []string
}

// timeRuns runs each variant runs times, interleaved, and returns the
// median wall time of each.
func timeRuns(vs []variant, runs int) []time.Duration {
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
	out := make([]time.Duration, len(vs))
	for i, s := range samples {
		out[i] = median(s)
	}
	return out
}

func median(s []time.Duration) time.Duration {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func startup(ronly, bwrap string, runs int) {
	vs := []variant{
		{"plain exec /bin/true", []string{"/bin/true"}},
		{"ronly /bin/true", []string{ronly, "--no-metrics", "/bin/true"}},
		{"  --no-write-counting", []string{ronly, "--no-metrics", "--no-write-counting", "/bin/true"}},
	}
	if _, err := os.Stat(bwrap); err == nil {
		// Comparable isolation: user, mount, IPC, UTS namespaces, the
		// host read-only, a tmpfs /tmp, a private /dev, host PID space.
		vs = append(vs, variant{"bwrap /bin/true", []string{bwrap, "--unshare-user", "--unshare-ipc", "--unshare-uts",
			"--ro-bind", "/", "/", "--dev", "/dev", "--tmpfs", "/tmp", "--new-session", "--die-with-parent", "/bin/true"}})
	}
	m := timeRuns(vs, runs)
	fmt.Println("startup")
	for i, v := range vs {
		fmt.Printf("  %-24s %8.2f ms   %5.2fx plain\n", v.name, ms(m[i]), float64(m[i])/float64(m[0]))
	}
	if len(vs) == 4 {
		fmt.Printf("  ronly / bwrap            %8.2fx (%.2fx without write counting)\n", float64(m[1])/float64(m[3]), float64(m[2])/float64(m[3]))
	} else {
		fmt.Println("  (bwrap not installed: apt-get install bubblewrap for the baseline)")
	}
	fmt.Println()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// loop is the inner half of the syscall benchmarks: it prints ns per call
// of getppid (allowed) or keyctl (refused by ronly's policy).
func loop(call, nStr string) {
	n, _ := strconv.Atoi(nStr)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if call == "keyctl" {
			unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0)
		} else {
			unix.Getppid()
		}
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
}

// loopAllowAll loops getppid under a seccomp filter that allows everything:
// the cost any filter adds (the kernel's slower syscall entry), whatever
// its rules.
func loopAllowAll(nStr string) {
	runtime.LockOSThread()
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
	fprog := unix.SockFprog{Len: 1, Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fatal(err)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		fatal(e)
	}
	n, _ := strconv.Atoi(nStr)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		unix.Getppid()
	}
	fmt.Println(float64(time.Since(t0).Nanoseconds()) / float64(n))
}

func refused(ronly, self string, runs int) {
	const n = "20000"
	var in []float64
	for r := 0; r < runs; r++ {
		in = append(in, loopRun(exec.Command(ronly, "--no-metrics", self, "loop", "keyctl", n)))
	}
	fmt.Println("refused syscall (keyctl), answered and counted by the supervisor")
	fmt.Printf("  inside ronly             %8.2f us per call\n\n", medianF(in)/1000)
}

func syscalls(ronly, self string, runs int) {
	const n = "2000000"
	var in, inNoCount, out, any []float64
	for r := 0; r < runs; r++ {
		out = append(out, loopRun(exec.Command(self, "loop", "getppid", n)))
		any = append(any, loopRun(exec.Command(self, "loop-allow-all", n)))
		in = append(in, loopRun(exec.Command(ronly, "--no-metrics", self, "loop", "getppid", n)))
		inNoCount = append(inNoCount, loopRun(exec.Command(ronly, "--no-metrics", "--no-write-counting", self, "loop", "getppid", n)))
	}
	mi, mn, mo, ma := medianF(in), medianF(inNoCount), medianF(out), medianF(any)
	fmt.Println("allowed syscall (getppid)")
	fmt.Printf("  outside, no filter       %8.1f ns\n", mo)
	fmt.Printf("  outside, allow-all filter%8.1f ns   %+6.1f ns per call (any filter's entry cost)\n", ma, ma-mo)
	fmt.Printf("  inside ronly             %8.1f ns   %+6.1f ns per call, %+6.1f ns over allow-all (write counting on)\n", mi, mi-mo, mi-ma)
	fmt.Printf("  inside, no write counting%8.1f ns   %+6.1f ns per call, %+6.1f ns over allow-all\n\n", mn, mn-mo, mn-ma)
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

func medianF(s []float64) float64 {
	sort.Float64s(s)
	return s[len(s)/2]
}

// writeHeavy untars 20,000 small files into a tmpfs and deletes them,
// inside ronly (its /tmp) and outside (a tmpfs of the same size).
func writeHeavy(ronly, work string, runs int) {
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
		{"inside, no write counting", []string{ronly, "--no-metrics", "--no-write-counting", "--tmpfs-size", "512m", "/bin/sh", "-c", script, "sh", "/tmp", tarball}},
	}
	m := timeRuns(vs, runs)
	fmt.Println("write-heavy (untar + delete 20,000 files in /tmp)")
	fmt.Printf("  outside                  %8.1f ms\n", ms(m[0]))
	fmt.Printf("  inside ronly             %8.1f ms   %5.2fx outside (refusals counted: syscalls and writes)\n", ms(m[1]), float64(m[1])/float64(m[0]))
	fmt.Printf("  inside, no write counting%8.1f ms   %5.2fx outside\n\n", ms(m[2]), float64(m[2])/float64(m[0]))
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
