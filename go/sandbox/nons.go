package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// The landlock-only mode, for where no namespace can be made (Docker's
// default seccomp profile, which is Kubernetes' RuntimeDefault, refuses
// unshare, clone with namespace flags, mount and pivot_root; a user without
// user namespaces). The command sees the host's tree as it is, and what
// keeps it read-only is Landlock: write rights only beneath the session's
// scratch directory and the --rw directories. The rest is as in the other
// modes: capabilities dropped, no_new_privs, the seccomp filter with the
// supervisor's listener, socket mediation, the Docker guard.
//
// What a mount namespace gave and this mode cannot:
//   - /tmp is the host's, read-only: scratch is a fresh directory of the
//     session's, $TMPDIR inside, removed at the end;
//   - /dev is the host's: Landlock lets only null, zero, full, random,
//     urandom, tty, ptmx and the session's own stdio be written;
//   - shims are links to this binary in a directory next to the scratch,
//     which Landlock keeps read-only;
//   - no --writable (an empty tmpfs), --no-network, private PID namespace
//     (the ci profile) or read-only .git binds in a --rw repository.

// LandlockOnly is the name of the mode, as Layers.Mode and --mode say it.
const LandlockOnly = string(policy.ModeLandlockOnly)

// nonsPlace is the session's own directory in landlock-only mode.
type nonsPlace struct {
	root    string // removed at the end, with everything in it
	scratch string // writable inside: $TMPDIR
	shims   string // the built-in shims, read-only inside; "" without
	// lock is root, held open with an exclusive flock while the session
	// lives: a later session removes the directory of one whose
	// supervisor died (sweepNons), as the cgroup sweep does.
	lock *os.File
}

// nonsDirPrefix names the sessions' directories: ronly-SESSION-NNN.
const nonsDirPrefix = "ronly-"

// sweepNons removes the session directories in dir that this user left
// when their supervisor died (SIGKILL): not locked, and older than a
// minute, so that a directory another session is making right now (made,
// not locked yet) is left alone.
func sweepNons(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		// ronly-<16 hex>-<digits>: a session id, then MkdirTemp's suffix.
		rest, ok := strings.CutPrefix(name, nonsDirPrefix)
		if !ok || !e.IsDir() || len(rest) < 18 || rest[16] != '-' || strings.Trim(rest[:16], "0123456789abcdef") != "" {
			continue
		}
		p := filepath.Join(dir, name)
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || int(st.Uid) != os.Geteuid() || time.Since(time.Unix(st.Mtim.Unix())) < time.Minute {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p) // by descriptors, never following a symlink
		}
		f.Close()
	}
}

// nonsRefuse says why p cannot run without namespaces; "" when it can.
func nonsRefuse(p *policy.Policy) (flag, why string) {
	switch {
	case len(p.Writable) > 0:
		return "--writable", "an empty tmpfs needs a mount namespace"
	case p.NoNetwork:
		return "--no-network", "a network namespace of its own"
	case p.PIDNS:
		return "--profile", "the ci profile's private PID namespace"
	case p.Home != "":
		return "--profile", "the ci profile's empty HOME (a tmpfs)"
	}
	return "", ""
}

