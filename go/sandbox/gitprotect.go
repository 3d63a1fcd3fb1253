package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// A repository's metadata holds commands that run outside the sandbox the
// next time its owner runs git there: hooks, and config (core.hooksPath,
// core.fsmonitor, aliases, filters…), and info/attributes picks filters.
// So in each writable host directory that is (or is the worktree of) a
// repository, those stay read-only unless the user names them with --rw,
// while everything a commit, checkout or build writes (objects, refs,
// logs, index, HEAD) stays writable.
//
// The .git directory itself is pinned (bound onto itself, writable): a
// mount point cannot be renamed or removed, so the job cannot move .git
// aside and put a copy with its own hooks in its place. The protected
// paths are mount points too, so they cannot be unlinked, renamed over
// (git config's lock-and-rename fails) or written.

const (
	// maxGitDirs bounds the git directories protected in all (each
	// worktree's, its common directory, the submodules in .git/modules,
	// the linked worktrees' admin directories): each costs a handful of
	// the init's mount records (cinit.MaxMounts in all).
	maxGitDirs = 32
	// maxModuleDepth bounds how deep .git/modules/a/modules/b… is followed.
	maxModuleDepth = 3
)

// gitPlan collects the mounts that protect the repositories of the
// writable directories.
type gitPlan struct {
	rw     []string // every writable host directory (--rw, the workspace)
	mounts []cinit.Mount
	seen   map[string]bool
	dirs   int
	// watch are the protected git directories, held open, with the
	// redirecting files they lacked at the start (afterSession).
	watch []gitWatch
}

// gitWatch is one protected git directory and the files in redirects it
// did not have when the session started.
type gitWatch struct {
	fd     int
	dir    string
	absent []string
}

// redirects are files that, once created in a git directory, make git
// read its config (and so its hooks) from elsewhere: commondir names
// another common directory; config.worktree is read when the config sets
// extensions.worktreeConfig. An existing one is bound read-only; a new one
// cannot be refused by a mount (there is nothing to bind over, and an
// empty placeholder would break git), so it is renamed away after the
// session.
var redirects = []string{"commondir", "config.worktree"}

// gitMounts plans the pins and read-only binds for the repositories in
// the writable directories rw; they must come after every writable bind.
// Missing hooks and info directories (and a missing config) are created
// on the host first, empty and owned like .git, so that the job cannot
// create them with its own content: git init makes them anyway. An error
// means a repository cannot be protected (a symlink where a protected path
// should be): the session does not start.
func gitMounts(rw []string) (*gitPlan, error) {
	g := &gitPlan{rw: rw, seen: map[string]bool{}}
	for _, w := range rw {
		if err := g.worktree(w); err != nil {
			g.close()
			return nil, err
		}
	}
	return g, nil
}

// close lets go of the git directories held open.
func (g *gitPlan) close() {
	for _, w := range g.watch {
		unix.Close(w.fd)
	}
	g.watch = nil
}

// afterSession renames away each redirecting file the job created in a
// protected git directory, to NAME.ronly-SESSION beside it, and says so:
// left there, it would make the user's next git command read a config of
// the job's. Every process of the session is gone by now, and the
// directory is the one opened at the start (it was pinned: nothing inside
// could rename it), so the names are looked up in the right place.
func (g *gitPlan) afterSession(session string, warn func(string)) {
	for _, w := range g.watch {
		for _, name := range w.absent {
			var st unix.Stat_t
			if unix.Fstatat(w.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			aside := name + ".ronly-" + session
			if err := unix.Renameat2(w.fd, name, w.fd, aside, unix.RENAME_NOREPLACE); err != nil {
				warn(fmt.Sprintf("the session created %s/%s, which makes git read another config, and ronly could not rename it away: %v; remove it before running git there",
					w.dir, name, err))
				continue
			}
			warn(fmt.Sprintf("the session created %s/%s, which makes git read another config: renamed to %s", w.dir, name, aside))
		}
	}
}

// exempt says whether the user made path writable on purpose: a --rw
// that holds path and is itself in a repository's metadata (a .git
// directory or below one, such as --rw /repo/.git/hooks).
func (g *gitPlan) exempt(path string) bool {
	for _, r := range g.rw {
		if policy.Within(path, r) && strings.Contains(r+"/", "/.git/") {
			return true
		}
	}
	return false
}

func (g *gitPlan) writable(path string) bool {
	for _, r := range g.rw {
		if policy.Within(path, r) {
			return true
		}
	}
	return false
}

func (g *gitPlan) add(kind cinit.MountKind, path string) {
	if g.seen[path] || g.exempt(path) {
		return
	}
	g.seen[path] = true
	g.mounts = append(g.mounts, cinit.Mount{Kind: kind, Path: path})
}

// worktree protects w/.git: a directory, or a file naming the git
// directory (a linked worktree's, or a submodule's in the superproject's
// .git/modules).
func (g *gitPlan) worktree(w string) error {
	dotgit := filepath.Join(w, ".git")
	fi, err := os.Lstat(dotgit)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--rw %s: %w", w, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return unprotectable(w, dotgit)
	case fi.IsDir():
		return g.gitDir(dotgit, w, 0)
	case !fi.Mode().IsRegular():
		return nil
	}
	// "gitdir: PATH": the job could point it at a directory of its own.
	g.add(cinit.MountBindRO, dotgit)
	target, err := readGitFile(dotgit, "gitdir: ")
	if err != nil || target == "" {
		return nil // not a git file: git will not use it either
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(w, target)
	}
	return g.gitDir(target, w, 0)
}

