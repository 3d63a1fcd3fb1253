package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestImplicitWorkspaceRefused: the ci profile's default workspace is the
// current directory; run from /, from $HOME, from an ancestor of $HOME or
// from the sudo user's home, ronly refuses with exit 125 and one line that
// says to pass --workspace, and the command never runs (its marker file is
// not created). An explicit --workspace of the home is the user's choice
// and works.
func TestImplicitWorkspaceRefused(t *testing.T) {
	b := setup(t)
	parent := userDir(t, 0, "ronly-home-")
	home := filepath.Join(parent, "user")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	rootHome := "/root"
	if fi, err := os.Stat(rootHome); err != nil || !fi.IsDir() {
		t.Fatalf("this test needs root's home %s (from /etc/passwd) to exist: %v", rootHome, err)
	}
	for _, tc := range []struct {
		name, dir string
		env       []string
	}{
		{"home", home, []string{"HOME=" + home}},
		{"ancestor of home", parent, []string{"HOME=" + home}},
		{"root directory", "/", []string{"HOME=" + home}},
		{"sudo user's home", rootHome, []string{"HOME=" + home, "SUDO_USER=root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(tc.dir, "ronly-workspace-marker-"+randomMarker(t))
			t.Cleanup(func() { os.Remove(marker) })
			r := b.sh(t, opts{dir: tc.dir, env: tc.env}, []string{"--profile", "ci"}, "touch "+marker)
			if r.code != 125 {
				t.Errorf("want exit 125:\n%s", r)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "--workspace") || !strings.Contains(lines[0], tc.dir) ||
				!strings.Contains(lines[0], "--workspace DIR") {
				t.Errorf("want one line naming --workspace, %s and the hint:\n%s", tc.dir, r)
			}
			if _, err := os.Lstat(marker); err == nil {
				t.Errorf("the command ran: %s exists", marker)
			}
		})
	}
	t.Run("explicit", func(t *testing.T) {
		r := b.sh(t, opts{dir: home, env: []string{"HOME=" + home}}, []string{"--profile", "ci", "--workspace", home},
			"echo mine > "+filepath.Join(home, "explicit"))
		if r.code != 0 {
			t.Fatalf("an explicit --workspace of the home must work:\n%s", r)
		}
		if got, _ := os.ReadFile(filepath.Join(home, "explicit")); string(got) != "mine\n" {
			t.Errorf("explicit workspace not written: %q", got)
		}
	})
}

