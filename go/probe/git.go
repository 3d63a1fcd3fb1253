package probe

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A repository's hooks and config run commands outside the sandbox the
// next time its owner runs git there, so in a writable directory they stay
// read-only, and .git itself cannot be moved aside (ronly binds them onto
// themselves). The runner makes RWDir a small repository (MakeGitCanary)
// and checks its metadata from outside (GitState). If an operation gets
// through, what it changed is the runner's canary repository, which the
// runner removes; an operation that got through puts back what it moved.

// wantBusy: a mount point cannot be renamed or replaced.
var wantBusy = []unix.Errno{unix.EBUSY}

// gitCanaryFiles are the canary repository's files, relative to RWDir.
var gitCanaryFiles = []struct{ path, content string }{
	{".git/HEAD", "ref: refs/heads/main\n"},
	{".git/config", "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"},
	{".git/hooks/pre-commit.sample", "#!/bin/sh\nexit 0\n"},
	{".git/info/exclude", "# canary\n"},
}

// MakeGitCanary makes dir a minimal git repository owned by uid: enough for
// ronly to take it for one (a .git directory) and for git to read it.
func MakeGitCanary(dir string, uid int) error {
	for _, d := range []string{".git", ".git/hooks", ".git/info", ".git/objects", ".git/refs", ".git/refs/heads"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := chmodChown(p, 0o755, uid); err != nil {
			return err
		}
	}
	for _, f := range gitCanaryFiles {
		p := filepath.Join(dir, f.path)
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			return err
		}
		if err := chmodChown(p, 0o644, uid); err != nil {
			return err
		}
	}
	return nil
}

// GitState describes the canary repository's protected metadata (config,
// hooks and info with what is in them) into files, for Snapshot.
func GitState(dir string, files map[string]string) {
	git := filepath.Join(dir, ".git")
	files[filepath.Join(git, "config")] = Describe(filepath.Join(git, "config"))
	for _, d := range []string{"hooks", "info"} {
		p := filepath.Join(git, d)
		files[p] = Describe(p)
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			files[filepath.Join(p, e.Name())] = Describe(filepath.Join(p, e.Name()))
		}
	}
}

func gitHostile() []Op {
	h := func(name string, want []unix.Errno, run func(git string, t Targets) error) Op {
		return Op{Name: name, Kind: Hostile, Want: want, Run: func(t Targets) error {
			git := filepath.Join(t.RWDir, ".git")
			if fi, err := os.Lstat(filepath.Join(git, "hooks")); t.RWDir == "" || err != nil || !fi.IsDir() {
				return skip("no git repository in the --rw directory")
			}
			return run(git, t)
		}}
	}
	return []Op{
		h("create a hook in a --rw repository", wantROFS, func(git string, t Targets) error {
			return openClose(filepath.Join(git, "hooks", "pre-commit"), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o755)
		}),
		h("open a --rw repository's .git/config for writing", wantROFS, func(git string, t Targets) error {
			return openClose(filepath.Join(git, "config"), unix.O_WRONLY|unix.O_APPEND, 0)
		}),
		h("open a --rw repository's .git/info/exclude for writing", wantROFS, func(git string, t Targets) error {
			return openClose(filepath.Join(git, "info", "exclude"), unix.O_WRONLY|unix.O_APPEND, 0)
		}),
		h("rename over a --rw repository's .git/config (git config's way)", wantBusy, func(git string, t Targets) error {
			// The same content, so that getting through changes only the
			// inode (which the runner sees).
			config := filepath.Join(git, "config")
			b, err := os.ReadFile(config)
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			lock := filepath.Join(git, "config.lock-"+t.Marker)
			if err := os.WriteFile(lock, b, 0o644); err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			defer unix.Unlink(lock)
			return unix.Rename(lock, config)
		}),
		h("move a --rw repository's .git aside", wantBusy, func(git string, t Targets) error {
			aside := git + "-moved-" + t.Marker
			err := unix.Rename(git, aside)
			if err == nil {
				unix.Rename(aside, git) // put it back
			}
			return err
		}),
		h("rename a --rw repository's hooks directory", wantBusy, func(git string, t Targets) error {
			hooks, aside := filepath.Join(git, "hooks"), filepath.Join(git, "hooks-moved-"+t.Marker)
			err := unix.Rename(hooks, aside)
			if err == nil {
				unix.Rename(aside, hooks) // put it back
			}
			return err
		}),
	}
}
