// Package shims is the logic of ronly's command shims: when the binary is
// started under the name of a tool that has a rule file (docker, kubectl,
// or a user's tool from an --extra-shims directory), it finds the tool's
// verb the way the tool's own parser would, runs the real tool for a
// verb on the allow-list and refuses anything else.
//
// A shim is a courtesy, not a boundary: the sandbox is the boundary. The
// shim's job is to say no early and clearly, and to count the refusals.
package shims

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// EnvExtraRules lists (colon-separated) the directories whose *.rules
// files add tools or override the built-in ones: the --extra-shims
// directories. The first directory that has NAME.rules wins, as the first
// directory on PATH that has NAME does.
const EnvExtraRules = "RONLY_EXTRA_RULES"

//go:embed *.rules
var builtin embed.FS

const ext = ".rules"

// Compiled when first used: by a shim, or a session with --extra-shims;
// a plain session's start (which links this package) never needs them.
var (
	wordRE  = lazyRE(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	shortRE = lazyRE(`^-[A-Za-z0-9?]$`)
	longRE  = lazyRE(`^--[A-Za-z0-9][A-Za-z0-9._-]*$`)
	plainRE = lazyRE(`^-{0,2}[A-Za-z0-9][A-Za-z0-9._:/@+,=-]*$`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// Rules are one tool's allow-list: which global flags it takes (and
// whether each takes a value), which verbs and management-command verbs
// may run, and which further verbs have names in reports.
type Rules struct {
	Tool   string // the tool, and the shim's name
	Source string // where the rules came from, for messages

	bare       bool                       // the tool with no verb may run
	valueFlags map[string]bool            // "-n", "--namespace": take a value
	boolFlags  map[string]bool            // "-D", "--debug": take none
	allow      map[string]bool            // top-level verbs that may run
	groups     map[string]map[string]bool // management command → verbs that may run
	known      map[string]bool            // blocked verbs named in reports
	knownSub   map[string]map[string]bool // management command → blocked verbs named in reports
}

// ParseError is a mistake in a rule file.
type ParseError struct {
	File string
	Line int // 0: the file as a whole
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Parse reads one rule file. name is the file's name (NAME.rules), used in
// errors and checked against the tool line.
func Parse(name string, r io.Reader) (*Rules, error) {
	rs := &Rules{
		Source:     name,
		valueFlags: map[string]bool{},
		boolFlags:  map[string]bool{},
		allow:      map[string]bool{},
		groups:     map[string]map[string]bool{},
		known:      map[string]bool{},
		knownSub:   map[string]map[string]bool{},
	}
	want := strings.TrimSuffix(filepath.Base(name), ext)
	fail := func(line int, format string, a ...any) error {
		return &ParseError{name, line, fmt.Sprintf(format, a...)}
	}
	subLines := map[string]int{} // known-sub group → first line, checked at the end
	bareSeen := false
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dir, args := f[0], f[1:]
		if rs.Tool == "" && dir != "tool" {
			return nil, fail(n, "the first line must be \"tool %s\"", want)
		}
		switch dir {
		case "tool":
			if rs.Tool != "" {
				return nil, fail(n, "a second tool line")
			}
			if len(args) != 1 {
				return nil, fail(n, "tool takes one name")
			}
			if args[0] != want {
				return nil, fail(n, "tool %q in a file named %s (want %q)", args[0], filepath.Base(name), want)
			}
			if !validTool(args[0]) {
				return nil, fail(n, "bad tool name %q", args[0])
			}
			rs.Tool = args[0]
		case "bare":
			if bareSeen {
				return nil, fail(n, "a second bare line")
			}
			if len(args) != 1 || (args[0] != "allow" && args[0] != "block") {
				return nil, fail(n, "bare takes allow or block")
			}
			bareSeen, rs.bare = true, args[0] == "allow"
		case "value-flags", "bool-flags":
			if len(args) == 0 {
				return nil, fail(n, "%s lists no flags", dir)
			}
			for _, fl := range args {
				if !shortRE().MatchString(fl) && !longRE().MatchString(fl) {
					return nil, fail(n, "bad flag %q (want -x or --name)", fl)
				}
				if rs.valueFlags[fl] || rs.boolFlags[fl] {
					return nil, fail(n, "flag %s listed twice", fl)
				}
				if dir == "value-flags" {
					rs.valueFlags[fl] = true
				} else {
					rs.boolFlags[fl] = true
				}
			}
		case "allow", "known":
			if len(args) == 0 {
				return nil, fail(n, "%s lists no verbs", dir)
			}
			for _, v := range args {
				if err := checkWord(v); err != nil {
					return nil, fail(n, "%v", err)
				}
				if rs.allow[v] || rs.known[v] || rs.groups[v] != nil {
					return nil, fail(n, "verb %s listed twice", v)
				}
				if dir == "allow" {
					rs.allow[v] = true
				} else {
					rs.known[v] = true
				}
			}
		case "group", "known-sub":
			if len(args) == 0 {
				return nil, fail(n, "%s names no management command", dir)
			}
			g, subs := args[0], args[1:]
			if err := checkWord(g); err != nil {
				return nil, fail(n, "%v", err)
			}
			if dir == "group" {
				if rs.allow[g] || rs.known[g] {
					return nil, fail(n, "%s is a verb and a management command", g)
				}
				if rs.groups[g] == nil {
					rs.groups[g] = map[string]bool{}
				}
			} else {
				if len(subs) == 0 {
					return nil, fail(n, "known-sub %s lists no verbs", g)
				}
				if rs.knownSub[g] == nil {
					rs.knownSub[g] = map[string]bool{}
					subLines[g] = n
				}
			}
			for _, s := range subs {
				if err := checkWord(s); err != nil {
					return nil, fail(n, "%v", err)
				}
				if rs.groups[g][s] || rs.knownSub[g][s] {
					return nil, fail(n, "verb %s %s listed twice", g, s)
				}
				if dir == "group" {
					rs.groups[g][s] = true
				} else {
					rs.knownSub[g][s] = true
				}
			}
		default:
			return nil, fail(n, "unknown directive %q (want tool, bare, value-flags, bool-flags, allow, group, known or known-sub)", dir)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fail(0, "%v", err)
	}
	if rs.Tool == "" {
		return nil, fail(0, "no tool line")
	}
	for g, line := range subLines {
		if rs.groups[g] == nil {
			return nil, fail(line, "known-sub %s: %s is not declared by a group line", g, g)
		}
		for s := range rs.knownSub[g] {
			if rs.groups[g][s] {
				return nil, fail(line, "verb %s %s is both allowed and known", g, s)
			}
		}
	}
	return rs, nil
}

func checkWord(w string) error {
	if !wordRE().MatchString(w) {
		return fmt.Errorf("bad verb %q", w)
	}
	return nil
}

func validTool(name string) bool {
	return name != "ronly" && wordRE().MatchString(name) && !strings.HasSuffix(name, ext)
}

// Set is every tool's rules: the built-in ones and the extra directories'.
type Set struct {
	tools map[string]*Rules // nil: a built-in tool's, parsed when asked for
}

// Tool returns the rules for the tool argv0 names (by its base name).
func (s *Set) Tool(argv0 string) (*Rules, bool) {
	name := filepath.Base(argv0)
	r, ok := s.tools[name]
	if ok && r == nil {
		var err error
		if r, err = parseBuiltin(name); err != nil {
			panic(fmt.Sprintf("BUG: the built-in rules for %s do not parse: %v", name, err))
		}
		s.tools[name] = r
	}
	return r, ok
}

// Tools lists the tools the set has rules for, sorted.
func (s *Set) Tools() []string {
	names := make([]string, 0, len(s.tools))
	for n := range s.tools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtin lists the tools with built-in rules (docker, kubectl): the
// shims the sandbox puts first on PATH.
func Builtin() []string {
	ents, _ := fs.ReadDir(builtin, ".")
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok {
			names = append(names, n)
		}
	}
	return names
}

// ExtraDirs is the directories named by RONLY_EXTRA_RULES; relative and
// empty entries are ignored.
func ExtraDirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv(EnvExtraRules)) {
		if filepath.IsAbs(d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Load reads every *.rules file in extraDirs and names the built-in
// tools; an extra file overrides the built-in rules for its tool, and the
// first directory listing a tool wins. Any mistake in an extra file is an
// error (the built-in files are parsed when Tool asks for one; their
// tests parse them all).
func Load(extraDirs []string) (*Set, error) {
	s := &Set{tools: map[string]*Rules{}}
	for _, d := range extraDirs {
		files, err := filepath.Glob(filepath.Join(d, "*"+ext))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ext)
			if _, ok := s.tools[name]; ok {
				continue
			}
			r, err := parseFile(f)
			if err != nil {
				return nil, err
			}
			s.tools[name] = r
		}
	}
	// The built-in rules are part of this binary (their tests parse
	// them): a session's start needs only their names, the shim
	// itself parses its own (LoadTool).
	for _, name := range Builtin() {
		if _, ok := s.tools[name]; !ok {
			s.tools[name] = nil
		}
	}
	return s, nil
}

// LoadTool reads only the rules for the tool argv0 names: NAME.rules from
// the first of extraDirs that has one, else the built-in file. It returns
// nil, nil when no rules name the tool, so that a mistake in one tool's
// file does not stop another tool's shim.
func LoadTool(argv0 string, extraDirs []string) (*Rules, error) {
	name := filepath.Base(argv0)
	if !validTool(name) {
		return nil, nil
	}
	for _, d := range extraDirs {
		f := filepath.Join(d, name+ext)
		if _, err := os.Stat(f); err == nil {
			return parseFile(f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if _, err := fs.Stat(builtin, name+ext); err != nil {
		return nil, nil
	}
	return parseBuiltin(name)
}

func parseFile(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(path, f)
}

func parseBuiltin(name string) (*Rules, error) {
	f, err := builtin.Open(name + ext)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := Parse("shims/"+name+ext, f)
	if err != nil {
		return nil, fmt.Errorf("built-in rules: %w", err)
	}
	return r, nil
}

// Allowed reports whether the top-level verb may run.
func (r *Rules) Allowed(verb string) bool { return r.allow[verb] }

// AllowedSub reports whether verb of the management command group may run.
func (r *Rules) AllowedSub(group, verb string) bool { return r.groups[group][verb] }

// IsGroup reports whether verb is a management command, whose own verb
// decides.
func (r *Rules) IsGroup(verb string) bool { return r.groups[verb] != nil }

// Bare reports whether the tool may run with no verb at all.
func (r *Rules) Bare() bool { return r.bare }

// FlagArity says whether the global flag fl ("-n", "--namespace") is known
// and whether it takes a value.
func (r *Rules) FlagArity(fl string) (known, takesValue bool) {
	if r.valueFlags[fl] {
		return true, true
	}
	return r.boolFlags[fl], false
}
