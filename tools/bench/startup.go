package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/bpf"
)

var (
	gofloorFlag = flag.String("gofloor", "", "path of the Go floor binary (tools/bench/gofloor; default: go build it)")
	cfloorFlag  = flag.String("cfloor", "", "path of the C floor binary (tools/bench/cfloor; default: cc builds it)")
)

// startup times `ronly -- /bin/true` against plain exec, bwrap with the
// isolation the issue names, the peers that also do policy, seccomp or
// cgroups (nsjail, crun, firejail: peers.go), the Go floor: a minimal Go
// program that drives ronly's own C init with the records ronly sends and
// waits (gofloor), and the C floor: the same in C, with the same init and
// records (cfloor), what a supervisor with no Go runtime before the
// command would cost. The Go floor is timed twice more, linked with
// ronly's packages and with the lean set a guard-less session would keep
// (linkedFloor): what ronly's package init costs before it does anything.
// Each row gives the median, p10 and p90 wall time, the
// median of the per-round ratios to bwrap and to the floor, and the median
// CPU time (user+sys) and minor page faults of the whole tree (wait4's
// rusage: every process the variant waited for); CPU time says more than
// wall time on a busy host. Rounds are interleaved, every row once a
// round, so load drifts hit all rows alike.
func startup(ronly, bwrap, self, work string, runs int) {
	fmt.Println("startup of /bin/true")
	rows := []row{
		{variant: variant{"bare exec", []string{"/bin/true"}}},
		{variant: variant{"Go hello (one runtime)", []string{self, "hello"}}},
	}
	bw := row{variant: variant{"bwrap", bwrapTrue(bwrap)}}
	if _, err := os.Stat(bwrap); err != nil {
		bw.missing = "not installed"
	}
	rows = append(rows, bw, nsjailVariant())
	crun := crunVariant(work)
	rows = append(rows, crun, firejailVariant())
	floor, dir, err := goFloor()
	defer os.RemoveAll(dir)
	fl := row{variant: variant{name: "Go floor"}}
	cf := row{variant: variant{name: "C floor"}}
	if err != nil {
		fl.missing = fmt.Sprintf("not built: %v", err)
		cf.missing = fl.missing
	} else {
		fl.argv = append(floor, "/bin/true")
		if cf.argv, err = cFloor(fl.argv, dir); err != nil {
			cf.missing = fmt.Sprintf("not built: %v", err)
		}
	}
	rows = append(rows, fl, linkedFloor(fl, "Go floor, lean links", "gofloor_lean", dir),
		linkedFloor(fl, "Go floor, ronly's links", "gofloor_linked", dir), cf,
		row{variant: variant{"ronly -- /bin/true", []string{ronly, "--", "/bin/true"}}},
		// A flag that changes nothing here (no exporter runs), so
		// that the row differs from the one above only by kong's
		// model, which a line without flags skips.
		row{variant: variant{"ronly --no-metrics", []string{ronly, "--no-metrics", "--", "/bin/true"}}},
		row{variant: variant{"ronly --count-writes", []string{ronly, "--count-writes", "--", "/bin/true"}}},
	)
	var ns *privateNS
	if slices.ContainsFunc(rows, func(r row) bool { return r.privateNS && r.missing == "" }) {
		rootfs := ""
		if crun.missing == "" {
			rootfs = filepath.Join(work, "crun-bundle", "rootfs")
		}
		if ns, err = newPrivateNS(rootfs); err != nil {
			fatal(err)
		}
		defer ns.close()
		for i := range rows {
			if rows[i].privateNS {
				rows[i].in = ns
			}
		}
	}
	for _, r := range rows {
		if r.missing == "" {
			if path, err := exec.LookPath(r.argv[0]); err == nil {
				settle(path)
			}
		}
	}
	t, cpu, faults := timeRows(rows, runs)
	col := func(name string) int {
		i := slices.IndexFunc(rows, func(r row) bool { return r.name == name })
		if i >= 0 && rows[i].missing != "" {
			return -1
		}
		return i
	}
	bi, fi := col("bwrap"), col("Go floor")
	fmt.Printf("  %-24s %8s %8s %8s %8s %8s %8s %8s\n", "ms", "median", "p10", "p90", "/bwrap", "/floor", "cpu", "faults")
	for i, r := range rows {
		if r.missing != "" {
			fmt.Printf("  %-24s %s\n", r.name, r.missing)
			continue
		}
		fmt.Printf("  %-24s %8.2f %8.2f %8.2f %8s %8s %8.2f %8d\n", r.name, ms(pct(t[i], 50)), ms(pct(t[i], 10)), ms(pct(t[i], 90)),
			ratioOr(t, i, bi), ratioOr(t, i, fi), ms(median(cpu[i])), median(faults[i]))
	}
	fmt.Printf("  target: ronly at most 1.5x bwrap, or within 1.1x of the Go floor\n\n")
}