// gitDir protects the git directory dir if it lies in a writable
// directory, and the common directory it names (a linked worktree's), and
// its submodules' git directories.
func (g *gitPlan) gitDir(dir, w string, depth int) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil || !g.writable(real) || g.seen[real] {
		return nil // outside every writable directory: read-only anyway
	}
	if real != filepath.Clean(dir) {
		return unprotectable(w, dir)
	}
	if g.dirs++; g.dirs > maxGitDirs {
		return &HintError{Err: fmt.Errorf("--rw %s: more than %d git directories to keep read-only", w, maxGitDirs),
			Hint: "pass the repositories' .git directories with --rw to make them writable on purpose"}
	}
	owner, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("--rw %s: %w", w, err)
	}
	g.add(cinit.MountPin, dir)
	protected := []string{"hooks", "info", "config"}
	// Checked before anything is created, so that a repository that
	// cannot be protected leaves the host as it was.
	for _, name := range protected {
		p := filepath.Join(dir, name)
		if fi, err := os.Lstat(p); err == nil && !g.exempt(p) && !(fi.IsDir() || fi.Mode().IsRegular()) {
			return unprotectable(w, p)
		}
	}
	for _, name := range protected {
		p := filepath.Join(dir, name)
		if g.exempt(p) {
			continue
		}
		if err := ensure(p, name != "config", owner); errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
			// Not ours to create (ronly runs as a user who cannot write
			// this .git): the job, as the same user, cannot either.
			continue
		} else if err != nil {
			return fmt.Errorf("--rw %s: %s: %w", w, p, err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("--rw %s: %w", w, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 || !(fi.IsDir() || fi.Mode().IsRegular()) {
			return unprotectable(w, p)
		}
		g.add(cinit.MountBindRO, p)
	}
	if err := g.redirects(dir, w); err != nil {
		return err
	}
	if common, err := readGitFile(filepath.Join(dir, "commondir"), ""); err == nil && common != "" {
		if !filepath.IsAbs(common) {
			common = filepath.Join(dir, common)
		}
		if err := g.gitDir(filepath.Clean(common), w, depth); err != nil {
			return err
		}
	}
	g.submoduleWorktree(dir)
	if err := g.linkedWorktrees(dir); err != nil {
		return err
	}
	if depth >= maxModuleDepth {
		return nil
	}
	mods, err := os.ReadDir(filepath.Join(dir, "modules"))
	if err != nil {
		return nil
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Name() < mods[j].Name() })
	for _, m := range mods {
		if err := g.submodules(filepath.Join(dir, "modules", m.Name()), w, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// linkedWorktrees protects what ties the main repository dir to its
// linked worktrees (git worktree add): each worktrees/NAME directory is
// pinned with its commondir and gitdir files read-only (a commondir
// pointed elsewhere would make git in that worktree read another config),
// and so is the worktree's own .git file when it lies in a writable
// directory.
func (g *gitPlan) linkedWorktrees(dir string) error {
	ents, err := os.ReadDir(filepath.Join(dir, "worktrees"))
	if err != nil {
		return nil
	}
	for _, e := range ents {
		admin := filepath.Join(dir, "worktrees", e.Name())
		if fi, err := os.Lstat(admin); err != nil || !fi.IsDir() {
			continue
		}
		if g.dirs++; g.dirs > maxGitDirs {
			return &HintError{Err: fmt.Errorf("%s: more than %d git directories to keep read-only", dir, maxGitDirs),
				Hint: "pass the repositories' .git directories with --rw to make them writable on purpose"}
		}
		g.add(cinit.MountPin, admin)
		if err := g.redirects(admin, dir); err != nil {
			return err
		}
		dotgit, err := readGitFile(filepath.Join(admin, "gitdir"), "")
		if err != nil || !filepath.IsAbs(dotgit) || !g.writable(dotgit) {
			continue
		}
		if real, err := filepath.EvalSymlinks(dotgit); err == nil && real == filepath.Clean(dotgit) {
			if fi, err := os.Lstat(real); err == nil && fi.Mode().IsRegular() {
				g.pinDirs(filepath.Dir(real))
				g.add(cinit.MountBindRO, real)
			}
		}
	}
	return nil
}

// redirects protects the files of git directory dir that redirect git
// elsewhere: bound read-only when they exist, renamed away after the
// session when the job creates them (afterSession).
func (g *gitPlan) redirects(dir, w string) error {
	gw := gitWatch{fd: -1, dir: dir}
	for _, name := range append(append([]string{}, redirects...), "gitdir") {
		p := filepath.Join(dir, name)
		if fi, err := os.Lstat(p); err == nil {
			if !fi.Mode().IsRegular() {
				return unprotectable(w, p)
			}
			g.add(cinit.MountBindRO, p)
		} else if name != "gitdir" {
			gw.absent = append(gw.absent, name)
		}
	}
	if len(gw.absent) == 0 || g.exempt(dir) {
		return nil
	}
	var err error
	if gw.fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
		return fmt.Errorf("--rw %s: %s: %w", w, dir, err)
	}
	g.watch = append(g.watch, gw)
	return nil
}

// submoduleWorktree protects the .git file of the worktree a git
// directory's config names (core.worktree: a submodule's git directory in
// .git/modules names its checkout), when it lies in a writable directory:
// pointed at a git directory of the job's, it would make git status in the
// superproject run git there with the job's config.
func (g *gitPlan) submoduleWorktree(dir string) {
	wt := coreWorktree(filepath.Join(dir, "config"))
	if wt == "" {
		return
	}
	if !filepath.IsAbs(wt) {
		wt = filepath.Join(dir, wt)
	}
	dotgit := filepath.Join(filepath.Clean(wt), ".git")
	if !g.writable(dotgit) {
		return
	}
	if real, err := filepath.EvalSymlinks(dotgit); err != nil || real != dotgit {
		return
	}
	if fi, err := os.Lstat(dotgit); err == nil && fi.Mode().IsRegular() {
		g.pinDirs(filepath.Dir(dotgit))
		g.add(cinit.MountBindRO, dotgit)
	}
}

// coreWorktree is core.worktree from a git config file, "" when unset: a
// plain reading of "[core]" and "worktree = PATH", as git writes it.
func coreWorktree(config string) string {
	b, err := os.ReadFile(config)
	if err != nil || len(b) > 1<<20 {
		return ""
	}
	section, value := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = strings.ToLower(strings.Trim(line, "[] \t"))
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && section == "core" && strings.EqualFold(strings.TrimSpace(k), "worktree") {
			value = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return value
}

// pinDirs pins dir and every directory between it and the writable
// directory that holds it, so that none can be renamed away and replaced
// by a look-alike holding a .git of the job's.
func (g *gitPlan) pinDirs(dir string) {
	root := ""
	for _, r := range g.rw {
		if policy.Within(dir, r) && len(r) > len(root) {
			root = r
		}
	}
	var chain []string
	for d := dir; d != root && policy.Within(d, root) && len(chain) < 8; d = filepath.Dir(d) {
		chain = append(chain, d)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		g.add(cinit.MountPin, chain[i])
	}
}

// submodules protects the git directories under .git/modules/NAME: a
// submodule with a name containing "/" nests (modules/a/b), so a directory
// without a HEAD is looked into once more.
func (g *gitPlan) submodules(dir, w string, depth int) error {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(dir, "HEAD")); err == nil {
		return g.gitDir(dir, w, depth)
	}
	if depth >= maxModuleDepth {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if err := g.submodules(filepath.Join(dir, e.Name()), w, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// ensure creates path, a directory or an empty file, when it is missing,
// owned like owner (the git directory) so its owner can use it as before.
// The session has not started: nothing inside can race this.
func ensure(path string, dir bool, owner fs.FileInfo) error {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var err error
	if dir {
		err = unix.Mkdir(path, 0o755)
	} else {
		var fd int
		fd, err = unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return err
	}
	if st, ok := owner.Sys().(*syscall.Stat_t); ok {
		return unix.Lchown(path, int(st.Uid), int(st.Gid))
	}
	return nil
}

// readGitFile reads a small git file (".git", "commondir") and returns
// its first line after prefix; "" when the prefix is missing.
func readGitFile(path, prefix string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, _ := f.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	line = strings.TrimRight(line, "\r")
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		return "", nil
	}
	return strings.TrimSpace(rest), nil
}

func unprotectable(w, path string) error {
	return &HintError{Err: fmt.Errorf("--rw %s: %s is a symlink (or not a plain file or directory): ronly cannot keep it read-only", w, path),
		Hint: "make it a plain directory or file, or pass it with --rw to make it writable on purpose"}
}
