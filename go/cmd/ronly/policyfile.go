package main

// A policy file (--policy FILE) says in TOML what the flags say on the
// command line, and with the same schema: its keys are the long names of
// the global flags, read from the kong model, so a flag added to CLI is a
// key at once and the two cannot drift. The file becomes argv — one
// --key=value per entry, ahead of the user's own arguments — and kong
// parses both with one grammar, so every type, default and conflict rule is
// kong's. A flag the user gives on the command line replaces the file's
// key entirely: a scalar, a bool, every element of a list (--rw, --writable,
// --extra-shims), and the other members of an xor group (--privileged
// replaces the file's rootless = true).
//
// The format is a subset of TOML: comments, key = value with a "basic" or
// 'literal' string, an integer, true or false, or an array of strings
// (which may span lines). No tables: a policy is one flat set of flags.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/go/policy"
)

// policyFlagName is the flag that names the file. It is not a key.
const policyFlagName = "policy"

// maxPolicyFile bounds what ronly reads: a policy is a few lines.
const maxPolicyFile = 1 << 20

// pathPlaceholders mark the flags whose value is a path on the host: the
// placeholder the help shows (--rw=PATH, --extra-shims=DIR,
// --audit-log=FILE) is the schema's word for it. A relative path in the
// file is taken from the file's directory, as an include would be.
var pathPlaceholders = map[string]bool{"PATH": true, "DIR": true, "FILE": true}

// policySchema is the set of keys a policy file may hold: the global flags
// of the run command, less help, version and --policy itself. Flags of a
// subcommand (the exporter's) are not global and so are not keys.
func policySchema(app *kong.Application) map[string]*kong.Flag {
	keys := map[string]*kong.Flag{}
	for _, f := range app.Flags {
		if f == app.HelpFlag || f.Name == policyFlagName || isVersionFlag(f) {
			continue
		}
		keys[f.Name] = f
	}
	return keys
}

func isVersionFlag(f *kong.Flag) bool {
	return f.Target.IsValid() && f.Target.Type() == reflect.TypeOf(kong.VersionFlag(false))
}

func isPathFlag(f *kong.Flag) bool { return pathPlaceholders[f.PlaceHolder] }

// policyFile is a loaded --policy: where each flag it set came from, to
// name the file's line instead of the flag in an error. The zero value is
// "no --policy".
type policyFile struct {
	path    string     // as the user gave it
	flag    *kong.Flag // --policy itself, to check where kong found it
	entries map[string]*fileEntry
}

// fileEntry is one key that reached argv (the user did not override it).
type fileEntry struct {
	key   string
	line  int
	lines map[string]int // an array element's own line, by value as passed
}

// policyFileError is a mistake in the file, at a line and, once it is
// known, a key.
type policyFileError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *policyFileError) Error() string {
	s := fmt.Sprintf("--policy %s:%d: ", e.File, e.Line)
	if e.Key != "" {
		s += fmt.Sprintf("key %q: ", e.Key)
	}
	return s + e.Msg
}

// withPolicyFile finds --policy among the global flags in args, reads the
// file, checks it on its own with the parser, and returns the argv kong
// should parse: the file's flags, then args. Without --policy it returns
// args as they are.
func withPolicyFile(parser *kong.Kong, args []string) ([]string, *policyFile, error) {
	app := parser.Model
	pf := &policyFile{}
	for _, f := range app.Flags {
		if f.Name == policyFlagName {
			pf.flag = f
		}
	}
	if pf.flag == nil {
		return args, pf, nil
	}
	sc, err := scanGlobalFlags(app, args)
	if err != nil || !sc.hasPolicy {
		return args, pf, err
	}
	pf.path = sc.policy
	if pf.path == "" {
		return nil, pf, &policy.FlagError{Flag: "--" + policyFlagName, Reason: "needs a FILE"}
	}
	data, err := readPolicyFile(pf.path)
	if err != nil {
		return nil, pf, err
	}
	doc, err := parseTOML(data)
	if err != nil {
		var pe *policyFileError
		if errors.As(err, &pe) {
			pe.File = pf.path
		}
		return nil, pf, err
	}
	dir, err := filepath.Abs(filepath.Dir(pf.path))
	if err != nil {
		return nil, pf, &policy.FlagError{Flag: "--" + policyFlagName, Value: pf.path, Reason: err.Error()}
	}
	schema := policySchema(app)
	var all []flagArgs
	for _, e := range doc {
		fa, err := entryArgs(schema, e, dir)
		if err != nil {
			return nil, pf, &policyFileError{File: pf.path, Line: e.line, Key: e.key, Msg: err.Error()}
		}
		all = append(all, fa)
	}
	if err := checkFileArgs(parser, pf.path, all); err != nil {
		return nil, pf, err
	}
	// The command line wins: a key whose flag, or a peer in its xor
	// group, the user gave is left out whole.
	var out []string
	pf.entries = map[string]*fileEntry{}
	for _, fa := range all {
		if overridden(schema[fa.entry.key], app, sc.given) {
			continue
		}
		out = append(out, fa.args...)
		pf.entries[fa.entry.key] = &fileEntry{key: fa.entry.key, line: fa.entry.line, lines: fa.lines}
	}
	return append(out, args...), pf, nil
}

