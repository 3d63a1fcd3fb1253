package cli

import (
	"os"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
)

// applyProfile adds what --profile, the limit flags and the environment
// flags ask for to p, before p is validated.
//
// The ci profile: the workspace (--workspace, default the current
// directory) bound writable, a private PID namespace and /proc, an empty
// tmpfs on $HOME, and a cleared environment that keeps only policy.CIKeep
// and --keepenv. Everything else is as in debug.
func (c *CLI) applyProfile(p *policy.Policy) error {
	p.Profile = c.Profile
	lim := policy.Limits{Timeout: c.Timeout, CPUTime: c.CPUTime, Pids: c.Pids}
	if c.Memory != "" {
		m, err := policy.ParseSize(c.Memory)
		if err != nil {
			return &policy.FlagError{Flag: "--memory", Value: c.Memory, Reason: err.Error()}
		}
		lim.Memory = m
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--timeout", c.Timeout}, {"--cpu-time", c.CPUTime}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Millisecond) {
			return &policy.FlagError{Flag: d.flag, Value: d.v.String(), Reason: "must be a positive duration such as 90s or 30m"}
		}
	}
	p.Limits = lim

	clear, keep := c.Clearenv, c.Keepenv
	if c.Workspace != "" && c.Profile != policy.ProfileCI {
		return &policy.FlagError{Flag: "--workspace", Value: c.Workspace, Reason: "only the ci profile has a workspace; use --rw in debug"}
	}
	if c.Profile == policy.ProfileCI {
		ws := c.Workspace
		if ws == "" {
			// The kernel's name for it, without symlinks ($PWD may
			// have some, and the workspace is bound only by a path
			// without any).
			wd, err := unix.Getwd()
			if err != nil {
				return &policy.FlagError{Flag: "--workspace", Reason: "no current directory to use: " + err.Error()}
			}
			ws = wd
			if err := implicitWorkspaceOK(ws); err != nil {
				return err
			}
		}
		if abs, err := filepath.Abs(ws); err == nil {
			ws = abs
		}
		if err := policy.NoSymlinks("--workspace", ws); err != nil {
			return err
		}
		p.RW = append([]string{ws}, p.RW...)
		p.PIDNS = true
		p.Home = os.Getenv("HOME")
		clear = true
		keep = append(append([]string{}, policy.CIKeep...), keep...)
	}
	env, err := policy.Environ(os.Environ(), clear, keep, c.Setenv)
	if err != nil {
		return err
	}
	p.Env = env
	return nil
}

// implicitWorkspaceOK refuses the current directory as the ci profile's
// workspace when it is /, the invoking user's home or an ancestor of it: a
// job started from there would get .bashrc, .ssh and .gitconfig writable,
// which run commands outside the sandbox later. An explicit --workspace is
// the user's choice and not checked here. The homes are $HOME and, under
// sudo, SUDO_USER's home from the password database; symlinks are resolved
// on both sides so that /home -> /usr/home cannot hide an ancestor.
func implicitWorkspaceOK(wd string) error {
	real, err := filepath.EvalSymlinks(wd)
	if err != nil {
		real = filepath.Clean(wd)
	}
	homes := []string{os.Getenv("HOME")}
	if name := os.Getenv("SUDO_USER"); name != "" {
		if u, err := user.Lookup(name); err == nil {
			homes = append(homes, u.HomeDir)
		}
	}
	why := ""
	if real == "/" {
		why = "is /"
	}
	for _, h := range homes {
		if why != "" || h == "" || !filepath.IsAbs(h) {
			continue
		}
		if r, err := filepath.EvalSymlinks(h); err == nil {
			h = r
		}
		switch h = filepath.Clean(h); {
		case h == real:
			why = "is the home directory " + h
		case policy.Within(h, real):
			why = "holds the home directory " + h
		}
	}
	if why == "" {
		return nil
	}
	return &policy.FlagError{Flag: "--workspace", Value: wd, Reason: "the current directory, the ci profile's default workspace, " +
		why + ": it would all be writable (.bashrc, .ssh, .gitconfig); cd to the project, or pass --workspace DIR explicitly"}
}
