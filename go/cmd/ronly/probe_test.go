package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
)

func TestProbeConfigs(t *testing.T) {
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
			cfgs := probeConfigs(&p, tc.root)
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

func TestProbeTable(t *testing.T) {
	layers := []string{"mount+caps", "userns", "landlock", "seccomp"}
	res := func(name string, kind probe.Kind, errnos ...string) []probe.Result {
		var out []probe.Result
		for _, e := range errnos {
			r := probe.Result{Name: name, Kind: kind, Want: []string{"EPERM"}}
			switch e {
			case "ok":
				r.Pass = true
			case "-":
			default:
				r.Errno, r.Error = e, strings.ToLower(e)
			}
			out = append(out, r)
		}
		return out
	}
	ops := []probe.Operation{
		probe.NewOperation(probe.Op{Name: "write", Kind: probe.Hostile}, res("write", probe.Hostile, "EROFS", "EROFS", "EROFS", "EROFS"), layers),
		probe.NewOperation(probe.Op{Name: "kill", Kind: probe.Hostile}, res("kill", probe.Hostile, "-", "-", "EPERM", "EPERM"), layers),
		probe.NewOperation(probe.Op{Name: "leak", Kind: probe.Hostile}, res("leak", probe.Hostile, "-", "-", "-", "-"), layers),
		probe.NewOperation(probe.Op{Name: "clock", Kind: probe.Hostile}, res("clock", probe.Hostile, "EINVAL", "EINVAL", "EINVAL", "EPERM"), layers),
		probe.NewOperation(probe.Op{Name: "read", Kind: probe.Everyday}, res("read", probe.Everyday, "ok", "ok", "ok", "ok"), layers),
	}
	rep := &probe.Report{Version: probe.ReportVersion, Kernel: "6.x", LandlockABI: 7, Operations: ops}
	for _, l := range layers {
		rep.Configurations = append(rep.Configurations, probe.Configuration{Name: l, Runs: 1})
	}
	rep.Summary = probe.Summarize(ops, false)
	var b bytes.Buffer
	printProbeTable(&b, rep)
	out := b.String()
	for _, want := range []string{
		"== mount+caps: 1 hostile operation(s) refused",
		"== landlock: 1 hostile operation(s) refused",
		"== seccomp: 1 hostile operation(s) refused",
		"== NONE: 1 hostile operation(s) NOT REFUSED by any layer",
		"== everyday: 1 ok, 0 failed, 0 skipped",
		"Summary: 4 hostile operations, blocked by: mount+caps 1, landlock 1, seccomp 1, NONE 1; 1 everyday: 1 ok",
		"FINDING: 1 hostile operation(s) went through the full sandbox (blocked by NONE):\n  leak",
		"1 of them (e in BY CONFIG)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nOK:") {
		t.Errorf("a table with a finding says OK:\n%s", out)
	}
	// Sorted by layer: the write (mount+caps) before the kill (landlock)
	// before the leak (NONE).
	if i, j, k := strings.Index(out, "\nwrite "), strings.Index(out, "\nkill "), strings.Index(out, "\nleak "); !(i < j && j < k) {
		t.Errorf("rows not sorted by layer:\n%s", out)
	}
	if strings.Contains(out, " \n") {
		t.Errorf("trailing spaces in the table:\n%q", out)
	}
}

// `ronly probe` is the subcommand, `ronly -- probe` a program called probe,
// and the hidden parts parse but are not in the help.
func TestProbeCommandLine(t *testing.T) {
	if got := explicitRun([]string{"--", "probe"}); !slices.Equal(got, []string{"run", "--", "probe"}) {
		t.Errorf("explicitRun(-- probe) = %q", got)
	}
	if got := explicitRun([]string{"probe", "--json"}); !slices.Equal(got, []string{"probe", "--json"}) {
		t.Errorf("explicitRun(probe --json) = %q", got)
	}
	for _, tc := range []struct {
		args []string
		cmd  string
	}{
		{[]string{"probe", "--json"}, "probe"},
		{[]string{"--no-network", "probe"}, "probe"},
		{[]string{"probe-internal", "inside", "--targets", `{"pid":2}`, "--ops", "0,1", "--events", "/x/events"}, "probe-internal inside"},
		{[]string{"probe-internal", "supervise"}, "probe-internal supervise"},
		{[]string{"probe-internal", "canary"}, "probe-internal canary"},
		{[]string{"--", "probe", "x"}, "run <command>"},
	} {
		parser, _ := newTestParser(t)
		ctx, err := parser.Parse(explicitRun(tc.args))
		if err != nil {
			t.Errorf("parse %q: %v", tc.args, err)
			continue
		}
		if ctx.Command() != tc.cmd {
			t.Errorf("parse %q: command %q, want %q", tc.args, ctx.Command(), tc.cmd)
		}
	}
	parser, _ := newTestParser(t)
	var help bytes.Buffer
	parser.Stdout = &help
	func() {
		defer func() { recover() }()
		parser.Parse([]string{"--help"})
	}()
	if !strings.Contains(help.String(), "probe") || strings.Contains(help.String(), "probe-internal") {
		t.Errorf("--help should list probe and hide probe-internal:\n%s", help.String())
	}
}
