package e2e

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// toolCase is a real tool doing normal work in the scratch space. The
// script checks the effect inside and prints it; want is that output.
type toolCase struct {
	name   string
	needs  []string // programs that must exist on the host, else skip
	script string   // run by /bin/sh -c inside ronly; $FIXTURE is a read-only host dir
	want   string   // exact stdout, unless check is set
	check  func(stdout string) error
	code   int // exit status ronly must return
	// rootOnly: the case cannot work for the unprivileged user for a reason
	// outside the sandbox, given here.
	rootOnly string
}

var toolCases = []toolCase{
	{name: "rm", needs: []string{"rm"},
		script: `cd /tmp && echo x > f && rm f && test ! -e f && echo removed`, want: "removed\n"},
	{name: "rm -r", needs: []string{"rm"},
		script: `mkdir -p /tmp/d/e/f && touch /tmp/d/e/f/g && rm -r /tmp/d && test ! -e /tmp/d && echo removed`, want: "removed\n"},
	{name: "mv", needs: []string{"mv"},
		script: `cd /tmp && echo content > a && mv a b && test ! -e a && cat b`, want: "content\n"},
	{name: "sed -i", needs: []string{"sed"},
		script: `cd /tmp && printf 'one\ntwo\n' > f && sed -i s/two/three/ f && cat f`, want: "one\nthree\n"},
	{name: "tar x", needs: []string{"tar"},
		script: `mkdir /tmp/x && tar -xf "$FIXTURE/fixture.tar" -C /tmp/x && cat /tmp/x/top/inner.txt && test -x /tmp/x/top/run.sh && echo exec-bit`,
		want:   "from the tarball\nexec-bit\n"},
	{name: "git init and commit", needs: []string{"git"},
		script: `cd /tmp && git init -q repo && cd repo && echo hi > f && git add f &&
			git -c user.name=e2e -c user.email=e2e@example.invalid commit -qm first &&
			git rev-list --count HEAD && git status --porcelain | wc -l | tr -d ' '`,
		want: "1\n0\n"},
	{name: "python3 tempfile", needs: []string{"python3"},
		script: `python3 -c '
import os, tempfile
with tempfile.NamedTemporaryFile(delete=True) as f:
    f.write(b"x"); f.flush(); print(os.path.exists(f.name))
print(os.path.exists(f.name))
d = tempfile.mkdtemp(); print(os.path.isdir(d)); os.rmdir(d); print(os.path.isdir(d))'`,
		want: "True\nFalse\nTrue\nFalse\n"},
	{name: "timeout kills its child", needs: []string{"timeout", "sleep"},
		script: `timeout 1 sleep 5`, code: 124},
	{name: "job control signals own processes", needs: []string{"bash", "sleep"},
		script: `bash -c 'sleep 5 & kill %1; wait %1; echo $?'`, want: "143\n"},
	{name: "kill own background process", needs: []string{"sleep"},
		script: `sleep 5 & p=$!; kill -TERM $p; wait $p; echo $?`, want: "143\n"},
	{name: "cc hello world", needs: []string{"cc"},
		script: `cd /tmp && printf '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n' > h.c && cc -o h h.c && ./h`,
		want:   "hello\n"},
	{name: "/proc/$$ is the shell itself", needs: []string{"grep"},
		script: `grep '^Pid:' /proc/$$/status | tr -d ' \t'; echo "Pid:$$"`,
		check: func(out string) error {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 || lines[0] != lines[1] || lines[0] == "Pid:" {
				return fmt.Errorf("/proc/$$/status does not describe the shell")
			}
			return nil
		}},
	{name: "ps shows host processes", needs: []string{"ps"},
		script: `ps -eo pid= | tr -d ' ' | grep -cx 1`, want: "1\n"},
	{name: "exit status 7", script: `exit 7`, code: 7},
	{name: "killed by SIGTERM is 143", script: `kill -TERM $$`, code: 143},
	{name: "killed by SIGKILL is 137", script: `kill -KILL $$`, code: 137},
	{name: "command not found is 127", script: `exec /nonexistent/ronly-e2e`, code: 127},
	{name: "write to /dev/null and /dev/stdout", script: `echo hidden > /dev/null; echo shown > /dev/stdout`, want: "shown\n",
		rootOnly: "the test's stdout pipe is created by root (mode 0600), so nobody cannot reopen it through /dev/stdout, sandbox or not"},
}

// TestTools runs real tools in the sandbox, as root and as an unprivileged
// user, and checks their effects.
func TestTools(t *testing.T) {
	b := setup(t)
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			fixture := userDir(t, u.uid, "ronly-e2e-fixture-")
			makeTarball(t, filepath.Join(fixture, "fixture.tar"))
			for _, tc := range toolCases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.rootOnly != "" && u.uid != 0 {
						t.Skip(tc.rootOnly)
					}
					for _, n := range tc.needs {
						needTool(t, n)
					}
					r := b.sh(t, opts{uid: u.uid, env: []string{"FIXTURE=" + fixture}}, u.flags, tc.script)
					if r.code != tc.code {
						t.Fatalf("want exit %d\n%s", tc.code, r)
					}
					if tc.check != nil {
						if err := tc.check(r.stdout); err != nil {
							t.Fatalf("%v\n%s", err, r)
						}
					} else if r.stdout != tc.want {
						t.Fatalf("want stdout %q\n%s", tc.want, r)
					}
				})
			}
		})
	}
}

func makeTarball(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	files := []struct {
		name, body string
		mode       int64
	}{
		{"top/inner.txt", "from the tarball\n", 0o644},
		{"top/run.sh", "#!/bin/sh\necho run\n", 0o755},
	}
	if err := tw.WriteHeader(&tar.Header{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for _, x := range files {
		if err := tw.WriteHeader(&tar.Header{Name: x.name, Mode: x.mode, Size: int64(len(x.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprint(tw, x.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
}
