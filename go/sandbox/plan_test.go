package sandbox

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// Every flag and profile yields these records and layers. The profiles are
// the policy fields that go/cli's applyProfile sets: ci binds the
// workspace writable (first in RW), sets PIDNS and covers $HOME; debug
// sets only Profile.
func TestPlan(t *testing.T) {
	const size = 64 << 20
	notify, errno := []byte("NOTIFY-8"), []byte("ERRNO--8")
	prog := Programs{Notify: notify, Errno: errno}
	tmp := cinit.Mount{Kind: cinit.MountTmpfs, Path: "/tmp", Size: size, Mode: 0o1777}
	git := []cinit.Mount{{Kind: cinit.MountPin, Path: "/w/.git"}, {Kind: cinit.MountBindRO, Path: "/w/.git/hooks"}}
	creds := []cinit.Mount{{Kind: cinit.MountHide, Path: "/root/.kube/config"}, {Kind: cinit.MountHideDir, Path: "/var/run/secrets/kubernetes.io/serviceaccount", Mode: 0o755},
		{Kind: cinit.MountShow, Path: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}}
	seccomp := cinit.FlagSeccompNotify
	root := Host{LandlockABI: 7, Root: true}
	type want struct {
		flags    uint32
		mounts   []cinit.Mount
		layers   Layers // Seccomp, Network and Cgroup default to errno, host, none
		abi      uint32
		noBPF    bool
		warnings []string // substrings, one per warning
	}
	for _, c := range []struct {
		name string
		p    policy.Policy
		h    Host
		want want
	}{
		{"default as root", policy.Policy{Mode: policy.ModeAuto}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"default as a user", policy.Policy{Mode: policy.ModeAuto}, Host{LandlockABI: 7},
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "rootless", LandlockABI: 7}, abi: 7}},
		{"--mode rootless as root", policy.Policy{Mode: policy.ModeRootless}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "rootless", LandlockABI: 7}, abi: 7}},
		{"--mode userns", policy.Policy{Mode: policy.ModeUserNS}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--mode privileged", policy.Policy{Mode: policy.ModePrivileged}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "privileged", LandlockABI: 7}, abi: 7}},
		{"--mode landlock-only", policy.Policy{Mode: policy.ModeLandlockOnly}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: LandlockOnly, LandlockABI: 7}, abi: 7}},
		{"--mode landlock-only below ABI 6", policy.Policy{Mode: policy.ModeLandlockOnly}, Host{LandlockABI: 5, Root: true},
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: LandlockOnly, LandlockABI: 5}, abi: 5,
				warnings: []string{"Landlock ABI 5 cannot scope signals and landlock-only mode has no PID namespace"}}},
		{"--tmpfs-size", policy.Policy{Mode: policy.ModeAuto, TmpfsSize: 1 << 30}, root,
			want{flags: seccomp, mounts: []cinit.Mount{{Kind: cinit.MountTmpfs, Path: "/tmp", Size: 1 << 30, Mode: 0o1777}},
				layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--no-network", policy.Policy{Mode: policy.ModeAuto, NoNetwork: true}, root,
			want{flags: seccomp | cinit.FlagNetNS, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7, Network: "none"}, abi: 7}},
		{"--writable", policy.Policy{Mode: policy.ModeAuto, Writable: []string{"/a", "/b"}}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp, {Kind: cinit.MountTmpfs, Path: "/a", Size: size, Mode: 0o755},
				{Kind: cinit.MountTmpfs, Path: "/b", Size: size, Mode: 0o755}}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--rw", policy.Policy{Mode: policy.ModeAuto, RW: []string{"/w", "/x"}},
			Host{LandlockABI: 7, Root: true, RW: []policy.FileID{{Dev: 1, Ino: 2}, {Dev: 3, Ino: 4}}},
			want{flags: seccomp, mounts: []cinit.Mount{tmp, {Kind: cinit.MountBindRW, Path: "/w", Dev: 1, Ino: 2},
				{Kind: cinit.MountBindRW, Path: "/x", Dev: 3, Ino: 4}}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		// A place inside another after it, each --rw with its own
		// identity whatever the order.
		{"--writable inside --rw", policy.Policy{Mode: policy.ModeAuto, Writable: []string{"/w/a/cache"}, RW: []string{"/x/y", "/w"}},
			Host{LandlockABI: 7, Root: true, RW: []policy.FileID{{Dev: 1, Ino: 2}, {Dev: 3, Ino: 4}}},
			want{flags: seccomp, mounts: []cinit.Mount{tmp, {Kind: cinit.MountBindRW, Path: "/w", Dev: 3, Ino: 4},
				{Kind: cinit.MountBindRW, Path: "/x/y", Dev: 1, Ino: 2}, {Kind: cinit.MountTmpfs, Path: "/w/a/cache", Size: size, Mode: 0o755}},
				layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--rw of a repository", policy.Policy{Mode: policy.ModeAuto, RW: []string{"/w"}},
			Host{LandlockABI: 7, Root: true, RW: []policy.FileID{{Dev: 1, Ino: 2}}, Git: git},
			want{flags: seccomp, mounts: append([]cinit.Mount{tmp, {Kind: cinit.MountBindRW, Path: "/w", Dev: 1, Ino: 2}}, git...),
				layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"credentials hidden", policy.Policy{Mode: policy.ModeAuto, KubeConfig: []string{"/root/.kube/config"}},
			Host{LandlockABI: 7, Root: true, Creds: creds},
			want{flags: seccomp, mounts: append([]cinit.Mount{tmp}, creds...), layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--allow-socket (mediation only: no record)", policy.Policy{Mode: policy.ModeAuto, AllowSocket: []string{"/run/x.sock"}}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--allow-metadata (mediation only: no record)", policy.Policy{Mode: policy.ModeAuto, AllowMetadata: true}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"built-in shims", policy.Policy{Mode: policy.ModeAuto, ShimTools: []string{"docker", "kubectl"}}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp, {Kind: cinit.MountShim, Path: "/docker"}, {Kind: cinit.MountShim, Path: "/kubectl"}},
				layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--no-shims", policy.Policy{Mode: policy.ModeAuto, ShimTools: []string{"docker"}, NoShims: true}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--profile debug", policy.Policy{Mode: policy.ModeAuto, Profile: policy.ProfileDebug}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"--profile ci", policy.Policy{Mode: policy.ModeAuto, Profile: policy.ProfileCI, RW: []string{"/ws", "/root/.cache"}, PIDNS: true, Home: "/root", Writable: []string{"/a"}},
			Host{LandlockABI: 7, Root: true, RW: []policy.FileID{{Dev: 1, Ino: 2}, {Dev: 1, Ino: 3}}, Git: git, Creds: creds},
			// $HOME after the other tmpfs mounts, before the binds: a
			// cache bound writable inside it lands on top.
			want{flags: seccomp | cinit.FlagPIDNS, mounts: append(append([]cinit.Mount{tmp, {Kind: cinit.MountTmpfs, Path: "/a", Size: size, Mode: 0o755},
				{Kind: cinit.MountTmpfs, Path: "/root", Size: size, Mode: 0o700},
				{Kind: cinit.MountBindRW, Path: "/ws", Dev: 1, Ino: 2}, {Kind: cinit.MountBindRW, Path: "/root/.cache", Dev: 1, Ino: 3}}, git...), creds...),
				layers: Layers{Mode: "userns", LandlockABI: 7, PIDNS: true}, abi: 7}},
		{"--landlock-max-abi", policy.Policy{Mode: policy.ModeAuto, LandlockMaxABI: 4}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 4}, abi: 4}},
		{"--landlock-min-abi met", policy.Policy{Mode: policy.ModeAuto, LandlockMinABI: 7}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7}, abi: 7}},
		{"probe: no Landlock", policy.Policy{Mode: policy.ModeAuto, SkipLandlock: true}, root,
			want{flags: seccomp, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns"}, abi: 0}},
		{"probe: no seccomp", policy.Policy{Mode: policy.ModeAuto, SkipSeccomp: true}, root,
			want{mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 7, Seccomp: "none"}, abi: 7, noBPF: true}},
		{"probe: no seccomp below ABI 6", policy.Policy{Mode: policy.ModeAuto, SkipSeccomp: true}, Host{LandlockABI: 5, Root: true},
			want{flags: cinit.FlagPIDNS, mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", LandlockABI: 5, Seccomp: "none", PIDNS: true}, abi: 5, noBPF: true,
				warnings: []string{"Landlock ABI 5 cannot scope signals: using a private PID namespace"}}},
		{"probe: neither layer", policy.Policy{Mode: policy.ModeAuto, SkipSeccomp: true, SkipLandlock: true}, Host{LandlockABI: 5, Root: true},
			want{mounts: []cinit.Mount{tmp}, layers: Layers{Mode: "userns", Seccomp: "none"}, abi: 0, noBPF: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			if p.TmpfsSize == 0 {
				p.TmpfsSize = size
			}
			pl, err := newPlan(&p, c.h, prog)
			if err != nil {
				t.Fatal(err)
			}
			w := c.want
			if w.layers.Seccomp == "" {
				w.layers.Seccomp = "errno"
			}
			if w.layers.Network == "" {
				w.layers.Network = "host"
			}
			w.layers.Cgroup = "none"
			cfg := pl.Config
			if cfg.Flags != w.flags {
				t.Errorf("flags %#x, want %#x", cfg.Flags, w.flags)
			}
			if cfg.LandlockABI != w.abi {
				t.Errorf("Landlock ABI %d, want %d", cfg.LandlockABI, w.abi)
			}
			if !reflect.DeepEqual(cfg.Mounts, w.mounts) {
				t.Errorf("mounts\n got %+v\nwant %+v", cfg.Mounts, w.mounts)
			}
			if w.noBPF {
				if cfg.BPF != nil || cfg.Fallback != nil {
					t.Errorf("programs %q, %q without seccomp", cfg.BPF, cfg.Fallback)
				}
			} else if !bytes.Equal(cfg.BPF, notify) || !bytes.Equal(cfg.Fallback, errno) {
				t.Errorf("programs %q, %q: want the notify program and the errno one as its fallback", cfg.BPF, cfg.Fallback)
			}
			if cfg.ReportFD != 0 || cfg.Argv != nil || cfg.Env != nil || cfg.UsernsLimits != nil {
				t.Errorf("the plan set what each start sets: %+v", cfg)
			}
			if pl.Layers != w.layers {
				t.Errorf("layers\n got %+v\nwant %+v", pl.Layers, w.layers)
			}
			if len(pl.Warnings) != len(w.warnings) {
				t.Fatalf("warnings %q, want %d", pl.Warnings, len(w.warnings))
			}
			for i, s := range w.warnings {
				if !strings.Contains(pl.Warnings[i], s) {
					t.Errorf("warning %q, want it to say %q", pl.Warnings[i], s)
				}
			}
			// The records are what the init reads: they must encode.
			if _, err := cfg.MarshalBinary(); err != nil {
				t.Errorf("records: %v", err)
			}
		})
	}
}

