// Package policy holds the one struct that describes a ronly session. The
// command line fills it, Validate checks it once, and everything after only
// reads it.
package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mode says how ronly gets the privileges to build the sandbox.
type Mode string

// Modes.
const (
	// ModeAuto picks the strongest mode that works: a user namespace
	// (identity-mapped for root), else privileged when ronly runs as root.
	ModeAuto Mode = "auto"
	// ModeRootless uses a user namespace that maps only the caller's own ids.
	ModeRootless Mode = "rootless"
	// ModePrivileged uses no user namespace: real root, capabilities dropped.
	ModePrivileged Mode = "privileged"
	// ModeUserNS is a user namespace mapping every id to itself (root only).
	ModeUserNS Mode = "userns"
	// ModeLandlockOnly makes no namespace at all, for where none can be
	// made (Docker's default seccomp profile, Kubernetes' RuntimeDefault):
	// the host's mounts stay as they are, Landlock alone keeps them
	// read-only, and the scratch space is a per-session directory.
	ModeLandlockOnly Mode = "landlock-only"
)

// Modes lists the modes --mode takes, strongest first.
var Modes = []Mode{ModeAuto, ModeUserNS, ModeRootless, ModePrivileged, ModeLandlockOnly}

// Policy is a whole ronly session.
type Policy struct {
	Command    []string // empty: $SHELL, else /bin/bash
	TmpfsSize  uint64   // bytes of the scratch tmpfs on /tmp
	Writable   []string // empty tmpfs mounted at each
	RW         []string // host directories bound writable
	ExtraShims []string // prepended to PATH inside
	// AllowSocket are host unix sockets the session may connect to
	// (--allow-socket), besides its own and the Docker guard.
	AllowSocket []string
	ShimTools   []string // tools the built-in shims answer for (docker, kubectl)
	NoShims     bool
	NoNetwork   bool
	Mode        Mode
	// AllowMetadata lets the session reach the cloud instance metadata
	// addresses (go/sandbox/metadata.go), refused by default.
	AllowMetadata bool
	// KubeConfig are kubeconfigs to hide inside (--kube-config), besides
	// the ones ronly finds itself (go/sandbox/creds.go), with the key and
	// token files they name.
	KubeConfig []string
	// KubeHideSecrets: the Kubernetes guard answers reads of secrets with
	// their values emptied (--kube-hide-secrets; go/kubeguard/secrets.go).
	KubeHideSecrets bool
	// LandlockMinABI is the floor: ronly refuses to start on a kernel whose
	// Landlock ABI is lower. 6 is the first that scopes signals.
	LandlockMinABI int
	// LandlockMaxABI, when not 0, caps the ABI used: to pin behaviour
	// across a fleet, or to exercise an older kernel's fallbacks.
	LandlockMaxABI int
	Verbose        bool

	// Profile is "debug" (the host's PID namespace and /proc, the caller's
	// environment) or "ci" (see ApplyProfile).
	Profile string
	// PIDNS gives the session its own PID namespace and /proc, with a
	// small PID 1 that forwards signals and reaps.
	PIDNS bool
	// Home, when set, is covered with an empty tmpfs (the ci profile's
	// $HOME): a job's dotfiles and caches start clean and vanish after.
	Home string
	// Env is the command's whole environment; nil passes ronly's own on.
	Env []string
	// CountWrites counts refused writes (EROFS) with eBPF: fexit programs
	// on the write-class syscalls where the kernel has BPF trampolines,
	// else a program on the sys_exit tracepoint, which costs every syscall
	// on the host while the session runs. Off by default.
	CountWrites bool
	// NoWriteCounting leaves refused writes uncounted even with
	// CountWrites (`ronly probe` sets it).
	NoWriteCounting bool
	// Limits bound the session; a session that hits one is killed with
	// its whole process tree.
	Limits Limits

	// SkipLandlock and SkipSeccomp leave a layer out. No flag sets them:
	// only `ronly probe` does, to attribute each refusal to the layer that
	// made it by adding the layers one at a time.
	SkipLandlock bool
	SkipSeccomp  bool
}

// Limits bound a session; zero means none.
type Limits struct {
	Timeout time.Duration // wall clock
	CPUTime time.Duration // CPU time of the whole process tree
	Memory  uint64        // bytes
	Pids    int           // processes and threads at once
}

// Any says whether some limit is set.
func (l Limits) Any() bool { return l != Limits{} }