func readPolicyFile(path string) ([]byte, error) {
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &policy.FlagError{Flag: "--" + policyFlagName, Value: path, Reason: err.Error()}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return nil, fail(err)
	}
	if len(data) > maxPolicyFile {
		return nil, fail(fmt.Errorf("larger than %d bytes", maxPolicyFile))
	}
	return data, nil
}

// flagArgs is one entry of the file as argv.
type flagArgs struct {
	entry tomlEntry
	args  []string
	lines map[string]int
}

// entryArgs checks an entry against the schema and renders it as flags.
func entryArgs(schema map[string]*kong.Flag, e tomlEntry, dir string) (flagArgs, error) {
	fa := flagArgs{entry: e}
	f := schema[e.key]
	if f == nil {
		msg := "not a ronly flag"
		if s := suggestKey(e.key, schema); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return fa, errors.New(msg)
	}
	flag := "--" + f.Name
	value := func(s string) (string, error) {
		if isPathFlag(f) {
			return resolvePath(s, dir)
		}
		return s, nil
	}
	v := e.val
	switch {
	case f.IsBool():
		if v.kind != tomlBool {
			return fa, fmt.Errorf("expects true or false, not %s", v.kind)
		}
		switch {
		case v.b:
			fa.args = []string{flag}
		case f.HasDefault && f.Default == "true":
			fa.args = []string{flag + "=false"}
		}
		// false is the default: nothing to say, and saying it would
		// count as "set" against the flag's xor peers.
	case f.IsSlice():
		if v.kind != tomlArray {
			return fa, fmt.Errorf("expects an array of strings, not %s: %s = [%q]", v.kind, e.key, v.text())
		}
		fa.lines = map[string]int{}
		for i, s := range v.arr {
			if f.Tag.Sep != -1 && strings.ContainsRune(s, f.Tag.Sep) {
				return fa, fmt.Errorf("value %q: contains %q, which separates values of this flag", s, f.Tag.Sep)
			}
			s, err := value(s)
			if err != nil {
				return fa, err
			}
			fa.args = append(fa.args, flag+"="+s)
			fa.lines[s] = v.lines[i]
		}
	case f.IsMap():
		return fa, errors.New("map flags cannot be set in a policy file")
	default:
		switch {
		case isNumber(f.Target.Type()):
			if v.kind != tomlInt {
				return fa, fmt.Errorf("expects an integer, not %s", v.kind)
			}
			fa.args = []string{flag + "=" + strconv.FormatInt(v.n, 10)}
		default: // a string, or a type kong parses from text (a duration)
			if v.kind != tomlString {
				example := v.text()
				if f.Target.Kind() != reflect.String && f.PlaceHolder != "" {
					example = f.PlaceHolder // "90" is no duration
				}
				return fa, fmt.Errorf("expects a string, not %s: %s = %q", v.kind, e.key, example)
			}
			s, err := value(v.s)
			if err != nil {
				return fa, err
			}
			fa.args = []string{flag + "=" + s}
		}
	}
	return fa, nil
}

