package shims

import (
	"errors"
	"strings"
	"testing"
)

// The allow-lists, written out again: the fuzz test does not trust the
// rule parser to have read them.
var (
	safe = map[string]map[string]bool{
		"docker": set("ps logs inspect stats top images info version events diff port history " +
			"container.ls container.list container.ps container.logs container.inspect container.stats " +
			"container.top container.diff container.port image.ls image.list image.inspect image.history " +
			"network.ls network.list network.inspect volume.ls volume.list volume.inspect " +
			"system.df system.info system.events"),
		"kubectl": set("get describe logs top explain version cluster-info api-resources api-versions events " +
			"config.view config.current-context config.get-contexts config.get-clusters config.get-users " +
			"auth.can-i auth.whoami"),
	}
	groupsOf = map[string]map[string]bool{
		"docker":  set("container image network volume system"),
		"kubectl": set("config auth"),
	}
	// Never, whatever the rule files say.
	never = set("run exec rm rmi create start stop kill delete apply patch replace edit scale " +
		"compose buildx builder cp debug port-forward proxy attach drain cordon label annotate " +
		"container.rm container.run container.exec image.rm image.pull image.prune system.prune " +
		"config.set config.use-context config.set-credentials auth.reconcile help")
)

func set(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

// The global flags, written out again, with whether each takes a value.
var flagsOf = map[string]map[string]bool{
	"docker": {
		"H": true, "host": true, "c": true, "context": true, "l": true, "log-level": true,
		"tlscacert": true, "tlscert": true, "tlskey": true,
		"D": false, "debug": false, "tls": false, "tlsverify": false, "v": false, "version": false,
		"h": false, "help": false,
	},
	"kubectl": {
		"n": true, "namespace": true, "context": true, "cluster": true, "user": true, "kubeconfig": true,
		"s": true, "server": true, "token": true, "as": true, "as-group": true, "as-uid": true,
		"cache-dir": true, "certificate-authority": true, "client-certificate": true, "client-key": true,
		"password": true, "username": true, "profile": true, "profile-output": true,
		"request-timeout": true, "tls-server-name": true, "log-flush-frequency": true,
		"v": true, "vmodule": true,
		"insecure-skip-tls-verify": false, "match-server-version": false, "disable-compression": false,
		"warnings-as-errors": false, "h": false, "help": false,
	},
}

var errUsage = errors.New("the tool refuses the command line")

// pflagPath is model A: the verb (and management verb) as docker finds
// them, with pflag's Parse, not interspersed, over the global flags,
// then the next argument for a management command. It follows pflag's
// parseArgs, parseLongArg and parseSingleShortArg; an error is a command
// line the tool refuses.
func pflagPath(tool string, args []string) ([]string, error) {
	flags := flagsOf[tool]
	for len(args) > 0 {
		s := args[0]
		if len(s) == 0 || s[0] != '-' || len(s) == 1 {
			break
		}
		args = args[1:]
		if s[1] == '-' {
			if len(s) == 2 {
				break // "--": what follows is positional
			}
			name := s[2:]
			if name[0] == '-' || name[0] == '=' {
				return nil, errUsage
			}
			name, _, attached := strings.Cut(name, "=")
			takes, ok := flags[name]
			if !ok {
				return nil, errUsage
			}
			if takes && !attached {
				if len(args) == 0 {
					return nil, errUsage
				}
				args = args[1:]
			}
			continue
		}
		shorts := s[1:]
		for len(shorts) > 0 {
			takes, ok := flags[shorts[:1]]
			switch {
			case !ok:
				return nil, errUsage
			case len(shorts) > 2 && shorts[1] == '=':
				shorts = ""
			case !takes:
				shorts = shorts[1:]
			case len(shorts) > 1:
				shorts = ""
			case len(args) > 0:
				args, shorts = args[1:], ""
			default:
				return nil, errUsage
			}
		}
	}
	// The positional arguments, in order, were they all positional.
	if len(args) == 0 {
		return nil, nil
	}
	path := []string{args[0]}
	if groupsOf[tool][args[0]] && len(args) > 1 {
		if strings.HasPrefix(args[1], "-") {
			return nil, errUnclear
		}
		path = append(path, args[1])
	}
	return path, nil
}

var errUnclear = errors.New("model cannot tell")

// cobraPath is model B: the command path as cobra's Command.Find finds it
// (kubectl), with cobra's stripFlags: a flag cobra does not know is taken
// to have a value, "-" and "" are dropped, and a cluster of short flags
// never takes the next argument.
func cobraPath(tool string, args []string) []string {
	flags := flagsOf[tool]
	isBool := func(name string) bool { takes, ok := flags[name]; return ok && !takes }
	var commands []string
Loop:
	for len(args) > 0 {
		s := args[0]
		args = args[1:]
		switch {
		case s == "--":
			break Loop
		case strings.HasPrefix(s, "--") && !strings.Contains(s, "=") && !isBool(s[2:]),
			strings.HasPrefix(s, "-") && !strings.Contains(s, "=") && len(s) == 2 && !isBool(s[1:]):
			if len(args) <= 1 {
				break Loop
			}
			args = args[1:]
		case s != "" && !strings.HasPrefix(s, "-"):
			commands = append(commands, s)
		}
	}
	if len(commands) == 0 {
		return nil
	}
	if groupsOf[tool][commands[0]] && len(commands) > 1 {
		return commands[:2]
	}
	return commands[:1]
}

// FuzzDecide holds the shim's promise: a verb off the allow-list never
// reaches the real tool. Whenever Decide allows a command line, the verb
// it found must be on the allow-list written out above, and the two
// models of how the tools find their verb must find the same one (or
// model A must find that the tool refuses the line).
func FuzzDecide(f *testing.F) {
	for _, c := range decideCases {
		tool, args := splitCmd(c.cmd)
		f.Add(tool == "kubectl", strings.Join(args, " "))
	}
	for _, s := range []string{
		"-D=", "-Dv", "-vD", "-hv 3 get", "-n -- get", "--namespace=get delete", "-n=get delete",
		"--v 3 delete", "-v=3 delete", "-l - ps", "container -- ls", "--tls=true run",
		"-H -D run", "-H -- ps", "config view --raw", "auth can-i --list",
	} {
		f.Add(false, s)
		f.Add(true, s)
	}
	rules := map[bool]*Rules{false: builtinRules(f, "docker"), true: builtinRules(f, "kubectl")}
	f.Fuzz(func(t *testing.T, kube bool, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, " ")
		}
		r := rules[kube]
		tool := r.Tool
		d := r.Decide(args)
		if !d.Allowed {
			if d.Label != other && d.Label != d.Verb {
				t.Fatalf("%s %q: label %q for verb %q", tool, args, d.Label, d.Verb)
			}
			return
		}
		// The verb Decide found is on the allow-list.
		key := strings.ReplaceAll(d.Verb, " ", ".")
		if d.Verb == "" || groupsOf[tool][d.Verb] {
			// No verb, or a management command alone: the tool prints help.
		} else if !safe[tool][key] || never[key] {
			t.Fatalf("%s %q: allowed %q, not on the allow-list", tool, args, d.Verb)
		}
		// Model A finds the same verb, or the tool refuses the line.
		pa, err := pflagPath(tool, args)
		if errors.Is(err, errUnclear) {
			t.Fatalf("%s %q: allowed %q, but the verb is unclear", tool, args, d.Verb)
		}
		if err == nil && strings.Join(pa, " ") != d.Verb {
			t.Fatalf("%s %q: allowed %q, but pflag finds %q", tool, args, d.Verb, pa)
		}
		// Model B finds the same verb.
		if pb := cobraPath(tool, args); strings.Join(pb, " ") != d.Verb {
			t.Fatalf("%s %q: allowed %q, but cobra finds %q", tool, args, d.Verb, pb)
		}
	})
}
