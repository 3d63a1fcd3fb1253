package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"ronly.dev/ronly/go/probe"
)

// TestProbeCommand runs `ronly probe --json`, as root and as a user, and
// checks the document: no hostile operation goes through the full sandbox,
// the layer named for the operations whose layer is certain, every
// everyday operation works, the host is as it was and ronly left nothing
// behind (canary directories, sockets, processes).
func TestProbeCommand(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			// The host's state, and canaries of the test's own that ronly
			// probe knows nothing about.
			c := newCanaries(t, u.uid)
			before := c.snapshot(t)
			leftoversBefore := probeLeftovers(t)

			r := b.run(t, opts{uid: u.uid}, "probe", "--json")
			if r.code != 0 {
				t.Errorf("ronly probe --json: want exit 0\n%s", r)
			}
			var rep probe.Report
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
				t.Fatalf("ronly probe --json printed no report: %v\n%s", err, r)
			}
			checkProbeReport(t, &rep, u.uid)

			c.verify(t, before)
			if !alive(c.proc.Process.Pid) {
				t.Errorf("HOST CHANGED: the test's own canary process died")
			}
			if left := newEntries(leftoversBefore, probeLeftovers(t)); len(left) > 0 {
				t.Errorf("ronly probe left behind: %q", left)
			}
		})
	}
}

// TestProbeCommandTable: the human output has the table, a summary line per
// layer and the overall summary, and exits 0.
func TestProbeCommandTable(t *testing.T) {
	b := setup(t)
	r := b.run(t, opts{}, "probe")
	if r.code != 0 {
		t.Errorf("ronly probe: want exit 0\n%s", r)
	}
	for _, want := range []string{
		"OPERATION", "BLOCKED BY",
		"== mount+caps: ", "== userns: ", "== landlock: ", "== seccomp: ", "== everyday: ",
		"\nSummary: ", "NONE 0", "\nOK: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the table has no %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "FINDING") || strings.Contains(r.stdout, "SANDBOX BREACH") {
		t.Errorf("ronly probe found a breach:\n%s", r.stdout)
	}
}