// row is a variant of the startup table: missing says why it has no
// numbers; quiet discards its stderr (nsjail and firejail log there even
// when told to be quiet); privateNS asks for the startup table's private
// mount namespace, and in is the namespace it runs in (nil: the bench's
// own); crunID appends a container id new to each run.
type row struct {
	variant
	missing   string
	quiet     bool
	privateNS bool
	in        *privateNS
	crunID    bool
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

// timeRows runs each row that is installed runs times, interleaved, and
// keeps each run's wall time, CPU time and minor page faults (sample r of
// every row is from the same round). A row with a namespace (in) starts
// thread; their timing is taken there too.
func timeRows(rows []row, runs int) (wall, cpu [][]time.Duration, faults [][]int64) {
	wall = make([][]time.Duration, len(rows))
	cpu = make([][]time.Duration, len(rows))
	faults = make([][]int64, len(rows))
	for r := 0; r < runs; r++ {
		for i, v := range rows {
			if v.missing != "" {
				continue
			}
			argv := v.argv
			if v.crunID {
				argv = append(slices.Clone(argv), fmt.Sprintf("ronly-bench-%d-%d", os.Getpid(), r))
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			if !v.quiet {
				cmd.Stderr = os.Stderr
			}
			var d time.Duration
			var err error
			run := func() {
				t0 := time.Now()
				err = cmd.Run()
				d = time.Since(t0)
			}
			if v.in != nil {
				v.in.do(run)
			} else {
				run()
			}
			if err != nil {
				fatal(fmt.Errorf("%s: %v", v.name, err))
			}
			wall[i] = append(wall[i], d)
			var n int64
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				n = ru.Minflt
			}
			faults[i] = append(faults[i], n)
			cpu[i] = append(cpu[i], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		}
	}
	return wall, cpu, faults
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
		if err := buildStatic(bin, "ronly.dev/ronly/tools/bench/gofloor"); err != nil {
			return nil, dir, fmt.Errorf("%v (or pass -gofloor)", err)
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

// linkedFloor is the Go floor's row built again with tag (gofloor/lean.go,
// gofloor/linked.go): the same program, which also links a set of ronly's
// packages and so runs their package init before main. Against the floor
// it measures what linking them costs before a session does anything.
// Not built when -gofloor names a prebuilt floor (the tags need the
// checkout's source).
func linkedFloor(floor row, name, tag, dir string) row {
	r := row{variant: variant{name: name}}
	switch {
	case floor.missing != "":
		r.missing = floor.missing
		return r
	case *gofloorFlag != "":
		r.missing = "not built: -gofloor names a prebuilt floor"
		return r
	}
	bin := filepath.Join(dir, "gofloor-"+tag)
	if err := buildStatic(bin, "ronly.dev/ronly/tools/bench/gofloor", tag); err != nil {
		r.missing = fmt.Sprintf("not built: %v", err)
		return r
	}
	r.argv = append([]string{bin}, floor.argv[1:]...)
	return r
}

// cFloor is the C floor's command line for the Go floor's: the binary
// (-cfloor, else compiled now from tools/bench/cfloor with cc, static as
// ronly is), the Go floor's binary as the init, and the records the Go
// floor sends for the same command, written into dir.
func cFloor(goFloor []string, dir string) ([]string, error) {
	records := filepath.Join(dir, "records")
	cmd := exec.Command(goFloor[0], goFloor[1:]...)
	cmd.Env = append(os.Environ(), "GOFLOOR_RECORDS="+records)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gofloor's records: %v\n%s", err, out)
	}
	bin := *cfloorFlag
	if bin == "" {
		mod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			return nil, fmt.Errorf("go env GOMOD: %v", err)
		}
		root := filepath.Dir(strings.TrimSpace(string(mod)))
		bin = filepath.Join(dir, "cfloor")
		cc := exec.Command("cc", "-O2", "-static", "-I", root, "-o", bin, filepath.Join(root, "tools/bench/cfloor/cfloor.c"))
		if out, err := cc.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cc tools/bench/cfloor/cfloor.c (or pass -cfloor): %v\n%s", err, out)
		}
	}
	return []string{bin, goFloor[0], records}, nil
}

// bwrapTrue runs /bin/true under bwrap with user, PID, IPC and UTS
// namespaces, / read-only, a private /dev, /proc and /tmp: what ronly's
// debug profile gives, and a PID namespace besides.
func bwrapTrue(bwrap string) []string {
	return []string{bwrap, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "/bin/true"}
}
