package sandbox

import (
	"os"
	"strconv"
	"strings"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/shims"
)

// commandLine is the argv and environment the C init execs once the
// sandbox is sealed: p.Command (the user's shell when empty) and the
// environment ronly was given, or the policy's, with the shims first on
// PATH (shimDir, where the init puts this binary under the shimmed tools'
// names, then the --extra-shims directories) and the shims' report
// descriptor named; extra last, winning over the caller's. The init looks
// argv[0] up on that PATH itself, inside, where it sees the sandbox's tree.
func commandLine(p *policy.Policy, shimDir string, extra []string) (argv, env []string) {
	base := p.Env
	if base == nil {
		base = os.Environ()
	}
	own := []string{shims.EnvReportFD + "=" + strconv.Itoa(reportFD)}
	var shimPath []string
	if !p.NoShims {
		if len(p.ShimTools) > 0 && shimDir != "" {
			shimPath = append(shimPath, shimDir)
		}
		shimPath = append(shimPath, p.ExtraShims...)
		if len(p.ExtraShims) > 0 {
			own = append(own, shims.EnvExtraRules+"="+strings.Join(p.ExtraShims, ":"))
		}
	}
	env = make([]string, 0, len(base)+len(own)+len(extra))
	env = dedupEnv(append(append(append(env, base...), own...), extra...))
	if len(shimPath) > 0 {
		path := strings.Join(shimPath, ":")
		i := envIndex(env, "PATH")
		switch {
		case i < 0:
			env = append(env, "PATH="+path)
		case len(env[i]) > len("PATH="):
			env[i] = "PATH=" + path + ":" + env[i][len("PATH="):]
		default:
			env[i] = "PATH=" + path
		}
	}
	argv = p.Command
	if len(argv) == 0 {
		sh := "/bin/bash"
		if i := envIndex(env, "SHELL"); i >= 0 && len(env[i]) > len("SHELL=") {
			sh = env[i][len("SHELL="):]
		}
		argv = []string{sh}
	}
	return argv, env
}

// dedupEnv keeps the last of each NAME=, where it stood, as os/exec does
// for the environment it passes: a later setting wins.
func dedupEnv(env []string) []string {
	seen := make(map[string]bool, len(env))
	out := make([]string, 0, len(env))
	for i := len(env) - 1; i >= 0; i-- {
		kv := env[i]
		name, _, ok := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "_RONLY_") {
			continue // ronly's own, never the command's
		}
		if !ok {
			if kv != "" {
				out = append(out, kv)
			}
			continue
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, kv)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func envIndex(env []string, name string) int {
	for i, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return i
		}
	}
	return -1
}
