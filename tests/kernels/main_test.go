// Package kernels boots Debian's own kernels under qemu (TCG: no KVM is
// needed) with an initramfs the test builds — busybox-static, the static
// ronly and a script — and runs ronly's probe and a few checks in each
// guest. The guest prints its results on the serial console; the test
// reads them and fails on any hostile operation that got through, unless
// the kernel's known gaps (kernels_test.go) name it.
//
// Kernels are downloaded with apt (Debian 12's newest 6.1 from the
// machine's sources, bookworm-backports' newest 6.12 and Debian 11's newest
// 5.10 through an apt configuration of the test's own: the machine's
// sources stay as they are) and cached under /var/cache/ronly-tests, so
// reruns download nothing.
//
// Needs root, qemu-system-x86 (qemu-system-x86_64), busybox-static, apt,
// dpkg-deb, xz and go (unless -ronly names a static binary). Missing ones
// skip, except under CI=true, where they fail.
package kernels

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var (
	ronlyFlag = flag.String("ronly", "", "prebuilt static ronly binary (default: go build ./go/cmd/ronly, static)")
	wwFlag    = flag.String("writewatch", "", "prebuilt static ronly-writewatch binary (default: go build ./go/cmd/ronly-writewatch, static)")
	stFlag    = flag.String("sandboxtest", "", "prebuilt static go/sandbox test binary (default: go test -c ./go/sandbox, static)")
)

// cacheDir keeps downloaded packages and extracted kernels across runs.
const cacheDir = "/var/cache/ronly-tests"

const busybox = "/bin/busybox"

var (
	skipReason string
	tmp        string
	ronlyBin   string
	wwBin      string // ronly-writewatch, beside ronly in the guest for --count-writes
	// go/sandbox's tests, built static: the guest runs those that depend
	// on the kernel's seccomp listener (TestNotifierStop*).
	sandboxTestBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := missing(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "kernels: "+reason+" (CI=true, so this fails instead of skipping)")
			return 1
		}
		skipReason = reason
		return m.Run()
	}
	var err error
	if tmp, err = os.MkdirTemp("/var/tmp", "ronly-kernels-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ronlyBin = *ronlyFlag
	if ronlyBin == "" {
		ronlyBin = filepath.Join(tmp, "ronly")
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo",
			"-ldflags", "-linkmode=external -extldflags=-static -X main.version=kernels-test", "-o", ronlyBin, "ronly.dev/ronly/go/cmd/ronly")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "kernels: go build ronly: %v\n%s", err, out)
			return 1
		}
	}
	wwBin = *wwFlag
	if wwBin == "" {
		wwBin = filepath.Join(tmp, "ronly-writewatch")
		// Static with cgo, as ronly: it links libseccomp (bpf's syscall
		// names).
		cmd := exec.Command("go", "build", "-tags", "netgo,osusergo",
			"-ldflags", "-linkmode=external -extldflags=-static", "-o", wwBin, "ronly.dev/ronly/go/cmd/ronly-writewatch")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "kernels: go build ronly-writewatch: %v\n%s", err, out)
			return 1
		}
	}
	sandboxTestBin = *stFlag
	if sandboxTestBin == "" {
		sandboxTestBin = filepath.Join(tmp, "sandbox.test")
		cmd := exec.Command("go", "test", "-c", "-tags", "netgo,osusergo",
			"-ldflags", "-linkmode=external -extldflags=-static", "-o", sandboxTestBin, "ronly.dev/ronly/go/sandbox")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "kernels: go test -c go/sandbox (or pass -sandboxtest): %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func missing() string {
	if os.Geteuid() != 0 {
		return "not root (apt downloads into " + cacheDir + ")"
	}
	for _, tool := range []struct{ name, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"apt-get", "apt"},
		{"apt-cache", "apt"},
		{"dpkg-deb", "dpkg"},
		{"xz", "xz-utils"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			return tool.name + " not found: apt-get install " + tool.pkg
		}
	}
	if f, err := elf.Open(busybox); err != nil {
		return "no " + busybox + ": apt-get install busybox-static"
	} else {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				// It goes into an image or initramfs with no libc.
				return busybox + " is not static: apt-get install busybox-static"
			}
		}
	}
	if *ronlyFlag == "" {
		if _, err := exec.LookPath("go"); err != nil {
			return "go not found (or give -ronly)"
		}
	}
	return ""
}

// aptSource is where a kernel comes from.
type aptSource struct {
	// list is a sources.list line for the test's own apt configuration;
	// "" uses the machine's.
	list string
	// name is a regexp for apt-cache search; the newest match is taken.
	name string
}

// aptOpts is the apt configuration for src: the machine's, or one of the
// test's own under the cache (its own sources, lists and package cache,
// so that nothing of the machine's apt state changes).
func aptOpts(src aptSource) ([]string, error) {
	if src.list == "" {
		return nil, nil
	}
	dir := filepath.Join(cacheDir, "apt")
	for _, d := range []string{"lists/partial", "archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	sl := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(sl, []byte(src.list+"\n"), 0o644); err != nil {
		return nil, err
	}
	return []string{"-o", "Dir::Etc::sourcelist=" + sl, "-o", "Dir::Etc::sourceparts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"), "-o", "Dir::Cache=" + dir,
		"-o", "APT::Get::List-Cleanup=0"}, nil
}

