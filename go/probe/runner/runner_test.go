package runner

import (
	"slices"
	"strings"
	"testing"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/sandbox"
)

func TestConfigsFor(t *testing.T) {
	full := &policy.Policy{Mode: policy.ModeAuto, LandlockMinABI: 1, RW: []string{"/srv"}}
	for _, tc := range []struct {
		name  string
		mode  policy.Mode
		root  bool
		names []string
	}{
		{"root", policy.ModeAuto, true, []string{"mount+caps", "userns", "landlock", "seccomp"}},
		// --rootless decides every configuration's mode, the first too.
		{"root --rootless", policy.ModeRootless, true, []string{"mount+caps+userns", "landlock", "seccomp"}},
		{"root --privileged", policy.ModePrivileged, true, []string{"mount+caps", "landlock", "seccomp"}},
		{"user", policy.ModeAuto, false, []string{"mount+caps+userns", "landlock", "seccomp"}},
		// No configuration goes without Landlock where nothing else
		// keeps the host read-only.
		{"root landlock-only", policy.ModeLandlockOnly, true, []string{"caps+landlock", "seccomp"}},
		{"user landlock-only", policy.ModeLandlockOnly, false, []string{"caps+landlock", "seccomp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := *full
			p.Mode = tc.mode
			cfgs := configsFor(&p, tc.root)
			var names []string
			for _, c := range cfgs {
				names = append(names, c.name)
			}
			if !slices.Equal(names, tc.names) {
				t.Fatalf("configurations %q, want %q", names, tc.names)
			}
			for i, c := range cfgs {
				q := c.policy
				last := i == len(cfgs)-1
				wantLandlock := c.name == "landlock" || c.name == "caps+landlock" || last
				if q.SkipLandlock == wantLandlock || q.SkipSeccomp == last {
					t.Errorf("%s: skip landlock %t, skip seccomp %t", c.name, q.SkipLandlock, q.SkipSeccomp)
				}
				if q.SkipLandlock && q.LandlockMinABI != 0 {
					t.Errorf("%s: no Landlock, yet a floor of ABI %d", c.name, q.LandlockMinABI)
				}
				wantMode := tc.mode
				if c.name == "mount+caps" {
					wantMode = policy.ModePrivileged
				}
				if q.Mode != wantMode {
					t.Errorf("%s: mode %s, want %s", c.name, q.Mode, wantMode)
				}
				if !slices.Equal(q.RW, full.RW) {
					t.Errorf("%s: --rw %q, want the full policy's %q", c.name, q.RW, full.RW)
				}
			}
			if last := cfgs[len(cfgs)-1].policy; last.SkipLandlock || last.SkipSeccomp || last.LandlockMinABI != 1 {
				t.Errorf("the last configuration is not the full policy: %+v", last)
			}
		})
	}
}

// An operation that started and never finished is judged by what ended
// its session: a hostile one that killed the supervisor went through.
func TestSessionResults(t *testing.T) {
	pr := &Prober{ops: []probe.Op{{Name: "a", Kind: probe.Hostile}, {Name: "b", Kind: probe.Everyday}, {Name: "c", Kind: probe.Hostile}}}
	ok := &probe.Result{Name: "a", Kind: probe.Hostile, Errno: "EPERM"}
	for _, tc := range []struct {
		name    string
		events  []probe.Event
		session *sessionLine
		want    map[int]string // index → Detail or Error of the result
		wantErr string
	}{
		{"finished", []probe.Event{{Index: 0, Name: "a", Start: true}, {Index: 0, Name: "a", Result: ok}}, &sessionLine{}, map[int]string{0: ""}, ""},
		{"hostile killed the supervisor", []probe.Event{{Index: 0, Name: "a", Result: ok}, {Index: 2, Name: "c", Start: true}}, nil,
			map[int]string{0: "", 2: "went through: the sandbox's supervisor was killed while it ran"}, ""},
		{"everyday lost its supervisor", []probe.Event{{Index: 1, Name: "b", Start: true}}, nil,
			map[int]string{1: "the sandbox's supervisor died while it ran"}, ""},
		{"the probe died", []probe.Event{{Index: 2, Name: "c", Start: true}}, &sessionLine{ExitCode: 9},
			map[int]string{2: "the probe died while it ran (exit status 9)"}, ""},
		{"misnamed", []probe.Event{{Index: 1, Name: "a", Start: true}}, nil, nil, `operation 1 as "a"`},
		{"out of range", []probe.Event{{Index: 3, Name: "d", Start: true}}, nil, nil, "operation 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pr.results(tc.events, tc.session)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("results for %d operations, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				r, ok := got[i]
				if !ok {
					t.Fatalf("no result for operation %d: %+v", i, got)
				}
				if r.Name != pr.ops[i].Name || r.Detail+r.Error != w {
					t.Errorf("operation %d: %+v, want %q", i, r, w)
				}
			}
		})
	}
}

// The report's notes say what limits the attribution, and a userns
// configuration the host refused says it ran without one.
func TestReportNotes(t *testing.T) {
	mk := func(root bool, mode policy.Mode, userns bool) *Prober {
		full := &policy.Policy{Mode: mode}
		pr := &Prober{root: root, full: full, configs: configsFor(full, root)}
		for _, c := range pr.configs {
			c.layers = sandbox.Layers{UserNS: userns && c.name != "mount+caps"}
		}
		return pr
	}
	for _, tc := range []struct {
		name string
		pr   *Prober
		want []string
	}{
		{"root", mk(true, policy.ModeAuto, true), []string{"mount+caps includes what the host enforces anyway"}},
		{"user", mk(false, policy.ModeAuto, true), []string{"not root: no sandbox can go without a user namespace", "under mount+caps+userns"}},
		{"rootless", mk(true, policy.ModeRootless, true), []string{"--rootless: every configuration has a user namespace"}},
		{"privileged", mk(true, policy.ModePrivileged, false), []string{"--privileged: no configuration has a user namespace"}},
		{"userns refused", mk(true, policy.ModeAuto, false), []string{"user namespaces are refused on this host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes := strings.Join(tc.pr.notes(), "\n")
			for _, w := range tc.want {
				if !strings.Contains(notes, w) {
					t.Errorf("notes have no %q:\n%s", w, notes)
				}
			}
			if last := tc.pr.notes()[len(tc.pr.notes())-1]; !strings.Contains(last, "what the host enforces anyway") {
				t.Errorf("the last note is %q", last)
			}
		})
	}
}