// isNumber is a plain int or float; a named type such as time.Duration
// is spelled as text ("90s") and stays a string.
func isNumber(t reflect.Type) bool {
	if t.PkgPath() != "" {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// resolvePath takes a relative path from the policy file's directory. ""
// and "-" (stderr, for --audit-log) are not paths.
func resolvePath(s, dir string) (string, error) {
	switch {
	case s == "" || s == "-" || filepath.IsAbs(s):
		return s, nil
	case s == "~" || strings.HasPrefix(s, "~/"):
		return "", fmt.Errorf("value %q: ~ is not expanded in a policy file: write the absolute path", s)
	}
	return filepath.Join(dir, s), nil
}

// checkFileArgs parses the file's flags alone, one more entry at a time,
// so a rule kong enforces (a type, an xor group) is blamed on the entry
// that broke it and not on the command line.
func checkFileArgs(parser *kong.Kong, file string, all []flagArgs) (err error) {
	defer clearSet(parser.Model.Node) // the real parse starts afresh
	var args []string
	for _, fa := range all {
		if len(fa.args) == 0 {
			continue
		}
		args = append(args, fa.args...)
		clearSet(parser.Model.Node)
		if _, err := parser.Parse(args); err != nil {
			msg := oneLine(err)
			msg = strings.TrimPrefix(msg, "--"+fa.entry.key+": ")
			return &policyFileError{File: file, Line: fa.entry.line, Key: fa.entry.key, Msg: msg}
		}
	}
	return nil
}

// clearSet forgets which values an earlier Parse set: kong keeps Value.Set
// across parses with one parser, and it counts in xor and required checks.
func clearSet(n *kong.Node) {
	for _, f := range n.Flags {
		f.Set = false
	}
	for _, p := range n.Positional {
		p.Set = false
	}
	if n.Argument != nil {
		n.Argument.Set = false
	}
	for _, c := range n.Children {
		clearSet(c)
	}
}

// overridden says whether the command line sets f, or a flag that kong
// would not take together with f.
func overridden(f *kong.Flag, app *kong.Application, given map[string]bool) bool {
	if given[f.Name] {
		return true
	}
	groups := append(append([]string{}, f.Xor...), f.LastWins...)
	if len(groups) == 0 {
		return false
	}
	for _, g := range app.Flags {
		if !given[g.Name] {
			continue
		}
		for _, x := range append(append([]string{}, g.Xor...), g.LastWins...) {
			for _, y := range groups {
				if x == y {
					return true
				}
			}
		}
	}
	return false
}

// afterParse checks that kong found --policy where the scan did: a
// --policy after a subcommand name would otherwise be parsed and ignored.
func (pf *policyFile) afterParse() error {
	if pf.flag == nil {
		return nil
	}
	if got := pf.flag.Target.String(); got != pf.path {
		return &policy.FlagError{Flag: "--" + policyFlagName, Value: got,
			Reason: "must come before the command: ronly --policy FILE [OPTIONS] [COMMAND...]"}
	}
	return nil
}

// attribute rewrites an error about a flag whose value came from the file
// (`--tmpfs-size "banana": not a size`) to name the file, the line and the
// key instead. Other errors pass unchanged.
func (pf *policyFile) attribute(msg string) string {
	if pf == nil || len(pf.entries) == 0 {
		return msg
	}
	for key, e := range pf.entries {
		rest, ok := strings.CutPrefix(msg, "--"+key)
		if !ok {
			continue
		}
		line := e.line
		switch {
		case strings.HasPrefix(rest, ": "):
			rest = rest[2:]
		case strings.HasPrefix(rest, ` "`):
			// --flag "value": reason, as policy.FlagError writes it.
			if v, err := strconv.QuotedPrefix(rest[1:]); err == nil {
				if s, err := strconv.Unquote(v); err == nil {
					if l, ok := e.lines[s]; ok {
						line = l
					}
				}
				rest = "value " + rest[1:]
			}
		default:
			continue
		}
		return (&policyFileError{File: pf.path, Line: line, Key: key, Msg: rest}).Error()
	}
	return msg
}

// scanned is what the global flags ahead of the command say.
type scanned struct {
	policy    string
	hasPolicy bool
	given     map[string]bool // flag names the user set
}

// scanGlobalFlags reads args the way kong will, as far as the global
// flags go: up to "--", or the first word that is not a flag and not the
// default command's name (that word is the command, or a subcommand).
func scanGlobalFlags(app *kong.Application, args []string) (scanned, error) {
	sc := scanned{given: map[string]bool{}}
	long := map[string]*kong.Flag{}
	short := map[rune]*kong.Flag{}
	for _, f := range app.Flags {
		long[f.Name] = f
		for _, a := range f.Aliases {
			long[a] = f
		}
		if f.Short != 0 {
			short[f.Short] = f
		}
		switch neg := f.Tag.Negatable; neg {
		case "":
		case "_":
			long["no-"+f.Name] = f
		default:
			long[neg] = f
		}
	}
	defaultCmd := ""
	if app.DefaultCmd != nil {
		defaultCmd = app.DefaultCmd.Name
	}
	takesValue := func(f *kong.Flag) bool { return !f.IsBool() && !f.IsCounter() }
	see := func(f *kong.Flag, value string) error {
		sc.given[f.Name] = true
		if f.Name != policyFlagName {
			return nil
		}
		if sc.hasPolicy {
			return &policy.FlagError{Flag: "--" + policyFlagName, Value: value, Reason: "given twice: one policy file at a time"}
		}
		sc.policy, sc.hasPolicy = value, true
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return sc, nil
		case a == defaultCmd:
			continue
		case strings.HasPrefix(a, "--"):
			name, value, hasValue := strings.Cut(a[2:], "=")
			f := long[name]
			if f == nil {
				continue // kong will say so
			}
			if !hasValue && takesValue(f) && i+1 < len(args) {
				i++
				value = args[i]
			}
			if err := see(f, value); err != nil {
				return sc, err
			}
		case len(a) > 1 && a[0] == '-':
			for j, r := range a[1:] {
				f := short[r]
				if f == nil {
					break
				}
				if takesValue(f) {
					value := a[1+j+utf8.RuneLen(r):]
					if value == "" && i+1 < len(args) {
						i++
						value = args[i]
					}
					if err := see(f, value); err != nil {
						return sc, err
					}
					break
				}
				if err := see(f, ""); err != nil {
					return sc, err
				}
			}
		default:
			return sc, nil
		}
	}
	return sc, nil
}

// suggestKey finds the valid key closest to a mistyped one.
func suggestKey(key string, schema map[string]*kong.Flag) string {
	norm := strings.ReplaceAll(strings.TrimLeft(strings.ToLower(key), "-"), "_", "-")
	if schema[norm] != nil {
		return norm
	}
	names := make([]string, 0, len(schema))
	for n := range schema {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestD := "", 1<<30
	for _, n := range names {
		d := editDistance(norm, n)
		if d < bestD {
			best, bestD = n, d
		}
	}
	if bestD <= 2 || bestD <= len(norm)/3 {
		return best
	}
	for _, n := range names {
		if len(norm) >= 3 && (strings.Contains(n, norm) || strings.Contains(norm, n)) {
			return n
		}
	}
	return ""
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// The TOML subset.

type tomlKind int

const (
	tomlString tomlKind = iota
	tomlInt
	tomlBool
	tomlArray
)

func (k tomlKind) String() string {
	return [...]string{"a string", "an integer", "a boolean", "an array"}[k]
}

type tomlValue struct {
	kind  tomlKind
	s     string
	n     int64
	b     bool
	arr   []string
	lines []int // each array element's line
}

// text is the value as a flag would spell it, for a hint.
func (v tomlValue) text() string {
	switch v.kind {
	case tomlInt:
		return strconv.FormatInt(v.n, 10)
	case tomlBool:
		return strconv.FormatBool(v.b)
	case tomlArray:
		return strings.Join(v.arr, ",")
	}
	return v.s
}

type tomlEntry struct {
	key  string
	line int
	val  tomlValue
}

type tomlParser struct {
	src  []byte
	pos  int
	line int
	key  string // the entry being read, for errors
}

func (p *tomlParser) fail(format string, args ...any) error {
	return &policyFileError{Line: p.line, Key: p.key, Msg: fmt.Sprintf(format, args...)}
}

func (p *tomlParser) eof() bool { return p.pos >= len(p.src) }

func (p *tomlParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *tomlParser) skipSpace() {
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// skipComment skips a comment, if one starts here, up to the newline.
func (p *tomlParser) skipComment() {
	if p.peek() == '#' {
		for !p.eof() && p.src[p.pos] != '\n' {
			p.pos++
		}
	}
}

// newline consumes "\n" or "\r\n".
func (p *tomlParser) newline() bool {
	if p.peek() == '\n' {
		p.pos++
		p.line++
		return true
	}
	if p.peek() == '\r' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '\n' {
		p.pos += 2
		p.line++
		return true
	}
	return false
}

// parseTOML reads the subset: the entries in file order. A
// *policyFileError without a File is returned for a mistake.
func parseTOML(src []byte) ([]tomlEntry, error) {
	p := &tomlParser{src: bytes.TrimPrefix(src, []byte("\ufeff")), line: 1}
	if !utf8.Valid(p.src) {
		bad := 0
		for bad < len(p.src) {
			r, size := utf8.DecodeRune(p.src[bad:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			bad += size
		}
		p.line += bytes.Count(p.src[:bad], []byte("\n"))
		return nil, p.fail("not UTF-8 text")
	}
	var out []tomlEntry
	seen := map[string]int{}
	for {
		p.key = ""
		p.skipSpace()
		p.skipComment()
		if p.eof() {
			return out, nil
		}
		if p.newline() {
			continue
		}
		if p.peek() == '[' {
			end := bytes.IndexAny(p.src[p.pos:], "\r\n")
			if end < 0 {
				end = len(p.src) - p.pos
			}
			return nil, p.fail("%s: tables are not supported: a policy file holds only top-level keys, as flags do", strings.TrimSpace(string(p.src[p.pos:p.pos+end])))
		}
		e, err := p.entry()
		if err != nil {
			return nil, err
		}
		if first, dup := seen[e.key]; dup {
			p.line, p.key = e.line, e.key
			return nil, p.fail("duplicate key (first set on line %d)", first)
		}
		seen[e.key] = e.line
		out = append(out, e)
	}
}

// entry reads key = value and the end of its line.
func (p *tomlParser) entry() (tomlEntry, error) {
	e := tomlEntry{line: p.line}
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		k, err := p.str()
		if err != nil {
			return e, err
		}
		e.key = k
	case isBareKeyChar(c):
		start := p.pos
		for !p.eof() && isBareKeyChar(p.src[p.pos]) {
			p.pos++
		}
		e.key = string(p.src[start:p.pos])
	default:
		return e, p.fail("expected a key, found %q", p.rest())
	}
	p.key = e.key
	p.skipSpace()
	switch p.peek() {
	case '=':
		p.pos++
	case '.':
		return e, p.fail("dotted keys are not supported")
	default:
		return e, p.fail("expected \"=\" after the key, found %q", p.rest())
	}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return e, err
	}
	e.val = v
	p.skipSpace()
	p.skipComment()
	if !p.eof() && !p.newline() {
		return e, p.fail("unexpected %q after the value", p.rest())
	}
	return e, nil
}

// rest is what is left of the line, for an error.
func (p *tomlParser) rest() string {
	end := bytes.IndexAny(p.src[p.pos:], "\r\n")
	if end < 0 {
		end = len(p.src) - p.pos
	}
	s := string(p.src[p.pos : p.pos+end])
	if s == "" {
		return "end of line"
	}
	return s
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func (p *tomlParser) value() (tomlValue, error) {
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		s, err := p.str()
		return tomlValue{kind: tomlString, s: s}, err
	case c == '[':
		return p.array()
	case p.eof() || c == '\n' || c == '\r' || c == '#':
		return tomlValue{}, p.fail("expected a value after \"=\"")
	}
	start := p.pos
	for !p.eof() && !strings.ContainsRune(" \t\r\n#,]", rune(p.src[p.pos])) {
		p.pos++
	}
	word := string(p.src[start:p.pos])
	if word == "" {
		return tomlValue{}, p.fail("expected a value, found %q", p.rest())
	}
	switch word {
	case "true", "false":
		return tomlValue{kind: tomlBool, b: word == "true"}, nil
	}
	if n, ok := parseTOMLInt(word); ok {
		return tomlValue{kind: tomlInt, n: n}, nil
	}
	if word != "" && (word[0] >= '0' && word[0] <= '9' || word[0] == '+' || word[0] == '-') {
		if strings.ContainsAny(word, ".eE:") || strings.HasSuffix(word, "inf") || strings.HasSuffix(word, "nan") {
			return tomlValue{}, p.fail("%s: floats and dates are not supported; quote it to pass it as a string: %q", word, word)
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(word, "_", ""), 0, 64); err != nil && errors.Is(err, strconv.ErrRange) {
			return tomlValue{}, p.fail("%s: integer out of range", word)
		}
	}
	return tomlValue{}, p.fail("%s is not a value: quote a string (%q), or use an integer, true, false or [\"an\", \"array\"]", word, word)
}

// parseTOMLInt reads a decimal integer, with _ between digits.
func parseTOMLInt(w string) (int64, bool) {
	s := strings.TrimLeft(w, "+-")
	if len(w)-len(s) > 1 || s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") ||
		(len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '_' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(w, "_", ""), 10, 64)
	return n, err == nil
}

// str reads a "basic" or 'literal' single-line string.
func (p *tomlParser) str() (string, error) {
	q := p.src[p.pos]
	if bytes.HasPrefix(p.src[p.pos:], []byte{q, q, q}) {
		return "", p.fail("multi-line strings are not supported")
	}
	p.pos++
	var b strings.Builder
	for {
		if p.eof() || p.peek() == '\n' || p.peek() == '\r' {
			return "", p.fail("unterminated string")
		}
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\\' && q == '"':
			p.pos++
			if err := p.escape(&b); err != nil {
				return "", err
			}
			continue
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", p.fail("control character %q in a string: write it as an escape", c)
		}
		b.WriteByte(c)
		p.pos++
	}
}

func (p *tomlParser) escape(b *strings.Builder) error {
	if p.eof() {
		return p.fail("unterminated string")
	}
	c := p.src[p.pos]
	p.pos++
	switch c {
	case '"', '\\':
		b.WriteByte(c)
	case 'n':
		b.WriteByte('\n')
	case 't':
		b.WriteByte('\t')
	case 'r':
		b.WriteByte('\r')
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'e':
		b.WriteByte(0x1b)
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.src) {
			return p.fail("short \\%c escape", c)
		}
		r, err := strconv.ParseUint(string(p.src[p.pos:p.pos+n]), 16, 32)
		if err != nil || !utf8.ValidRune(rune(r)) {
			return p.fail("bad \\%c escape %q", c, p.src[p.pos:p.pos+n])
		}
		b.WriteRune(rune(r))
		p.pos += n
	default:
		return p.fail("unknown escape \\%c in a \"string\" (use a 'literal string' for backslashes)", c)
	}
	return nil
}

// array reads an array of strings; it may span lines, hold comments and
// end with a comma.
func (p *tomlParser) array() (tomlValue, error) {
	v := tomlValue{kind: tomlArray, arr: []string{}}
	start := p.line
	p.pos++ // [
	blank := func() {
		for {
			p.skipSpace()
			p.skipComment()
			if !p.newline() {
				return
			}
		}
	}
	for {
		blank()
		if p.eof() {
			p.line = start
			return v, p.fail("unterminated array")
		}
		if p.peek() == ']' {
			p.pos++
			return v, nil
		}
		if c := p.peek(); c != '"' && c != '\'' {
			if c == '[' || c == ',' {
				return v, p.fail("an array holds only strings, found %q", p.rest())
			}
			if _, err := p.value(); err != nil {
				return v, err
			}
			return v, p.fail("an array holds only strings")
		}
		line := p.line
		s, err := p.str()
		if err != nil {
			return v, err
		}
		v.arr = append(v.arr, s)
		v.lines = append(v.lines, line)
		blank()
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
		default:
			if p.eof() {
				p.line = start
				return v, p.fail("unterminated array")
			}
			return v, p.fail("expected \",\" or \"]\" in the array, found %q", p.rest())
		}
	}
}