// A plan refuses what the kernel or the mode cannot give, naming the flag.
func TestPlanRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		p    policy.Policy
		h    Host
		want string // in the error
		flag string // the FlagError's, if it is one
	}{
		{"--landlock-min-abi above the kernel's", policy.Policy{Mode: policy.ModeAuto, LandlockMinABI: 6}, Host{LandlockABI: 5},
			"Landlock ABI 5 on this kernel is below the floor 6", ""},
		{"--landlock-max-abi below --landlock-min-abi", policy.Policy{Mode: policy.ModeAuto, LandlockMinABI: 4, LandlockMaxABI: 3}, Host{LandlockABI: 7},
			"Landlock ABI 3 on this kernel is below the floor 4", ""},
		{"landlock-only without Landlock", policy.Policy{Mode: policy.ModeLandlockOnly}, Host{LandlockABI: 0},
			"needs Landlock", "--mode"},
		{"landlock-only with --writable", policy.Policy{Mode: policy.ModeLandlockOnly, Writable: []string{"/a"}}, Host{LandlockABI: 7},
			"--writable cannot be had", "--mode"},
		{"landlock-only with --no-network", policy.Policy{Mode: policy.ModeLandlockOnly, NoNetwork: true}, Host{LandlockABI: 7},
			"--no-network cannot be had", "--mode"},
		{"landlock-only with the ci profile", policy.Policy{Mode: policy.ModeLandlockOnly, PIDNS: true}, Host{LandlockABI: 7},
			"--profile cannot be had", "--mode"},
		{"--rw without its identity", policy.Policy{Mode: policy.ModeAuto, RW: []string{"/w"}}, Host{LandlockABI: 7},
			"identities", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.p
			p.TmpfsSize = 1 << 20
			_, err := newPlan(&p, c.h, Programs{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
			var fe *policy.FlagError
			if c.flag != "" && (!errors.As(err, &fe) || fe.Flag != c.flag) {
				t.Errorf("%v: want a FlagError for %s", err, c.flag)
			}
		})
	}
}

// The precompiled programs load, and the plan gets the notify program with
// the errno one as its fallback.
func TestLoadPrograms(t *testing.T) {
	prog, withSignals, table, err := loadPrograms()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"notify": prog.Notify, "errno": prog.Errno, "notify-signals": withSignals} {
		if len(b) == 0 || len(b)%8 != 0 {
			t.Errorf("%s program: %d bytes, not whole instructions", name, len(b))
		}
	}
	if bytes.Equal(prog.Notify, prog.Errno) || bytes.Equal(prog.Notify, withSignals) {
		t.Error("the programs are not distinct")
	}
	if len(table) == 0 {
		t.Error("empty policy table")
	}
}
