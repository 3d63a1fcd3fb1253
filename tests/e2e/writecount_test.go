package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bpfObjects lists the eBPF objects process pid holds open, from outside:
// each descriptor that is an anon inode "bpf-link", "bpf-prog" or
// "bpf-map", with the link's type (fdinfo's link_type) for a link.
func bpfObjects(t *testing.T, pid int) []string {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var objs []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(target, "anon_inode:bpf") {
			continue
		}
		// The kernel names a link's inode "bpf_link", with an
		// underscore, and the others "bpf-prog" and "bpf-map".
		obj := strings.Replace(strings.TrimPrefix(target, "anon_inode:"), "_", "-", 1)
		if obj == "bpf-link" {
			info, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "fdinfo", e.Name()))
			for _, l := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(l, "link_type:"); ok {
					obj += " " + strings.TrimSpace(v)
				}
			}
		}
		objs = append(objs, obj)
	}
	return objs
}

// bpfObjectsWithChildren lists the eBPF objects pid and its children hold
// open: ronly's supervisor and the processes it started, among them the
// write counter's helper, ronly-writewatch.
func bpfObjectsWithChildren(t *testing.T, pid int) []string {
	t.Helper()
	objs := bpfObjects(t, pid)
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(c); err == nil {
				objs = append(objs, bpfObjects(t, child)...)
			}
		}
	}
	return objs
}

// TestWriteCountingOffByDefault: a session with the default flags holds no
// eBPF program, map or link while its command runs, in its supervisor or
// any process it started (so no syscall on the host runs anything of
// ronly's), and its report says refused writes were not counted; with
// --count-writes the supervisor's helper (ronly-writewatch, its child)
// holds the counter's links while the command runs (which shows the check above can see
// them): fexit links (link_type tracing) where the kernel has BPF
// trampolines, the sys_exit raw tracepoint's elsewhere, as the report
// says, and the refused write is counted.
func TestWriteCountingOffByDefault(t *testing.T) {
	b := setup(t)
	dir := userDir(t, 0, "ronly-e2e-writecount-")
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"default", nil},
		{"--count-writes", []string{"--count-writes"}},
	} {
		t.Run(strings.TrimLeft(c.name, "-"), func(t *testing.T) {
			rep := filepath.Join(dir, c.name+".json")
			args := append(append([]string{"--no-metrics", "--report", rep}, c.flags...),
				"--", "/bin/sh", "-c", "rm -f /etc/hostname 2>/dev/null; echo ready; read x; exit 0")
			cmd := exec.Command(b.ronly, args...)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(stdout).ReadString('\n')
				ready <- line
				io.Copy(io.Discard, stdout)
			}()
			select {
			case line := <-ready:
				if line != "ready\n" {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("session said %q; stderr:\n%s", line, stderr.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("session not ready after 30 s; stderr:\n%s", stderr.String())
			}
			objs := bpfObjectsWithChildren(t, cmd.Process.Pid)
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("ronly: %v\n%s", err, stderr.String())
			}
			got := readReport(t, rep)
			var links []string
			for _, o := range objs {
				if typ, ok := strings.CutPrefix(o, "bpf-link "); ok {
					links = append(links, typ)
				}
			}
			if c.flags == nil {
				if len(objs) > 0 {
					t.Errorf("a default session's supervisor or its children hold eBPF objects while its command runs: %q", objs)
				}
				if got.Layers.WriteCounting || got.Layers.WriteCounter != "off" || len(got.Refused["write"]) != 0 {
					t.Errorf("default report: write_counting %t, write_counter %q, refused writes %v; want false, \"off\", none",
						got.Layers.WriteCounting, got.Layers.WriteCounter, got.Refused["write"])
				}
				return
			}
			want := map[string]string{"fexit": "tracing", "tracepoint": "raw_tracepoint"}[got.Layers.WriteCounter]
			if !got.Layers.WriteCounting || want == "" {
				t.Fatalf("--count-writes report: write_counting %t, write_counter %q", got.Layers.WriteCounting, got.Layers.WriteCounter)
			}
			if len(links) == 0 {
				t.Errorf("with --count-writes neither the supervisor nor its children hold an eBPF link while the command runs: %q", objs)
			}
			for _, l := range links {
				if l != want {
					t.Errorf("link of type %q, want %q (write_counter %q)", l, want, got.Layers.WriteCounter)
				}
			}
			if n := got.Refused["write"]["unlink"]; n != 1 {
				t.Errorf("refused writes %v, want unlink 1", got.Refused["write"])
			}
		})
	}
}