// Profiles.
const (
	ProfileDebug = "debug"
	ProfileCI    = "ci"
)

// DefaultTmpfsSize is ronly's historical /tmp size.
const DefaultTmpfsSize = 64 << 20

// FlagError is a bad value for one flag. Its text names the flag and the value.
type FlagError struct {
	Flag, Value, Reason string
}

func (e *FlagError) Error() string {
	if e.Value == "" {
		return e.Flag + ": " + e.Reason
	}
	return fmt.Sprintf("%s %q: %s", e.Flag, e.Value, e.Reason)
}

// ParseSize reads a size such as 64M, 1G, 512k or 1048576 (bytes).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || v == 0 {
		return 0, errors.New("not a size: use a positive number with an optional k, M, G or T suffix, e.g. 64M")
	}
	if v > (1<<50)/mult {
		return 0, errors.New("too large")
	}
	return v * mult, nil
}

// Validate checks every field and resolves paths in place. It changes
// nothing on the host.
func (p *Policy) Validate() error {
	if p.TmpfsSize < 4096 {
		return &FlagError{"--tmpfs-size", strconv.FormatUint(p.TmpfsSize, 10), "must be at least 4k"}
	}
	var err error
	if p.Writable, err = dirs("--writable", p.Writable, false, true); err != nil {
		return err
	}
	for _, rw := range p.RW {
		if err := NoSymlinks("--rw", rw); err != nil {
			return err
		}
	}
	if p.RW, err = dirs("--rw", p.RW, true, false); err != nil {
		return err
	}
	for _, rw := range p.RW {
		for _, w := range p.Writable {
			if Within(rw, w) {
				return &FlagError{"--rw", rw, fmt.Sprintf("is inside --writable %s, which starts empty", w)}
			}
		}
	}
	if p.AllowSocket, err = sockets("--allow-socket", p.AllowSocket); err != nil {
		return err
	}
	for _, kc := range p.KubeConfig {
		if err := kubeconfig(kc); err != nil {
			return err
		}
	}
	for _, d := range p.ExtraShims {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return &FlagError{"--extra-shims", d, "not a directory"}
		}
	}
	switch p.Mode {
	case ModeAuto, ModeRootless, ModeLandlockOnly:
	case ModePrivileged:
		if os.Geteuid() != 0 {
			return &FlagError{"--mode", string(p.Mode), "needs root (run with sudo, or use --mode rootless)"}
		}
	case ModeUserNS:
		if os.Geteuid() != 0 {
			return &FlagError{"--mode", string(p.Mode), "maps every id, which needs root (use --mode rootless)"}
		}
	default:
		var names []string
		for _, m := range Modes {
			names = append(names, string(m))
		}
		return &FlagError{"--mode", string(p.Mode), "unknown mode: use one of " + strings.Join(names, ", ")}
	}
	if p.Mode == ModeLandlockOnly {
		// What only a namespace or a mount gives.
		var lost string
		switch {
		case len(p.Writable) > 0:
			lost = "--writable (an empty tmpfs)"
		case p.NoNetwork:
			lost = "--no-network (a network namespace)"
		case p.PIDNS || p.Home != "":
			lost = "the ci profile (a private PID namespace, an empty HOME)"
		}
		if lost != "" {
			return &FlagError{"--mode", string(p.Mode), "makes no namespaces or mounts, so " + lost + " cannot be had: drop it or use another mode"}
		}
	}
	switch p.Profile {
	case "", ProfileDebug, ProfileCI:
	default:
		return &FlagError{"--profile", p.Profile, "unknown profile: use debug or ci"}
	}
	if p.Home != "" {
		if p.Home, err = homeDir(p.Home); err != nil {
			return err
		}
	}
	if err := p.notCovered(); err != nil {
		return err
	}
	if p.Limits.Timeout < 0 {
		return &FlagError{"--timeout", p.Limits.Timeout.String(), "must be positive"}
	}
	if p.Limits.CPUTime < 0 {
		return &FlagError{"--cpu-time", p.Limits.CPUTime.String(), "must be positive"}
	}
	if p.Limits.Memory != 0 && p.Limits.Memory < 1<<20 {
		return &FlagError{"--memory", strconv.FormatUint(p.Limits.Memory, 10), "must be at least 1M"}
	}
	if p.Limits.Pids < 0 {
		return &FlagError{"--pids", strconv.Itoa(p.Limits.Pids), "must be positive"}
	}
	if p.LandlockMinABI < 0 || p.LandlockMinABI > 64 {
		return &FlagError{"--landlock-min-abi", strconv.Itoa(p.LandlockMinABI), "must be between 0 and 64"}
	}
	if p.LandlockMaxABI < 0 || p.LandlockMaxABI > 64 {
		return &FlagError{"--landlock-max-abi", strconv.Itoa(p.LandlockMaxABI), "must be between 0 (no cap) and 64"}
	}
	return nil
}