// newestPackage is the newest package whose name matches src.name.
func newestPackage(src aptSource) (string, error) {
	opts, err := aptOpts(src)
	if err != nil {
		return "", err
	}
	search := func() ([]string, error) {
		out, err := exec.Command("apt-cache", append(opts, "search", "--names-only", src.name)...).Output()
		if err != nil {
			return nil, fmt.Errorf("apt-cache search %s: %w", src.name, err)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				names = append(names, f[0])
			}
		}
		return names, nil
	}
	names, err := search()
	if err == nil && len(names) == 0 && src.list != "" {
		// The test's own lists are empty until its first update.
		if out, uerr := exec.Command("apt-get", append(opts, "-qq", "update")...).CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update (test's own sources: %s): %v: %s", src.list, uerr, out)
		}
		names, err = search()
	}
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no package matches %s", src.name)
	}
	sort.Slice(names, func(i, j int) bool { return versionLess(names[i], names[j]) })
	return names[len(names)-1], nil
}

// versionLess orders package names by the numbers in them.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	return len(na) < len(nb)
}

func numbers(s string) []int {
	var out []int
	n, in := 0, false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			n, in = n*10+int(r-'0'), true
			continue
		}
		if in {
			out = append(out, n)
		}
		n, in = 0, false
	}
	if in {
		out = append(out, n)
	}
	return out
}

// kernelFiles are what a guest needs from a kernel package.
type kernelFiles struct {
	pkg     string
	vmlinuz string
	config  string
	modules map[string]string // module name → uncompressed .ko on disk
}

// fetchKernel downloads (once) and extracts (once) the newest package of
// src: the kernel image, its config, and the modules the guest loads.
func fetchKernel(src aptSource, mods []string) (kernelFiles, error) {
	pkg, err := newestPackage(src)
	if err != nil {
		return kernelFiles{}, err
	}
	k := kernelFiles{pkg: pkg, modules: map[string]string{}}
	debs := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return k, err
	}
	deb, err := cachedDeb(debs, pkg)
	if err != nil {
		return k, err
	}
	if deb == "" {
		opts, _ := aptOpts(src)
		cmd := exec.Command("apt-get", append(opts, "-qq", "download", pkg)...)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return k, fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
		}
		if deb, err = cachedDeb(debs, pkg); err != nil || deb == "" {
			return k, fmt.Errorf("apt-get download %s left no .deb in %s (%v)", pkg, debs, err)
		}
	}
	ex := filepath.Join(cacheDir, "kernels", pkg)
	if _, err := os.Stat(filepath.Join(ex, ".extracted")); err != nil {
		os.RemoveAll(ex)
		if err := os.MkdirAll(ex, 0o755); err != nil {
			return k, err
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, ex).CombinedOutput(); err != nil {
			return k, fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
		}
		if err := os.WriteFile(filepath.Join(ex, ".extracted"), nil, 0o644); err != nil {
			return k, err
		}
	}
	boot, _ := filepath.Glob(filepath.Join(ex, "boot", "vmlinuz-*"))
	cfg, _ := filepath.Glob(filepath.Join(ex, "boot", "config-*"))
	if len(boot) != 1 || len(cfg) != 1 {
		return k, fmt.Errorf("%s: no single vmlinuz and config in boot/", pkg)
	}
	k.vmlinuz, k.config = boot[0], cfg[0]
	for _, mod := range mods {
		found, _ := filepath.Glob(filepath.Join(ex, "lib", "modules", "*", "kernel", "*", "*", mod+".ko*"))
		more, _ := filepath.Glob(filepath.Join(ex, "lib", "modules", "*", "kernel", "*", "*", "*", mod+".ko*"))
		found = append(found, more...)
		if len(found) != 1 {
			return k, fmt.Errorf("%s: module %s: found %q", pkg, mod, found)
		}
		ko := found[0]
		if strings.HasSuffix(ko, ".xz") {
			// Decompressed here, outside the package's tree: busybox's
			// insmod reads plain modules only.
			if err := os.MkdirAll(filepath.Join(ex, "ronly-modules"), 0o755); err != nil {
				return k, err
			}
			plain := filepath.Join(ex, "ronly-modules", mod+".ko")
			if _, err := os.Stat(plain); err != nil {
				out, err := exec.Command("xz", "-dc", ko).Output()
				if err != nil {
					return k, fmt.Errorf("xz -dc %s: %w", ko, err)
				}
				if err := os.WriteFile(plain, out, 0o644); err != nil {
					return k, err
				}
			}
			ko = plain
		}
		k.modules[mod] = ko
	}
	return k, nil
}

// cachedDeb is the cached .deb of pkg, "" if none.
func cachedDeb(dir, pkg string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if err != nil || len(m) == 0 {
		return "", err
	}
	sort.Strings(m)
	return m[len(m)-1], nil
}

// configValue is CONFIG_name's value in a kernel config ("" when unset).
func configValue(config, name string) string {
	b, err := os.ReadFile(config)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CONFIG_"+name+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// cpioEntry is one file of the initramfs.
type cpioEntry struct {
	name   string
	mode   uint32 // with the type bits
	data   []byte // contents, or a symlink's target
	uid    int
	source string // read data from this file
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
)

// writeInitramfs writes entries as a gzipped newc cpio archive.
func writeInitramfs(path string, entries []cpioEntry) error {
	var raw bytes.Buffer
	pad := func() {
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
	}
	write := func(ino int, e cpioEntry) {
		nlink := 1
		if e.mode&sIFDIR != 0 {
			nlink = 2
		}
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, e.uid, e.uid, nlink, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, 0)
		raw.WriteString(e.name)
		raw.WriteByte(0)
		pad()
		raw.Write(e.data)
		pad()
	}
	for i, e := range entries {
		if e.source != "" {
			b, err := os.ReadFile(e.source)
			if err != nil {
				return err
			}
			e.data = b
		}
		write(i+1, e)
	}
	write(0, cpioEntry{name: "TRAILER!!!"})
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// skipOrFail skips a test whose environment is missing, or fails it under
// CI.
func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
