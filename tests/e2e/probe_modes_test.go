package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"ronly.dev/ronly/go/probe"
)

// runProbe runs `ronly probe --json` through argv (a wrapper, then the
// ronly binary and its flags) and checks what every mode must give: exit
// 0, a clean report, configurations named want, in mode wantMode, the
// test's own canaries unchanged from outside and nothing left behind.
func runProbe(t *testing.T, argv []string, want []string, wantMode string) *probe.Report {
	t.Helper()
	c := newCanaries(t, 0)
	before := c.snapshot(t)
	leftoversBefore := probeLeftovers(t)
	r := outside(t, argv...)
	if r.code != 0 {
		t.Errorf("%q: want exit 0\n%s", argv, r)
	}
	var rep probe.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%q printed no report: %v\n%s", argv, err, r)
	}
	var names []string
	for _, cfg := range rep.Configurations {
		names = append(names, cfg.Name)
		if wantMode != "" && cfg.Mode != wantMode {
			t.Errorf("configuration %s ran in mode %s, want %s", cfg.Name, cfg.Mode, wantMode)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("configurations %q, want %q", names, want)
	}
	s := rep.Summary
	if !rep.OK || s.BlockedByLayer[probe.BlockedByNone] != 0 || s.EverydayFailed != 0 || s.HostChanged || s.Hostile == 0 {
		t.Errorf("report not clean: ok %v, summary %+v", rep.OK, s)
	}
	c.verify(t, before)
	if !alive(c.proc.Process.Pid) {
		t.Errorf("HOST CHANGED: the test's own canary process died")
	}
	if left := newEntries(leftoversBefore, probeLeftovers(t)); len(left) > 0 {
		t.Errorf("ronly probe left behind: %q", left)
	}
	return &rep
}

// TestProbeRootlessAsRoot: --rootless is honoured by every configuration,
// none of which then goes without a user namespace.
func TestProbeRootlessAsRoot(t *testing.T) {
	b := setup(t)
	rep := runProbe(t, []string{b.ronly, "probe", "--rootless", "--json"}, []string{"mount+caps+userns", "landlock", "seccomp"}, "rootless")
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "--rootless") }) {
		t.Errorf("the report does not say why the layers cannot be told apart: %q", rep.Notes)
	}
}

// TestProbeReadOnlyVarTmp: with /var/tmp read-only (in a mount namespace
// of the test's own) the probe makes its canaries elsewhere and works.
func TestProbeReadOnlyVarTmp(t *testing.T) {
	b := setup(t)
	needTool(t, "unshare")
	rep := runProbe(t, []string{"unshare", "-m", "/bin/sh", "-c", `mount -o bind,ro /var/tmp /var/tmp && exec "$0" probe --json`, b.ronly},
		[]string{"mount+caps", "userns", "landlock", "seccomp"}, "")
	if got := rep.Configurations[0].Mode; got != "privileged" {
		t.Errorf("root's first configuration ran in mode %s", got)
	}
	// A directory that is not writable, or that the sandbox replaces, is
	// refused in one line naming the flag.
	for _, dir := range []string{"/tmp", "/proc"} {
		r := b.run(t, opts{}, "probe", "--canary-dir", dir)
		if line := strings.TrimSpace(r.stderr); r.code != 125 || strings.Contains(line, "\n") || !strings.Contains(line, "--canary-dir") || !strings.Contains(line, dir) {
			t.Errorf("--canary-dir %s: want one line naming the flag, exit 125:\n%s", dir, r)
		}
	}
}

// TestProbeWithoutSysAdmin: root without CAP_SYS_ADMIN (a container's
// root) cannot build the configuration without a user namespace; ronly
// runs in one there, and so does the probe, which says what it left out.
func TestProbeWithoutSysAdmin(t *testing.T) {
	b := setup(t)
	needTool(t, "capsh")
	rep := runProbe(t, []string{"capsh", "--drop=cap_sys_admin", "--", "-c", `exec "$0" probe --json`, b.ronly},
		[]string{"mount+caps+userns", "landlock", "seccomp"}, "userns")
	if !slices.ContainsFunc(rep.Notes, func(n string) bool {
		return strings.Contains(n, "cannot be built here") && strings.Contains(n, "CAP_SYS_ADMIN")
	}) {
		t.Errorf("the report does not say why mount+caps was left out: %q", rep.Notes)
	}
}
