package policy

import (
	"strings"
)

// DefaultPath is the command's PATH when a cleared environment keeps none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CIKeep are the variables the ci profile keeps from a cleared
// environment: what tools need to behave, nothing that holds a secret.
var CIKeep = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "CI"}

// Environ builds the command's environment from ronly's own (base). With
// clear, only the names in keep survive; set then adds or replaces
// NAME=VALUE pairs. nil means base unchanged.
func Environ(base []string, clear bool, keep, set []string) ([]string, error) {
	for _, k := range keep {
		if err := checkName("--keepenv", k, k); err != nil {
			return nil, err
		}
	}
	for _, kv := range set {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, &FlagError{"--setenv", kv, "must be NAME=VALUE"}
		}
		if err := checkName("--setenv", kv, name); err != nil {
			return nil, err
		}
	}
	if !clear && len(keep) > 0 {
		return nil, &FlagError{"--keepenv", keep[0], "has no effect without --clearenv or --profile ci"}
	}
	if !clear && len(set) == 0 {
		return nil, nil
	}
	var out []string
	index := map[string]int{}
	put := func(kv string) {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := index[name]; ok {
			out[i] = kv
			return
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !clear || kept[name] {
			put(kv)
		}
	}
	for _, kv := range set {
		put(kv)
	}
	if _, ok := index["PATH"]; !ok {
		put("PATH=" + DefaultPath)
	}
	return out, nil
}

func checkName(flag, value, name string) error {
	switch {
	case name == "":
		return &FlagError{flag, value, "the name is empty"}
	case strings.ContainsAny(name, "=\x00"):
		return &FlagError{flag, value, "a name cannot contain '=' or NUL"}
	case strings.HasPrefix(name, "_RONLY_"):
		return &FlagError{flag, value, "_RONLY_ variables are ronly's own"}
	}
	return nil
}
