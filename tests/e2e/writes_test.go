package e2e

import (
	"bufio"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"ronly.dev/ronly/go/writewatch/rawtp"
)

// refusedWrites are the commonest writes an agent attempts on the host,
// each refused by the read-only mounts with EROFS, and the operation each
// must be counted as; then the same kinds of writes in /tmp, which must
// not be counted. VICTIM is a file of the test's, which the unlink aims at
// (not a file of the host's, which a regression would delete).
const refusedWrites = `
rm -f VICTIM
echo x > /etc/ronly-e2e-write
mkdir /etc/ronly-e2e-dir
mv /etc/hosts /etc/hosts.moved
ln -s /x /etc/ronly-e2e-link
echo fine > /tmp/a && mkdir /tmp/d && mv /tmp/a /tmp/d/b && rm -r /tmp/d
exit 0`

// TestRefusedWritesAreCounted: refused writes show up in the report, the
// metrics textfile and the audit log, by operation, exactly, and the audit
// log names the path each one named (mv's source, ln -s's link); writes in
// the scratch space do not; and the host's files are untouched.
func TestRefusedWritesAreCounted(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	dir := userDir(t, 0, "ronly-e2e-writes-")
	rep, auditLog, textfile := filepath.Join(dir, "r.json"), filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "ronly.prom")
	victim := filepath.Join(dir, "victim")
	writeFile(t, 0, victim, "victim\n", 0o644)
	hosts, _ := os.ReadFile("/etc/hosts")
	r := b.sh(t, opts{}, []string{"--count-writes", "--report", rep, "--audit-log", auditLog, "--metrics-textfile", textfile},
		strings.Replace(refusedWrites, "VICTIM", victim, 1))
	if r.code != 0 {
		t.Fatalf("script failed:\n%s", r)
	}
	want := map[string]uint64{"unlink": 1, "open": 1, "mkdir": 1, "rename": 1, "symlink": 1}
	got := readReport(t, rep)
	if !maps.Equal(got.Refused["write"], want) {
		t.Errorf("report's refused writes = %v, want %v\n%s", got.Refused["write"], want, r)
	}
	if !got.Layers.WriteCounting {
		t.Errorf("report says write counting was off")
	}
	audited := map[string]uint64{}
	paths := map[string][]string{}
	wantPaths := map[string][]string{"unlink": {victim}, "open": {"/etc/ronly-e2e-write"},
		"mkdir": {"/etc/ronly-e2e-dir"}, "rename": {"/etc/hosts"}, "symlink": {"/etc/ronly-e2e-link"}}
	f, err := os.Open(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Kind, What, Errno, Comm, Path string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e.Kind == "write" {
			if e.Errno != "EROFS" || e.Comm == "" {
				t.Errorf("incomplete audit line %q", sc.Text())
			}
			audited[e.What]++
			paths[e.What] = append(paths[e.What], e.Path)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(audited, want) {
		t.Errorf("audit log's writes = %v, want %v", audited, want)
	}
	if !maps.EqualFunc(paths, wantPaths, slices.Equal) {
		t.Errorf("audit log's paths = %q, want %q", paths, wantPaths)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	for op, n := range want {
		line := `ronly_blocked_writes_total{operation="` + op + `"} ` + strconv.FormatUint(n, 10)
		if !strings.Contains(string(prom), line+"\n") {
			t.Errorf("textfile lacks %q", line)
		}
	}
	if !strings.Contains(string(prom), "ronly_write_counting 1\n") {
		t.Errorf("textfile lacks ronly_write_counting 1")
	}
	refusedWritesLeftHost(t, hosts, victim)
}

// refusedWritesLeftHost checks, after refusedWrites ran, that the host is
// as it was: /etc/hosts (hosts, its bytes before), the victim file, and
// none of the paths the script tried to create.
func refusedWritesLeftHost(t *testing.T, hosts []byte, victim string) {
	t.Helper()
	if after, _ := os.ReadFile("/etc/hosts"); string(after) != string(hosts) {
		t.Errorf("/etc/hosts changed")
	}
	unchanged(t, victim, "victim\n")
	for _, p := range []string{"/etc/ronly-e2e-write", "/etc/ronly-e2e-dir", "/etc/hosts.moved", "/etc/ronly-e2e-link"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists on the host", p)
		}
	}
}

// TestRefusedWritesRootless: without root there is no eBPF, so refused
// writes are refused but not counted, and the report says so. The writes
// go to the user's own file and directory, where only the sandbox can
// refuse them.
func TestRefusedWritesRootless(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	dir := userDir(t, nobody, "ronly-e2e-writes-")
	rep := filepath.Join(dir, "r.json")
	victim := filepath.Join(dir, "victim")
	writeFile(t, nobody, victim, "victim\n", 0o644)
	r := b.sh(t, opts{uid: nobody}, []string{"--rootless", "--count-writes", "--report", rep},
		"! { echo x > "+victim+"; } 2>/dev/null && ! touch "+dir+"/new 2>/dev/null")
	if r.code != 0 {
		t.Fatalf("the write was not refused:\n%s", r)
	}
	unchanged(t, victim, "victim\n")
	if _, err := os.Lstat(filepath.Join(dir, "new")); err == nil {
		t.Errorf("HOST CHANGED: %s/new was created from inside", dir)
	}
	got := readReport(t, rep)
	if got.Layers.WriteCounting || len(got.Refused["write"]) != 0 {
		t.Errorf("rootless report claims write counting: %+v %v", got.Layers, got.Refused)
	}
}

// TestWriteCountingWithoutHelper: ronly installed without ronly-writewatch.
// Where the kernel cannot run fexit programs (this VM), a session that
// only counts needs no helper: the supervisor holds the shared sys_exit
// program itself, and counts the refused writes exactly, by operation. A
// session that also wants events (an audit log) needs the helper: its
// writes are refused but not counted, and a warning names the helper.
// Where fexit programs can run, both need it. Either way nothing on the
// host changes.
func TestWriteCountingWithoutHelper(t *testing.T) {
	b := setup(t)
	requireRoot(t)
	dir := userDir(t, 0, "ronly-e2e-nohelper-")
	alone := filepath.Join(dir, "ronly")
	if err := copyFile(b.ronly, alone); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	writeFile(t, 0, victim, "victim\n", 0o644)
	hosts, _ := os.ReadFile("/etc/hosts")
	here := !rawtp.FexitPossible()
	alone2 := bins{dir: dir, ronly: alone, probe: b.probe}
	for _, c := range []struct {
		name    string
		flags   []string
		counted bool
	}{
		{"counting only", nil, here},
		{"with an audit log", []string{"--audit-log", filepath.Join(dir, "audit.jsonl")}, false},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			rep := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			flags := append([]string{"--count-writes", "--report", rep}, c.flags...)
			r := alone2.sh(t, opts{env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}, flags,
				strings.Replace(refusedWrites, "VICTIM", victim, 1))
			if r.code != 0 {
				t.Fatalf("script failed:\n%s", r)
			}
			got := readReport(t, rep)
			if c.counted {
				want := map[string]uint64{"unlink": 1, "open": 1, "mkdir": 1, "rename": 1, "symlink": 1}
				if !got.Layers.WriteCounting || got.Layers.WriteCounter != "tracepoint" || !maps.Equal(got.Refused["write"], want) {
					t.Errorf("report: write_counting %t, write_counter %q, refused %v; want true, tracepoint, %v",
						got.Layers.WriteCounting, got.Layers.WriteCounter, got.Refused["write"], want)
				}
				if strings.Contains(r.stderr, "not counted") {
					t.Errorf("a warning that nothing was counted:\n%s", r)
				}
			} else {
				if got.Layers.WriteCounting || got.Layers.WriteCounter != "unavailable" || len(got.Refused["write"]) != 0 {
					t.Errorf("report without the helper: write_counting %t, write_counter %q, refused %v; want false, unavailable, none",
						got.Layers.WriteCounting, got.Layers.WriteCounter, got.Refused["write"])
				}
				if !strings.Contains(r.stderr, "not counted") || !strings.Contains(r.stderr, "ronly-writewatch") {
					t.Errorf("no warning naming ronly-writewatch:\n%s", r)
				}
			}
			refusedWritesLeftHost(t, hosts, victim)
		})
	}
}
