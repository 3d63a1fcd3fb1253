package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cinit "ronly.dev/ronly/init"
)

func mustMkdir(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// plan returns the planned mounts as "KIND path" lines, paths relative to
// root.
func plan(t *testing.T, root string, rw ...string) ([]string, error) {
	t.Helper()
	g, err := gitMounts(rw)
	if err != nil {
		return nil, err
	}
	defer g.close()
	var out []string
	for _, m := range g.mounts {
		kind := map[cinit.MountKind]string{cinit.MountBindRO: "ro", cinit.MountPin: "pin"}[m.Kind]
		out = append(out, kind+" "+strings.TrimPrefix(m.Path, root))
	}
	return out, nil
}

func TestGitMountsRepository(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	mustMkdir(t, filepath.Join(ws, ".git", "hooks"), filepath.Join(ws, ".git", "modules", "lib", "hooks"))
	mustWrite(t, filepath.Join(ws, ".git", "config"), "")
	mustWrite(t, filepath.Join(ws, ".git", "modules", "lib", "HEAD"), "ref: refs/heads/main\n")
	mustWrite(t, filepath.Join(ws, ".git", "modules", "lib", "config"), "")

	got, err := plan(t, root, ws)
	if err != nil {
		t.Fatal(err)
	}
	want := "pin /ws/.git|ro /ws/.git/hooks|ro /ws/.git/info|ro /ws/.git/config|" +
		"pin /ws/.git/modules/lib|ro /ws/.git/modules/lib/hooks|ro /ws/.git/modules/lib/info|ro /ws/.git/modules/lib/config"
	if strings.Join(got, "|") != want {
		t.Errorf("planned\n  %s\nwant\n  %s", strings.Join(got, "|"), want)
	}
	// The missing info directories were made, empty, before the job.
	for _, d := range []string{".git/info", ".git/modules/lib/info"} {
		if fi, err := os.Stat(filepath.Join(ws, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	// Named with --rw: writable on purpose, not bound read-only.
	got, _ = plan(t, root, ws, filepath.Join(ws, ".git", "hooks"))
	for _, m := range got {
		if m == "ro /ws/.git/hooks" {
			t.Errorf("--rw .git/hooks still bound read-only: %q", got)
		}
	}
	got, _ = plan(t, root, ws, filepath.Join(ws, ".git"))
	if len(got) != 0 {
		t.Errorf("--rw .git: nothing to protect, planned %q", got)
	}
}

func TestGitMountsGitFileAndSymlinks(t *testing.T) {
	root := t.TempDir()
	ws, outside := filepath.Join(root, "ws"), filepath.Join(root, "outside")
	// A submodule's worktree: its .git file names a git directory in the
	// superproject's .git/modules, inside the writable directory.
	mustMkdir(t, filepath.Join(ws, "sub"), filepath.Join(ws, "gitdir", "hooks"), filepath.Join(outside, "hooks"))
	mustWrite(t, filepath.Join(ws, "gitdir", "config"), "")
	mustWrite(t, filepath.Join(ws, "sub", ".git"), "gitdir: ../gitdir\n")
	got, err := plan(t, root, ws, filepath.Join(ws, "sub"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "ro /ws/sub/.git|pin /ws/gitdir|ro /ws/gitdir/hooks|ro /ws/gitdir/info|ro /ws/gitdir/config"; strings.Join(got, "|") != want {
		t.Errorf("planned %q, want %q", strings.Join(got, "|"), want)
	}
	// A git directory outside every writable directory is read-only anyway.
	mustWrite(t, filepath.Join(ws, "sub", ".git"), "gitdir: "+outside+"\n")
	if got, err := plan(t, root, filepath.Join(ws, "sub")); err != nil || strings.Join(got, "|") != "ro /ws/sub/.git" {
		t.Errorf("outside: planned %q, %v", got, err)
	}
	// A symlink where a protected path should be: refused, not followed.
	link := filepath.Join(root, "link")
	mustMkdir(t, filepath.Join(link, ".git"))
	if err := os.Symlink(outside, filepath.Join(link, ".git", "hooks")); err != nil {
		t.Fatal(err)
	}
	var he *HintError
	if _, err := plan(t, root, link); !errors.As(err, &he) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked hooks: want a HintError naming the symlink, got %v", err)
	}
	if _, err := os.Lstat(filepath.Join(link, ".git", "info")); err == nil {
		t.Errorf("a repository that cannot be protected got a .git/info made anyway")
	}
}