func checkProbeReport(t *testing.T, rep *probe.Report, uid int) {
	t.Helper()
	if rep.Version != probe.ReportVersion || rep.Kernel == "" || rep.UID != uid || !rep.OK {
		t.Errorf("report header: version %d kernel %q uid %d ok %t", rep.Version, rep.Kernel, rep.UID, rep.OK)
	}
	var names []string
	for _, c := range rep.Configurations {
		names = append(names, c.Name)
	}
	wantNames := []string{"mount+caps", "userns", "landlock", "seccomp"}
	if uid != 0 {
		wantNames = []string{"mount+caps+userns", "landlock", "seccomp"}
		if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "cannot be told apart") }) {
			t.Errorf("a user's report does not say the mount and user namespace layers cannot be told apart: %q", rep.Notes)
		}
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("configurations %q, want %q", names, wantNames)
	}
	first, full := rep.Configurations[0], rep.Configurations[len(rep.Configurations)-1]
	if uid == 0 && (first.Mode != "privileged" || first.UserNS || first.LandlockABI != 0 || first.Seccomp != "none") {
		t.Errorf("the first configuration is not bare: %+v", first)
	}
	if full.LandlockABI == 0 || full.Seccomp == "none" || !full.UserNS {
		t.Errorf("the last configuration is not the full sandbox: %+v", full)
	}
	if len(full.HostChanges) > 0 {
		t.Errorf("HOST CHANGED in the full sandbox:\n  %s", strings.Join(full.HostChanges, "\n  "))
	}
	// Without Landlock, signals and abstract sockets reach the host's
	// processes of the same user: that, and only that, may change there;
	// and without seccomp, the owner of a file in the --rw directory may
	// make it set-id, and nothing mediates connect and send: the host's
	// unix sockets answer as their permissions allow.
	for _, c := range rep.Configurations[:len(rep.Configurations)-1] {
		for _, ch := range c.HostChanges {
			if !strings.Contains(ch, "canary process") && !strings.Contains(ch, "abstract socket") &&
				!strings.Contains(ch, "in the --rw directory") && !strings.Contains(ch, "on the hidden socket") {
				t.Errorf("configuration %s changed the canaries unexpectedly: %s", c.Name, ch)
			}
		}
	}

	ops := probe.All()
	if len(rep.Operations) != len(ops) {
		t.Errorf("%d operations in the report, %d in the battery", len(rep.Operations), len(ops))
	}
	byName := map[string]probe.Operation{}
	for _, o := range rep.Operations {
		byName[o.Name] = o
		if len(o.ResultsByConfig) != len(names) {
			t.Errorf("%s: results for %d configurations, want %d", o.Name, len(o.ResultsByConfig), len(names))
		}
		switch {
		case o.Kind == probe.Hostile && o.BlockedBy == probe.BlockedByNone:
			t.Errorf("SANDBOX BUG: hostile %q went through every layer: %+v", o.Name, o.ResultsByConfig)
		case o.Kind == probe.Hostile && o.BlockedBy == probe.BlockedByUnknown:
			t.Errorf("hostile %q: the probe could not tell what stopped it: %+v", o.Name, o.ResultsByConfig)
		case o.Kind == probe.Hostile && o.BlockedBy != probe.BlockedByNA && !slices.Contains(names, o.BlockedBy):
			t.Errorf("hostile %q blocked by %q, not a configuration", o.Name, o.BlockedBy)
		case o.Kind == probe.Everyday && o.Result != probe.OK && o.Result != probe.Skipped:
			t.Errorf("SANDBOX BUG: everyday %q %s in the full sandbox (broken by %s): %+v", o.Name, o.Result, o.BlockedBy, o.ResultsByConfig[full.Name])
		}
	}

	// The layers that are certain. The canaries belong to the user ronly
	// runs as, so only the sandbox stands in the way; root's canary
	// process also has every capability, which the sandbox has dropped.
	base := names[0]
	certain := []struct {
		op, layer, errno string
	}{
		// The read-only root.
		{"open O_WRONLY host file", base, "EROFS"},
		{"unlink host file", base, "EROFS"},
		// No CAP_SYS_ADMIN, and no namespace of its own to have it in.
		{"mount tmpfs", base, "EPERM"},
		{"mount MS_REMOUNT|MS_BIND rw /", base, "EPERM"},
		// Only the seccomp filter says ENOSYS for clone3; the kernel
		// rejects the zero-sized argument with EINVAL.
		{"clone3", "seccomp", "ENOSYS"},
		// A process of the same user: neither capabilities nor a user
		// namespace (ids are compared as the host sees them) stop a
		// signal; Landlock's signal scoping does (below ABI 6, the PID
		// namespace ronly then adds to that configuration).
		{"kill SIGKILL canary", "landlock", ""},
		{"tgkill SIGKILL canary", "landlock", ""},
		{"kill SIGKILL parent (the ronly supervisor)", "landlock", ""},
		// The owner of a file may make it set-id, with no capability:
		// only the seccomp filter's mode rules refuse it.
		{"chmod 04755 in a writable dir", "seccomp", "EPERM"},
		{"open O_CREAT 04755 in a writable dir", "seccomp", "EPERM"},
		{"mknod S_IFREG|04755 in a writable dir", "seccomp", "EPERM"},
		// Raising the nice value of one's own user's processes needs no
		// capability either.
		{"setpriority PRIO_USER 0 (my user, host processes too)", "seccomp", "EPERM"},
		// The kernel lets a socket of the same user join the group.
		{"SO_REUSEPORT on a host listener's port", "seccomp", "EPERM"},
	}
	if uid == 0 {
		certain = append(certain, []struct{ op, layer, errno string }{
			// Tracing a process with more capabilities than one's own is
			// refused by the capability rules (cap_ptrace_access_check)
			// before a user namespace is needed.
			{"PTRACE_ATTACH canary", "mount+caps", "EPERM"},
			// Privileged root keeps CAP_DAC_READ_SEARCH, which is what
			// open_by_handle_at asks for; in a user namespace it is not
			// the host's.
			{"open_by_handle_at O_RDONLY", "userns", "EPERM"},
			// A user namespace needs no capability; the session's own
			// user namespace allows no more (max_user_namespaces 0:
			// ENOSPC), and seccomp refuses the call first in the full
			// sandbox (unless the host restricts them, as Ubuntu's
			// AppArmor does: then the base layer).
			{"unshare CLONE_NEWUSER", "userns", "EPERM"},
		}...)
	} else {
		certain = append(certain, struct{ op, layer, errno string }{"PTRACE_ATTACH canary", base, "EPERM"})
	}
	if rep.LandlockABI >= 6 {
		// Abstract sockets: scoped by Landlock ABI 6, nothing before; in
		// the full sandbox the supervisor refuses first (EACCES).
		certain = append(certain, struct{ op, layer, errno string }{"connect host abstract unix socket", "landlock", "EACCES"})
	}
	for _, c := range certain {
		o, ok := byName[c.op]
		switch {
		case !ok:
			t.Errorf("no operation %q in the report", c.op)
		case c.op == "unshare CLONE_NEWUSER" && o.BlockedBy == base:
			t.Logf("%s: refused before seccomp (the host restricts user namespaces)", c.op)
		case o.BlockedBy != c.layer:
			t.Errorf("%s: blocked by %s, want %s: %+v", c.op, o.BlockedBy, c.layer, o.ResultsByConfig)
		case c.errno != "" && o.Errno != c.errno:
			t.Errorf("%s: errno %s in the full sandbox, want %s", c.op, o.Errno, c.errno)
		}
	}
	if c := rep.Configurations[0]; c.Runs < 2 {
		t.Errorf("without Landlock the battery kills the canary process, so %s should have taken fresh canaries (runs %d)", c.Name, c.Runs)
	}
}

// probeLeftovers lists what ronly probe makes on the host and must remove:
// canary directories, sockets, files in /dev/shm, and its processes.
func probeLeftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, g := range []string{"/var/tmp/ronly-probe-*", "/run/ronly-probe-*", "/run/user/*/ronly-probe-*", "/dev/shm/ronly-probe-*"} {
		m, _ := filepath.Glob(g)
		out = append(out, m...)
	}
	for _, pid := range findCmdline("probe-internal") {
		out = append(out, "process "+strconv.Itoa(pid))
	}
	return out
}