// gitAs runs git outside the sandbox as uid (git refuses a repository
// owned by someone else).
func gitAs(t *testing.T, uid int, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=e2e", "-c", "user.email=e2e@ronly.dev"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1")
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %q in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo makes a repository owned by uid with one commit, without the
// hooks and info directories (so ronly has to create them before the job
// can), and returns its worktree.
func newRepo(t *testing.T, uid int) string {
	t.Helper()
	ws := userDir(t, uid, "ronly-git-")
	gitAs(t, uid, ws, "init", "-q", "-b", "main", ".")
	writeFile(t, uid, filepath.Join(ws, "README"), "hello\n", 0o644)
	gitAs(t, uid, ws, "add", "README")
	gitAs(t, uid, ws, "commit", "-q", "-m", "first")
	for _, d := range []string{"hooks", "info"} {
		if err := os.RemoveAll(filepath.Join(ws, ".git", d)); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

// The job's attempts on the repository's metadata, each printing its exit
// status, then ordinary work that must succeed.
const gitJob = `
g() { git -c user.name=job -c user.email=job@ronly.dev "$@"; }
echo 'echo evil' > .git/hooks/pre-commit; echo "hook=$?"
g config core.hooksPath /tmp/x; echo "config=$?"
echo '* filter=evil' > .git/info/attributes; echo "attributes=$?"
mv .git .git-moved; echo "move=$?"
rm -rf .git/hooks; echo "rmhooks=$?"
echo new > work && g add work && g commit -q -m "from the job" && g checkout -q -b feature && echo git-ok
mkdir -p evil && printf '[core]\n\tfsmonitor = echo evil\n' > evil/config && echo "$PWD/evil" > .git/commondir
printf '[core]\n\tfsmonitor = echo evil\n' > .git/config.worktree
`

// TestGitMetadataReadOnly: in the ci workspace and in a --rw directory, a
// job cannot plant a hook, change .git/config, write .git/info or move
// .git aside, and from outside those are unchanged afterwards; git add,
// commit and checkout -b work and are there outside. Naming .git/hooks
// with --rw makes it writable on purpose.
func TestGitMetadataReadOnly(t *testing.T) {
	b := setup(t)
	needTool(t, "git")
	for _, u := range users {
		for _, how := range []string{"ci workspace", "--rw"} {
			t.Run(u.name+"/"+how, func(t *testing.T) {
				ws := newRepo(t, u.uid)
				config, err := os.ReadFile(filepath.Join(ws, ".git", "config"))
				if err != nil {
					t.Fatal(err)
				}
				flags := append([]string{"--profile", "ci"}, u.flags...)
				if how == "--rw" {
					flags = append(append([]string{}, u.flags...), "--rw", ws)
				}
				r := b.sh(t, opts{uid: u.uid, dir: ws}, flags, "cd "+ws+" && "+gitJob)
				if r.code != 0 || !strings.Contains(r.stdout, "git-ok") {
					t.Fatalf("git add/commit/checkout -b must work in the workspace:\n%s", r)
				}
				for _, refused := range []string{"hook", "config", "attributes", "move", "rmhooks"} {
					if strings.Contains(r.stdout, refused+"=0\n") {
						t.Errorf("%s: the job's attempt succeeded:\n%s", refused, r)
					}
				}
				// From outside.
				git := filepath.Join(ws, ".git")
				for _, p := range []string{filepath.Join(git, "hooks", "pre-commit"), filepath.Join(git, "info", "attributes"),
					filepath.Join(ws, ".git-moved")} {
					if _, err := os.Lstat(p); err == nil {
						t.Errorf("%s exists on the host after the session", p)
					}
				}
				// Created by the job where ronly could not refuse them:
				// renamed away after the session, with a warning.
				for _, name := range []string{"commondir", "config.worktree"} {
					if _, err := os.Lstat(filepath.Join(git, name)); err == nil {
						t.Errorf(".git/%s the job created is still there", name)
					}
					if aside, _ := filepath.Glob(filepath.Join(git, name+".ronly-*")); len(aside) != 1 ||
						!strings.Contains(r.stderr, "renamed to "+filepath.Base(aside[0])) {
						t.Errorf(".git/%s not renamed away with a warning (%q):\n%s", name, aside, r)
					}
				}
				if got, _ := os.ReadFile(filepath.Join(git, "config")); !bytes.Equal(got, config) {
					t.Errorf(".git/config changed on the host:\n%s", got)
				}
				for _, d := range []string{"hooks", "info"} {
					fi, err := os.Lstat(filepath.Join(git, d))
					if err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.uid) {
						t.Errorf(".git/%s: want an empty directory owned by %d, made by ronly before the job ran: %v", d, u.uid, err)
					}
				}
				if head := gitAs(t, u.uid, ws, "symbolic-ref", "HEAD"); head != "refs/heads/feature" {
					t.Errorf("HEAD is %q outside, want refs/heads/feature", head)
				}
				if log := gitAs(t, u.uid, ws, "log", "--format=%s", "feature"); log != "from the job\nfirst" {
					t.Errorf("git log outside:\n%s", log)
				}
				if got := gitAs(t, u.uid, ws, "show", "feature:work"); got != "new" {
					t.Errorf("committed file outside: %q", got)
				}
			})
		}
	}
	t.Run("--rw .git/hooks", func(t *testing.T) {
		ws := newRepo(t, 0)
		hooks := filepath.Join(ws, ".git", "hooks")
		if err := os.Mkdir(hooks, 0o755); err != nil {
			t.Fatal(err)
		}
		r := b.sh(t, opts{dir: ws}, []string{"--profile", "ci", "--rw", hooks},
			"echo 'echo mine' > .git/hooks/pre-commit && echo x > .git/config; echo config=$?")
		if got, _ := os.ReadFile(filepath.Join(hooks, "pre-commit")); string(got) != "echo mine\n" {
			t.Errorf("a hooks directory named with --rw must be writable:\n%s", r)
		}
		if !strings.Contains(r.stdout, "config=") || strings.Contains(r.stdout, "config=0") {
			t.Errorf(".git/config must stay read-only when only hooks is named:\n%s", r)
		}
	})
}

// TestGitFileReadOnly: a worktree whose .git is a file ("gitdir: …", a
// linked worktree or a submodule) keeps that file read-only, so the job
// cannot point it at a git directory of its own; the git directory it
// names, inside the writable directory, is protected like any other.
func TestGitFileReadOnly(t *testing.T) {
	b := setup(t)
	needTool(t, "git")
	ws := newRepo(t, 0)
	wt := filepath.Join(ws, "wt")
	gitAs(t, 0, ws, "worktree", "add", "-q", "-b", "side", wt)
	dotgit, err := os.ReadFile(filepath.Join(wt, ".git"))
	if err != nil {
		t.Fatal(err)
	}
	r := b.sh(t, opts{dir: wt}, []string{"--rw", ws},
		`echo "gitdir: /tmp/evil" > .git; echo gitfile=$?
mv `+wt+` `+ws+`/moved; echo movewt=$?
echo evil > `+ws+`/.git/hooks/post-checkout; echo hook=$?
echo change >> README && git -c user.name=j -c user.email=j@x commit -qam wt && echo git-ok`)
	if !strings.Contains(r.stdout, "git-ok") || strings.Contains(r.stdout, "=0\n") {
		t.Errorf("want the .git file and the main hooks read-only, commits working:\n%s", r)
	}
	if got, _ := os.ReadFile(filepath.Join(wt, ".git")); !bytes.Equal(got, dotgit) {
		t.Errorf("the worktree's .git file changed on the host: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(ws, "moved")); err == nil {
		t.Errorf("the worktree was moved aside")
	}
	if _, err := os.Lstat(filepath.Join(ws, ".git", "hooks", "post-checkout")); err == nil {
		t.Errorf("a hook was planted in the main repository")
	}
	if log := gitAs(t, 0, wt, "log", "-1", "--format=%s"); log != "wt" {
		t.Errorf("the worktree's commit is not there outside: %q", log)
	}
}

// TestSubmoduleReadOnly: in a superproject used as the ci workspace, a
// submodule's git directory (.git/modules/lib) keeps its hooks and config
// read-only, and the submodule's .git file cannot be pointed elsewhere or
// its checkout moved aside; committing in the submodule and in the
// superproject works, and is there outside afterwards.
func TestSubmoduleReadOnly(t *testing.T) {
	b := setup(t)
	needTool(t, "git")
	lib := newRepo(t, 0)
	ws := newRepo(t, 0)
	gitAs(t, 0, ws, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "lib")
	gitAs(t, 0, ws, "commit", "-q", "-m", "add lib")
	mods := filepath.Join(ws, ".git", "modules", "lib")
	config, err := os.ReadFile(filepath.Join(mods, "config"))
	if err != nil {
		t.Fatalf("git submodule add made no %s/config: %v", mods, err)
	}
	dotgit, err := os.ReadFile(filepath.Join(ws, "lib", ".git"))
	if err != nil {
		t.Fatal(err)
	}
	r := b.sh(t, opts{dir: ws}, []string{"--profile", "ci"}, `
g() { git -c user.name=job -c user.email=job@ronly.dev "$@"; }
echo evil > .git/modules/lib/hooks/post-checkout; echo hook=$?
g -C lib config core.fsmonitor 'echo evil'; echo config=$?
echo "gitdir: /tmp/evil" > lib/.git; echo gitfile=$?
mv lib lib-moved; echo move=$?
echo new > lib/new && g -C lib add new && g -C lib commit -q -m "in the submodule" && g add lib && g commit -q -m bump && echo git-ok
`)
	if r.code != 0 || !strings.Contains(r.stdout, "git-ok") {
		t.Fatalf("commits in the submodule and the superproject must work:\n%s", r)
	}
	for _, refused := range []string{"hook", "config", "gitfile", "move"} {
		if strings.Contains(r.stdout, refused+"=0\n") {
			t.Errorf("%s: the job's attempt succeeded:\n%s", refused, r)
		}
	}
	if _, err := os.Lstat(filepath.Join(mods, "hooks", "post-checkout")); err == nil {
		t.Errorf("a hook was planted in the submodule's git directory")
	}
	if got, _ := os.ReadFile(filepath.Join(mods, "config")); !bytes.Equal(got, config) {
		t.Errorf("the submodule's config changed on the host:\n%s", got)
	}
	if got, _ := os.ReadFile(filepath.Join(ws, "lib", ".git")); !bytes.Equal(got, dotgit) {
		t.Errorf("the submodule's .git file changed on the host: %q", got)
	}
	if log := gitAs(t, 0, filepath.Join(ws, "lib"), "log", "-1", "--format=%s"); log != "in the submodule" {
		t.Errorf("the submodule's commit is not there outside: %q", log)
	}
	if log := gitAs(t, 0, ws, "log", "-1", "--format=%s"); log != "bump" {
		t.Errorf("the superproject's commit is not there outside: %q", log)
	}
}