// homeDir checks the directory the ci profile covers with a tmpfs. A
// $HOME that is missing or is / (system users) gets no tmpfs rather than
// an error: the job then simply has no writable home.
func homeDir(home string) (string, error) {
	out, err := dirs("$HOME", []string{home}, true, true)
	if err != nil {
		return "", nil
	}
	return out[0], nil
}

// dirs resolves each path to an absolute, symlink-free directory that ronly
// may mount on. The init joins paths onto the new root, so a symlink left
// in one would be followed on the host side. Without follow, a path is
// only cleaned, never resolved: a writable bind's path was checked to have
// no symlink (NoSymlinks), and resolving it again here would follow one
// swapped in since.
func dirs(flag string, paths []string, mustExist, follow bool) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, &FlagError{flag, p, "must be an absolute path"}
		}
		real, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			if mustExist {
				return nil, &FlagError{flag, p, "no such directory"}
			}
			return nil, &FlagError{flag, p, "no such directory on the host (the root is read-only, so ronly cannot create it)"}
		}
		if err != nil {
			return nil, &FlagError{flag, p, err.Error()}
		}
		if !follow {
			real = filepath.Clean(p)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, &FlagError{flag, p, "not a directory"}
		}
		for _, bad := range []string{"/", "/proc", "/sys", "/dev"} {
			if real == bad || (bad != "/" && Within(real, bad)) {
				return nil, &FlagError{flag, p, "ronly cannot make " + bad + " writable"}
			}
		}
		if !seen[real] {
			seen[real] = true
			out = append(out, real)
		}
	}
	return out, nil
}

// sockets resolves each path to an absolute, symlink-free unix socket.
func sockets(flag string, paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, &FlagError{flag, p, "must be an absolute path"}
		}
		real, err := filepath.EvalSymlinks(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FlagError{flag, p, "no such socket"}
		}
		if err != nil {
			return nil, &FlagError{flag, p, err.Error()}
		}
		if fi, err := os.Stat(real); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			return nil, &FlagError{flag, p, "not a unix socket"}
		}
		out = append(out, real)
	}
	return out, nil
}

// FileID identifies a file on the host.
type FileID struct{ Dev, Ino uint64 }

// ErrSymlink says a path has a symlink in some component.
var ErrSymlink = errors.New("is a symlink or lies under one, which ronly does not follow for a writable bind")

