// Package containers runs ronly inside real Docker containers, in the
// configurations users run it in (matrix_test.go), and checks from outside
// each container what the sandbox let happen.
//
// TestMain uses a dockerd in its standard place (tests/dockerd) and imports
// an image built from this machine's own files: the static ronly,
// Debian's busybox-static as /bin/sh and the tools, a user 1000, and
// canaries. Nothing is pulled.
//
// Needs root, docker.io, busybox-static and go (to build ronly, unless
// -ronly names a static binary). Missing ones skip, except under CI=true,
// where they fail.
package containers

import (
	"archive/tar"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ronly.dev/ronly/tests/dockerd"
)

var (
	ronlyFlag  = flag.String("ronly", "", "prebuilt static ronly binary (default: go build ./go/cmd/ronly, static)")
	matrixFlag = flag.String("matrix-out", os.Getenv("RONLY_MATRIX_OUT"), "write the measured matrix here (.json: JSON, else markdown); default $RONLY_MATRIX_OUT")
)

// image is the test image's name.
const image = "ronly-containers:test"

// busybox is Debian's busybox-static.
const busybox = "/bin/busybox"

var (
	skipReason string
	tmp        string
	daemon     *dockerd.Daemon
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := missing(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "containers: "+reason+" (CI=true, so this fails instead of skipping)")
			return 1
		}
		skipReason = reason
		return m.Run()
	}
	var err error
	if tmp, err = os.MkdirTemp("/var/tmp", "ronly-containers-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if daemon, err = dockerd.Start(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "containers: dockerd:", err)
		return 1
	}
	defer func() {
		if err := daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "containers:", err)
		}
	}()
	start := time.Now()
	if err := buildImage(); err != nil {
		fmt.Fprintln(os.Stderr, "containers: image:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "containers: image ready in %v\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

func missing() string {
	if reason := dockerd.Missing(); reason != "" {
		return reason
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

func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// buildImage builds the rootfs tarball and imports it (unless the daemon
// already has this very tarball's image).
func buildImage() error {
	ronly := *ronlyFlag
	if ronly == "" {
		ronly = filepath.Join(tmp, "ronly")
		if err := buildStaticRonly(ronly); err != nil {
			return err
		}
	}
	rootfs := filepath.Join(tmp, "rootfs.tar")
	if err := writeRootfs(rootfs, ronly); err != nil {
		return err
	}
	return daemon.Import(rootfs, image)
}

// buildStaticRonly links ronly as Bazel's //:ronly is: static, pure-Go DNS
// and user lookups, so that it runs in an image with no libc at all.
func buildStaticRonly(out string) error {
	cmd := exec.Command("go", "build", "-tags", "netgo,osusergo",
		"-ldflags", "-linkmode=external -extldflags=-static -X main.version=containers-test", "-o", out, "ronly.dev/ronly/go/cmd/ronly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ronly: %v\n%s", err, b)
	}
	return nil
}

// The image's canaries. The rootfs canary directory and file are writable
// by everyone, so that only the sandbox can stop a write to them.
const (
	canaryDir      = "/canary"
	canaryFile     = "/canary/file"
	canaryContent  = "canary\n"
	hostCanaryDir  = "/hostcanary" // a host directory bound in by each cell
	serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// writeRootfs writes the image: busybox and its applets in /bin, ronly in
// /usr/local/bin, root and user (1000) in /etc/passwd, /var/run → /run as
// in pods, and the canary directory.
func writeRootfs(path, ronly string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: mode, Uid: uid, Gid: uid, Typeflag: tar.TypeDir, ModTime: epoch})
	}
	file := func(name string, mode int64, uid int, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Uid: uid, Gid: uid, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	link := func(name, target string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink, ModTime: epoch})
	}
	for _, d := range []struct {
		name string
		mode int64
		uid  int
	}{
		{"bin", 0o755, 0}, {"etc", 0o755, 0}, {"usr", 0o755, 0}, {"usr/bin", 0o755, 0}, {"usr/local", 0o755, 0},
		{"usr/local/bin", 0o755, 0}, {"root", 0o700, 0}, {"home", 0o755, 0}, {"home/user", 0o755, 1000},
		{"tmp", 0o1777, 0}, {"run", 0o755, 0}, {"var", 0o755, 0}, {"var/tmp", 0o1777, 0}, {"proc", 0o555, 0},
		{"sys", 0o555, 0}, {"dev", 0o755, 0}, {"canary", 0o777, 0}, {"hostcanary", 0o755, 0},
	} {
		if err := dir(d.name, d.mode, d.uid); err != nil {
			return err
		}
	}
	if err := link("var/run", "../run"); err != nil {
		return err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := file("bin/busybox", 0o755, 0, bb); err != nil {
		return err
	}
	applets, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(applets)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := link("bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	rb, err := os.ReadFile(ronly)
	if err != nil {
		return err
	}
	for _, x := range []struct {
		name string
		mode int64
		uid  int
		data string
	}{
		{"usr/local/bin/ronly", 0o755, 0, string(rb)},
		{"etc/passwd", 0o644, 0, "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"etc/group", 0o644, 0, "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"},
		{"etc/hostname", 0o644, 0, "ronly-test\n"},
		{"canary/file", 0o666, 0, canaryContent},
	} {
		if err := file(x.name, x.mode, x.uid, []byte(x.data)); err != nil {
			return err
		}
	}
	return tw.Close()
}
