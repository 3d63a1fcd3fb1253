package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A kernel before 5.12, as Debian 11's 5.10 is to ronly: no Landlock (5.13)
// and no mount_setattr (5.12), both ENOSYS. tests/kernels boots the real
// 5.10; this runs the same refusals here in seconds.
func init() {
	filters["no-landlock-no-setattr"] = struct {
		prog  []unix.SockFilter
		flags uintptr
	}{[]unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_MOUNT_SETATTR, Jt: 4, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_LANDLOCK_CREATE_RULESET, Jt: 3, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_LANDLOCK_ADD_RULE, Jt: 2, Jf: 0},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_LANDLOCK_RESTRICT_SELF, Jt: 1, Jf: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	}, 0}
}

// TestNoLandlockNoMountSetattr: on a kernel without Landlock and without
// mount_setattr, ronly refuses to start in one line (exit 125) by default,
// and also with --landlock-min-abi 0, as root and as a user: every mode
// with namespaces needs mount_setattr, and landlock-only mode without
// Landlock would keep nothing read-only (before the fix, auto mode fell
// back to it and the session wrote a root-owned host file). Checked from
// outside: the canary files are unchanged and nothing was created.
func TestNoLandlockNoMountSetattr(t *testing.T) {
	b := setup(t)
	needTool(t, "setpriv")
	for _, c := range []struct {
		name string
		uid  int
		pre  []string // before ronly's path
	}{
		{"root", 0, nil},
		{"user", 65534, []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := userDir(t, c.uid, "ronly-e2e-oldkernel-")
			canary := filepath.Join(dir, "canary")
			if err := os.WriteFile(canary, []byte("canary\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Writable by its owner only: the files' own permissions let
			// the session's user write it.
			if err := os.Chown(canary, c.uid, c.uid); err != nil {
				t.Fatal(err)
			}
			hostile := "echo pwned >" + canary + "; touch " + dir + "/made; echo RAN"
			for _, f := range []struct {
				flags []string
				want  []string // in the one line
			}{
				{nil, []string{"Landlock ABI 0", "--landlock-min-abi"}},
				{[]string{"--landlock-min-abi", "0"}, []string{"mount_setattr", "function not implemented", "mount API"}},
				// Asked for by name: still nothing to keep the host
				// read-only.
				{[]string{"--landlock-min-abi", "0", "--mode", "landlock-only"}, []string{"--mode", "landlock-only", "needs Landlock"}},
			} {
				args := append(append(append([]string{}, c.pre...), b.ronly), f.flags...)
				args = append(args, "--", "/bin/sh", "-c", hostile)
				r := underFilter(t, "no-landlock-no-setattr", args...)
				line := strings.TrimSpace(r.stderr)
				t.Logf("%v: exit %d: %s", f.flags, r.code, line)
				if r.code != 125 || strings.Count(line, "\n") != 0 || strings.Contains(r.stdout, "RAN") {
					t.Errorf("%v: want a refusal in one line, exit 125, the command not run:\n%s", f.flags, r)
				}
				for _, w := range f.want {
					if !strings.Contains(line, w) {
						t.Errorf("%v: the line does not say %q:\n%s", f.flags, w, r)
					}
				}
				if got, err := os.ReadFile(canary); err != nil || string(got) != "canary\n" {
					t.Errorf("%v: the canary file is now %q (%v)", f.flags, got, err)
				}
				if _, err := os.Stat(filepath.Join(dir, "made")); err == nil {
					t.Errorf("%v: the session made a file in a host directory", f.flags)
				}
			}
			// The probe refuses as ronly does, before any of its
			// sandboxes (the first leave Landlock out) runs.
			args := append(append(append([]string{}, c.pre...), b.ronly), "probe", "--canary-dir", dir)
			r := underFilter(t, "no-landlock-no-setattr", args...)
			line := strings.TrimSpace(r.stderr)
			t.Logf("probe: exit %d: %s", r.code, line)
			if r.code != 125 || strings.Count(line, "\n") != 0 || !strings.Contains(line, "Landlock ABI 0") || !strings.Contains(line, "--landlock-min-abi") {
				t.Errorf("probe: want the Landlock floor's refusal in one line, exit 125:\n%s", r)
			}
			if left, _ := os.ReadDir(dir); len(left) != 1 {
				t.Errorf("probe: %d entries in the canary directory, want only the test's canary", len(left))
			}
		})
	}
}