// newNonsPlace makes the session's directory: ROOT (0700, in $TMPDIR, else
// /tmp) with ROOT/tmp, the scratch, and ROOT/shims, where each built-in shim
// is a symlink to this binary (argv[0] names the tool; the shim passes over
// itself by inode when it looks for the real one).
func newNonsPlace(session string, tools []string) (*nonsPlace, error) {
	if session == "" {
		session = "session"
	}
	root, err := os.MkdirTemp("", nonsDirPrefix+session+"-")
	if err != nil {
		return nil, &HintError{Err: fmt.Errorf("landlock-only mode: the session's scratch directory: %w", err),
			Hint: "it is made in $TMPDIR, else /tmp: point TMPDIR at a writable directory"}
	}
	// Judged by path later (the socket and metadata mediation compare
	// the paths the kernel gives), so without a symlink in it.
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	n := &nonsPlace{root: root, scratch: filepath.Join(root, "tmp")}
	fail := func(err error) (*nonsPlace, error) {
		n.remove()
		return nil, fmt.Errorf("landlock-only mode: %w", err)
	}
	if n.lock, err = os.Open(root); err != nil {
		return fail(err)
	}
	if err := unix.Flock(int(n.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(fmt.Errorf("lock %s: %w", root, err))
	}
	sweepNons(filepath.Dir(root))
	if err := os.Mkdir(n.scratch, 0o700); err != nil {
		return fail(err)
	}
	if len(tools) > 0 {
		self, err := os.Executable()
		if err != nil {
			return fail(fmt.Errorf("find this binary for the shims: %w", err))
		}
		n.shims = filepath.Join(root, "shims")
		if err := os.Mkdir(n.shims, 0o755); err != nil {
			return fail(err)
		}
		for _, t := range tools {
			if strings.ContainsRune(t, '/') || t == "" || t == "." || t == ".." {
				return fail(fmt.Errorf("shim name %q", t))
			}
			if err := os.Symlink(self, filepath.Join(n.shims, t)); err != nil {
				return fail(err)
			}
		}
	}
	return n, nil
}

// remove deletes the session's directory. os.RemoveAll walks by
// descriptors and never follows a symlink the session left there.
func (n *nonsPlace) remove() error {
	if n == nil {
		return nil
	}
	err := os.RemoveAll(n.root)
	if n.lock != nil {
		n.lock.Close()
	}
	return err
}

// nonsConfig turns cfg, planned for a mount namespace, into the
// landlock-only one: no tmpfs, shims or .git binds, the scratch and the --rw
// directories as write rules.
func (n *nonsPlace) nonsConfig(cfg cinit.Config, rw []cinit.Mount) (cinit.Config, error) {
	id, err := policy.HostDir(n.scratch)
	if err != nil {
		return cfg, fmt.Errorf("landlock-only mode: the scratch directory %s: %w", n.scratch, err)
	}
	cfg.Mounts = append([]cinit.Mount{{Kind: cinit.MountBindRW, Path: n.scratch, Dev: id.Dev, Ino: id.Ino}}, rw...)
	cfg.Flags &^= cinit.FlagUserNS | cinit.FlagPIDNS | cinit.FlagNetNS
	cfg.Flags |= cinit.FlagNoNS
	cfg.UsernsLimits = nil
	return cfg, nil
}

// nonsFallbackStep says whether an init failure at step is one that a
// mode without namespaces avoids: a namespace or mount the kernel or the
// container refused. Failures that say something was tampered with (a
// path swapped under ronly) are not.
func nonsFallbackStep(e *cinit.Error) bool {
	switch e.Step {
	case "unshare(CLONE_NEWUSER)", "write id maps", "unshare", "unshare(CLONE_NEWPID)", "make mounts private",
		"bind device", "bind shim", "read-only device", "read-only shim", "read-only /dev", "pivot_root",
		"detach old root", "holder", "move_mount", "mount_setattr(AT_RECURSIVE, RDONLY)":
		return true
	}
	return strings.HasPrefix(e.Step, "mount ") || strings.HasPrefix(e.Step, "open_tree")
}

// nonsFallback says whether auto mode may go on without namespaces after
// err; cause is the init's failure that makes it so.
func nonsFallback(p *policy.Policy, err error) (cause *cinit.Error, ok bool) {
	if p.Mode != policy.ModeAuto {
		return nil, false
	}
	if flag, _ := nonsRefuse(p); flag != "" {
		return nil, false
	}
	var ie *cinit.Error
	if !errors.As(err, &ie) || !nonsFallbackStep(ie) {
		return nil, false
	}
	// landlock-only mode is read-only by Landlock alone. Without it (no
	// Landlock under --landlock-min-abi 0, or a probe configuration that
	// leaves it out) the session would have only the files' own
	// permissions, which stop nothing root does: the namespaced mode's
	// failure stands. Debian 11's 5.10 (no Landlock, no mount_setattr)
	// wrote the host's /etc/passwd this way. The same test as admit's
	// (a maximum ABI is at least 1).
	if p.SkipLandlock || LandlockABI() == 0 {
		return nil, false
	}
	return ie, true
}

// startNons prepares a start in landlock-only mode: the session's
// directory (made once), the init's config, the variables the command
// gets, and the socket mediation's view of the writable places.
func (s *session) startNons(cfg cinit.Config) (cinit.Config, []string, error) {
	var rw []cinit.Mount
	for _, m := range cfg.Mounts {
		switch m.Kind {
		case cinit.MountBindRW:
			rw = append(rw, m)
		case cinit.MountBindRO, cinit.MountPin:
			// A repository's hooks and config are kept read-only by a
			// bind, and a Landlock rule cannot take a subtree back.
			return cfg, nil, &HintError{
				Err:  fmt.Errorf("landlock-only mode: --rw %s: a repository's .git/hooks and .git/config can be kept read-only only with a mount namespace, which cannot be made here", gitRepoOf(m.Path, s.p.RW)),
				Hint: "name a directory inside the repository's work tree that holds no .git with --rw, or --rw REPO/.git to let the session change its hooks and config on purpose"}
		}
	}
	if s.nons == nil {
		n, err := newNonsPlace(s.name, s.shimTools())
		if err != nil {
			return cfg, nil, err
		}
		s.nons = n
	}
	cfg, err := s.nons.nonsConfig(cfg, rw)
	if err != nil {
		return cfg, nil, err
	}
	if s.layers.LandlockABI == 0 && !s.p.SkipLandlock {
		// Only --landlock-min-abi 0 gets here.
		s.warn("landlock-only mode without Landlock (--landlock-min-abi 0): nothing but the files' own permissions keeps the host read-only")
	}
	if !s.nonsMeta {
		s.nonsMeta = true
		s.table = nonsTable(s.table)
		s.addNonsMediators()
	}
	env := []string{"TMPDIR=" + s.nons.scratch}
	// The socket mediation judges paths here: the session's writable
	// places are directories on the host's mounts, not mounts of their
	// own.
	s.socks.byPath = append([]string{s.nons.scratch}, s.p.RW...)
	if s.socks.guard != "" {
		// The guard at a socket of its own, which DOCKER_HOST names; the
		// host's socket is refused like any other (no redirection:
		// there is no mount namespace in which to show the guard in
		// its place, so a client is told where it is).
		if s.socks.docker != "" {
			s.socks.allow = append(s.socks.allow, s.socks.guard)
			s.socks.docker = ""
		}
		env = append(env, "DOCKER_HOST=unix://"+s.socks.guard)
	}
	return cfg, env, nil
}

// shimTools are the built-in shims the session gets.
func (s *session) shimTools() []string {
	if s.p.NoShims {
		return nil
	}
	return s.p.ShimTools
}

// gitRepoOf is the --rw directory that holds path.
func gitRepoOf(path string, rw []string) string {
	for _, d := range rw {
		if policy.Within(path, d) {
			return d
		}
	}
	return path
}

// underByPath says whether the file held open as fd lies beneath one of
// the session's writable directories (landlock-only mode), by the path
// the kernel gives for it now. Landlock refuses the session a link or a
// rename of a host socket into those directories (no REFER or make right
// outside them), so a socket found there is one bound there; a socket
// whose name was removed reads "(deleted)" and is refused.
func (s *sockets) underByPath(fd int) bool {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || !filepath.IsAbs(p) {
		return false
	}
	for _, d := range s.byPath {
		if policy.Within(p, d) && p != d {
			return true
		}
	}
	return false
}

// pidfdGetfdRefused says whether pidfd_getfd is refused to this process,
// as Docker's default seccomp profile does without CAP_SYS_PTRACE (or the
// kernel lacks it, before 5.6): the init then hands the listener over
// through a helper (cinit.FlagListenerHelper), and the mediators that need
// the caller's descriptors cannot have them.
func pidfdGetfdRefused() bool {
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return true
	}
	defer unix.Close(pidfd)
	r, _, e := unix.Syscall(unix.SYS_PIDFD_GETFD, uintptr(pidfd), uintptr(pidfd), 0)
	if e == 0 {
		unix.Close(int(r))
		return false
	}
	return e == unix.EPERM || e == unix.ENOSYS || e == unix.EACCES
}

// refuseSockets is the socket mediation where pidfd_getfd is refused: the
// supervisor cannot make a call on the caller's socket, and letting the
// call continue would rest on an address in the caller's memory, which it
// may change after the check. So every mediated socket call (connect,
// bind, sendto with an address, sendmsg, sendmmsg) fails with EACCES,
// counted, and the session is told why.
func (s *session) refuseSockets() {
	s.warn("pidfd_getfd is refused here (Docker's default seccomp profile allows it only with CAP_SYS_PTRACE): the supervisor cannot make the session's socket calls itself, so every connect, bind and send to an address fails (docker run --cap-add SYS_PTRACE, or a pod's capabilities.add: [SYS_PTRACE], lets it)")
	refuse := func(c *Call) *Refusal {
		c.Reply(0, refusedSocket)
		return &Refusal{Errno: refusedSocket, Reason: "socket calls cannot be mediated here (pidfd_getfd is refused)"}
	}
	for _, nr := range []int{unix.SYS_CONNECT, unix.SYS_SENDTO, unix.SYS_SENDMSG, unix.SYS_SENDMMSG, unix.SYS_BIND} {
		s.mediators[nr] = refuse
	}
	s.socks.refused = true // the Docker guard too: nothing reaches it
}