// HostDir opens the directory path without following a symlink in any
// component (openat2 RESOLVE_NO_SYMLINKS) and returns its identity, which
// the init checks when it opens the path again to bind it. A --rw path
// is often inside a directory an earlier session could write: a symlink
// planted there would otherwise make ronly bind another host directory
// writable.
func HostDir(path string) (FileID, error) {
	fd, err := OpenNoSymlinks(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.ELOOP):
		return FileID{}, ErrSymlink
	case errors.Is(err, unix.ENOTDIR):
		return FileID{}, errors.New("not a directory")
	case err != nil:
		return FileID{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// NoSymlinks refuses a writable bind's path with a symlink in it, naming
// flag, the path and, when it resolves, the directory to name instead.
// Other problems (missing, relative) are left to the checks that follow.
func NoSymlinks(flag, path string) error {
	if !filepath.IsAbs(path) {
		return nil
	}
	if _, err := HostDir(filepath.Clean(path)); !errors.Is(err, ErrSymlink) {
		return nil
	}
	reason := ErrSymlink.Error()
	if real, err := filepath.EvalSymlinks(path); err == nil {
		reason += "; name the directory itself: " + real
	}
	return &FlagError{flag, path, reason}
}

// notCovered refuses an --extra-shims directory or an --allow-socket
// that an empty tmpfs covers inside (/tmp, a --writable, the ci profile's
// HOME): the shims would not be on PATH inside, and the real tool would
// run uncounted; no name inside would reach the socket.
func (p *Policy) notCovered() error {
	cover := p.Cover()
	check := func(flag, value, path, why string) error {
		f, covered := cover(path)
		if !covered {
			return nil
		}
		what := "--writable " + f.Path
		switch f.Path {
		case "/tmp":
			what = "/tmp"
		case p.Home:
			what = "the ci profile's HOME " + f.Path
		}
		return &FlagError{flag, value, "is inside " + what + ", which starts empty inside: " + why}
	}
	for _, d := range p.ExtraShims {
		real, err := filepath.Abs(d)
		if err == nil {
			real, err = filepath.EvalSymlinks(real)
		}
		if err != nil {
			return &FlagError{"--extra-shims", d, err.Error()}
		}
		if err := check("--extra-shims", d, real, "its shims would not be on PATH"); err != nil {
			return err
		}
	}
	for _, s := range p.AllowSocket {
		if err := check("--allow-socket", s, s, "no path would reach the socket"); err != nil {
			return err
		}
	}
	return nil
}

// Cover returns what covers a path inside: the place on top there (the
// last of Places that holds it) when that place starts empty, so that an
// empty tmpfs hides the host's path. covered is false where the host's
// path shows, read-only or through a --rw, and everywhere in landlock-only
// mode. The places are listed once, for all the paths asked about.
func (p *Policy) Cover() func(path string) (top Place, covered bool) {
	if p.Mode == ModeLandlockOnly {
		// No mounts: the host's tree as it is.
		return func(string) (Place, bool) { return Place{}, false }
	}
	places := p.Places()
	return func(path string) (top Place, covered bool) {
		for _, pl := range places {
			if Within(path, pl.Path) {
				top = pl
			}
		}
		return top, top.Fresh
	}
}

// Place is one of a session's writable places.
type Place struct {
	Path string
	// Fresh: an empty tmpfs of Mode covers what the host has at Path (/tmp,
	// each --writable, the ci profile's HOME); else the host's own
	// directory is bound writable there (--rw).
	Fresh bool
	Mode  uint32
}

// Places are the session's writable places, in the order the sandbox
// makes them: /tmp, each --writable, HOME, each --rw, then reordered so
// that a place inside another comes after it. Each mount lands on top of
// the ones before it, so the other way round a bind of --rw /repo would
// hide the empty tmpfs of --writable /repo/node_modules, and the session
// would write into the host's node_modules. The private /dev's /dev/shm,
// which the init makes in every mode with a mount namespace, is not the
// policy's.
//
// Every list of where a session writes derives from this one: the
// sandbox's mounts, the unix sockets that are the session's own, the
// credentials an empty tmpfs covers, what `ronly probe` expects to find
// writable. A place added here reaches all of them.
func (p *Policy) Places() []Place {
	pl := make([]Place, 0, 2+len(p.Writable)+len(p.RW))
	fresh := func(path string, mode uint32) {
		// One empty tmpfs a path: a --writable /tmp is /tmp (1777).
		if !slices.ContainsFunc(pl, func(o Place) bool { return o.Path == path }) {
			pl = append(pl, Place{Path: path, Fresh: true, Mode: mode})
		}
	}
	fresh("/tmp", 0o1777)
	for _, w := range p.Writable {
		fresh(w, 0o755)
	}
	if p.Home != "" {
		// Before the binds, so that a cache bound writable inside HOME
		// lands on top of it.
		fresh(p.Home, 0o700)
	}
	for _, rw := range p.RW {
		pl = append(pl, Place{Path: rw})
	}
	// A place inside another is deeper: sorting by depth puts every
	// place after those that hold it, and keeps the order above among
	// the rest (places of one depth cannot hold each other, but for the
	// same path, where the later one is on top as given).
	slices.SortStableFunc(pl, func(a, b Place) int { return strings.Count(a.Path, "/") - strings.Count(b.Path, "/") })
	return pl
}

// Within says whether path is dir or lies below it; both are clean and
// absolute.
func Within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// kubeconfig checks a --kube-config path: an absolute path to a regular
// file (through its symlinks), which ronly then hides inside.
func kubeconfig(path string) error {
	if !filepath.IsAbs(path) {
		return &FlagError{"--kube-config", path, "must be an absolute path"}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &FlagError{"--kube-config", path, "no such file"}
	case err != nil:
		return &FlagError{"--kube-config", path, err.Error()}
	case !fi.Mode().IsRegular():
		return &FlagError{"--kube-config", path, "not a regular file"}
	}
	return nil
}
