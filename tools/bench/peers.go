package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// The peers of the startup table besides bwrap: nsjail, crun and firejail,
// each with the isolation closest to bwrap's row (user, PID, IPC, UTS and
// mount namespaces, / read-only, a private /dev, /proc and /tmp) that the
// tool's own flags give. A peer that is not installed keeps its row, which
// says so: the bench is not a test.

// nsjailVariant is nsjail in its one-shot mode (-Mo) with / as its root
// and tmpfs on /dev and /tmp (nsjail mounts /proc itself); -q keeps its
// log short, and its warnings go to a discarded stderr.
func nsjailVariant() row {
	v := row{variant: variant{name: "nsjail"}}
	path, err := exec.LookPath("nsjail")
	if err != nil {
		v.missing = "not installed"
		return v
	}
	v.argv = []string{path, "-Mo", "--chroot", "/", "-T", "/dev", "-T", "/tmp", "-q", "--", "/bin/true"}
	v.quiet = true
	return v
}

// crunVariant is `crun run` of a minimal OCI bundle written into dir:
// rootfs is / (bound there in the bench's private mount namespace, since
// crun pivots into the bundle's root), read-only, with proc on /proc and
// tmpfs on /dev and /tmp, in user (root's identity map), PID, IPC, UTS and
// mount namespaces, and no cgroup (--cgroup-manager=disabled: crun refuses
// this VM's hybrid cgroup layout, and ronly's cgroup is not in bwrap's row
// either). Each run gets its own container id, which crun deletes as the
// container exits.
func crunVariant(dir string) row {
	v := row{variant: variant{name: "crun"}}
	path, err := exec.LookPath("crun")
	if err != nil {
		v.missing = "not installed"
		return v
	}
	bundle := filepath.Join(dir, "crun-bundle")
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		v.missing = err.Error()
		return v
	}
	type m = map[string]any
	full := []m{{"containerID": 0, "hostID": 0, "size": uint32(1<<32 - 1)}}
	spec := m{
		"ociVersion": "1.0.0",
		"process": m{"terminal": false, "user": m{"uid": 0, "gid": 0}, "args": []string{"/bin/true"},
			"env": []string{"PATH=/usr/bin:/bin"}, "cwd": "/", "noNewPrivileges": true},
		"root": m{"path": "rootfs", "readonly": true},
		"mounts": []m{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "mode=755"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
		},
		"linux": m{
			"namespaces":  []m{{"type": "user"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}},
			"uidMappings": full, "gidMappings": full,
		},
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		v.missing = err.Error()
		return v
	}
	v.argv = []string{path, "--cgroup-manager=disabled", "run", "--bundle", bundle}
	v.crunID = true
	v.privateNS = true
	return v
}

// firejailVariant is firejail with its default profile (what `firejail
// CMD` gives), run in the bench's private mount namespace: its first run
// leaves mounts under /run/firejail, which must not reach the host. Its
// later runs find them there, as on a host where firejail has run before.
func firejailVariant() row {
	v := row{variant: variant{name: "firejail"}}
	path, err := exec.LookPath("firejail")
	if err != nil {
		v.missing = "not installed"
		return v
	}
	v.argv = []string{path, "--quiet", "/bin/true"}
	v.quiet = true
	v.privateNS = true
	return v
}

// privateNS is an OS thread in a mount namespace of its own, private to
// the bench: commands started from it (fork happens on the calling thread)
// run in that namespace, so what crun and firejail mount there dies with
// the bench. In it, / is bound at the crun bundle's rootfs, and, where the
// host has cgroup v1 controllers beside a cgroup2 tree (hybrid), an empty
// cgroup.controllers hides the cgroup2 tree's controllers from crun, which
// refuses a hybrid layout even with its cgroup manager disabled.
type privateNS struct {
	run chan func()
}

func newPrivateNS(rootfs string) (*privateNS, error) {
	p := &privateNS{run: make(chan func())}
	errc := make(chan error)
	go func() {
		// The thread is never unlocked: the runtime ends it when this
		// goroutine returns, and no other goroutine runs in its
		// namespace.
		runtime.LockOSThread()
		if err := p.setup(rootfs); err != nil {
			errc <- err
			return
		}
		errc <- nil
		for f := range p.run {
			f()
		}
	}()
	return p, <-errc
}

func (p *privateNS) setup(rootfs string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	const controllers = "/sys/fs/cgroup/unified/cgroup.controllers"
	if _, err := os.Stat(controllers); err == nil {
		if err := unix.Mount("/dev/null", controllers, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("hide %s: %w", controllers, err)
		}
	}
	if rootfs != "" {
		if err := unix.Mount("/", rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind / at %s: %w", rootfs, err)
		}
	}
	return nil
}

// do runs f on the namespace's thread and waits for it.
func (p *privateNS) do(f func()) {
	done := make(chan struct{})
	p.run <- func() { f(); close(done) }
	<-done
}

func (p *privateNS) close() { close(p.run) }
