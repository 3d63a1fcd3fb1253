package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
)

var gofloorFlag = flag.String("gofloor", "", "path of the Go floor binary (tools/bench/gofloor; default: go build it)")

// startup times `ronly -- /bin/true` against bwrap with the isolation the
// issue names and against the Go floor: a minimal Go program that drives
// ronly's own C init with the records ronly sends and waits (gofloor). Each
// row gives the median, p10 and p90 wall time, the median of the per-round
// ratios to bwrap and to the floor, and the median CPU time (user+sys) and
// minor page faults of the whole tree (wait4's rusage: every process the
// variant waited for); CPU time says more than wall time on a busy host.
func startup(ronly, bwrap, self string, runs int) {
	fmt.Println("startup")
	vs := []variant{
		{"plain exec /bin/true", []string{"/bin/true"}},
		{"Go hello (one runtime)", []string{self, "hello"}},
	}
	haveBwrap := false
	if _, err := os.Stat(bwrap); err == nil {
		haveBwrap = true
		// User, PID, IPC and UTS namespaces, / read-only, a private
		// /dev, /proc and /tmp: what ronly's debug profile gives, and
		// a PID namespace besides.
		vs = append(vs, variant{"bwrap /bin/true", []string{bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc",
			"--unshare-uts", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "/bin/true"}})
	} else {
		fmt.Println("  (bwrap not installed: apt-get install bubblewrap for the baseline)")
	}
	floor, dir, err := goFloor()
	defer os.RemoveAll(dir)
	if err != nil {
		fmt.Printf("  (no Go floor: %v)\n", err)
	} else {
		vs = append(vs, variant{"Go floor /bin/true", append(floor, "/bin/true")})
	}
	vs = append(vs,
		variant{"ronly -- /bin/true", []string{ronly, "--", "/bin/true"}},
		variant{"  --count-writes", []string{ronly, "--count-writes", "--", "/bin/true"}},
	)
	t, cpu, faults := timeRunsFaults(vs, runs)
	col := func(name string) int {
		return slices.IndexFunc(vs, func(v variant) bool { return v.name == name })
	}
	bw, fl := col("bwrap /bin/true"), col("Go floor /bin/true")
	fmt.Printf("  %-24s %8s %8s %8s %8s %8s %8s %8s\n", "", "median", "p10", "p90", "/bwrap", "/floor", "cpu", "faults")
	for i, v := range vs {
		fmt.Printf("  %-24s %8.2f %8.2f %8.2f %8s %8s %8.2f %8d\n", v.name, ms(pct(t[i], 50)), ms(pct(t[i], 10)), ms(pct(t[i], 90)),
			ratioOr(t, i, bw), ratioOr(t, i, fl), ms(median(cpu[i])), median(faults[i]))
	}
	if haveBwrap {
		fmt.Printf("  target: ronly at most 1.5x bwrap, or within 1.1x of the Go floor (times in ms)\n")
	}
	fmt.Println()
}

func ratioOr(t [][]time.Duration, i, base int) string {
	if base < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", ratio(t[i], t[base]))
}

// pct is the p-th percentile of s (nearest rank); s is left as it was.
func pct(s []time.Duration, p int) time.Duration {
	c := slices.Clone(s)
	slices.Sort(c)
	i := (len(c)*p + 99) / 100
	return c[max(i-1, 0)]
}

// timeRunsFaults is timeRuns, also keeping each run's CPU time and minor
// page faults.
func timeRunsFaults(vs []variant, runs int) (wall, cpu [][]time.Duration, faults [][]int64) {
	samples := make([][]time.Duration, len(vs))
	cpu = make([][]time.Duration, len(vs))
	faults = make([][]int64, len(vs))
	for r := 0; r < runs; r++ {
		for i, v := range vs {
			cmd := exec.Command(v.argv[0], v.argv[1:]...)
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				fatal(fmt.Errorf("%s: %v", v.name, err))
			}
			samples[i] = append(samples[i], time.Since(t0))
			var n int64
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				n = ru.Minflt
			}
			faults[i] = append(faults[i], n)
			cpu[i] = append(cpu[i], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		}
	}
	return samples, cpu, faults
}

// goFloor is the command line of the Go floor up to the command: the
// binary (-gofloor, else built now from this checkout, linked as ronly
// is) and the seccomp programs ronly sends, written from bpf.Precompiled
// into dir, which the caller removes.
func goFloor() (argv []string, dir string, err error) {
	if dir, err = os.MkdirTemp("", "ronly-bench-floor-"); err != nil {
		return nil, "", err
	}
	bin := *gofloorFlag
	if bin == "" {
		bin = filepath.Join(dir, "gofloor")
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-linkmode=external -extldflags=-static",
			"-o", bin, "ronly.dev/ronly/tools/bench/gofloor")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, dir, fmt.Errorf("go build tools/bench/gofloor (or pass -gofloor): %v\n%s", err, out)
		}
	}
	var files []string
	for _, m := range []bpf.Mode{bpf.ModeNotify, bpf.ModeErrno} {
		prog, err := bpf.Precompiled(m)
		if err != nil {
			return nil, dir, err
		}
		f := filepath.Join(dir, fmt.Sprintf("prog%d", len(files)))
		if err := os.WriteFile(f, prog, 0o644); err != nil {
			return nil, dir, err
		}
		files = append(files, f)
	}
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(nil)), 0, 1) // _VERSION
	if errno != 0 {
		return nil, dir, errors.New("no Landlock here")
	}
	return []string{bin, files[0], files[1], fmt.Sprint(abi)}, dir, nil
}
