package cli

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
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/kong"
	"github.com/pelletier/go-toml/v2/unstable"

	"ronly.dev/ronly/go/policy"
)

// policyFlagName is the flag that names the file. It is not a key.
const policyFlagName = "policy"

// maxPolicyFile bounds what ronly reads: a policy is a few lines.
const maxPolicyFile = 1 << 20

// policySchema is the set of keys a policy file may hold: the global flags
// of the run command, less help, version and --policy itself. Flags of a
// subcommand (the probe's) are not global and so are not keys.
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

// isPathFlag is true for the flags whose value is a path on the host: the
// placeholder the help shows (--rw=PATH, --extra-shims=DIR,
// --audit-log=FILE) is the schema's word for it. A relative path in the
// file is taken from the file's directory, as an include would be.
func isPathFlag(f *kong.Flag) bool {
	switch f.PlaceHolder {
	case "PATH", "DIR", "FILE":
		return true
	}
	return false
}

// PolicyFile is a loaded --policy: where each flag it set came from, to
// name the file's line instead of the flag in an error. The zero value is
// "no --policy".
type PolicyFile struct {
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
func withPolicyFile(parser *kong.Kong, args []string) ([]string, *PolicyFile, error) {
	app := parser.Model
	pf := &PolicyFile{}
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
			msg := err.Error() // a *kong.ParseError: its cause's text, one line
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
func (pf *PolicyFile) afterParse() error {
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
func (pf *PolicyFile) attribute(msg string) string {
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
	// dashes is the index of the "--" that ended the scan, -1 when a
	// word did (or the end); named is true when the default command's
	// name came before it.
	dashes int
	named  bool
}

// scanGlobalFlags reads args the way kong will, as far as the global
// flags go: up to "--", or the first word that is not a flag and not the
// default command's name (that word is the command, or a subcommand).
func scanGlobalFlags(app *kong.Application, args []string) (scanned, error) {
	sc := scanned{given: map[string]bool{}, dashes: -1}
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
			sc.dashes = i
			return sc, nil
		case a == defaultCmd:
			sc.named = true
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

// The TOML subset, on go-toml's parser: its AST keeps where each node lies
// in the file, so every entry and every error has a line. The library reads
// all of TOML; what a flag cannot hold (tables, dotted keys, floats, dates,
// multi-line strings, arrays of anything but strings) is refused here, and
// the library's errors are put in this file's words.

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

// tomlDoc is the file being read, for the lines of nodes and errors.
type tomlDoc struct {
	src []byte
	p   unstable.Parser
}

// parseTOML reads the subset: the entries in file order. A
// *policyFileError without a File is returned for a mistake.
func parseTOML(src []byte) ([]tomlEntry, error) {
	src = bytes.TrimPrefix(src, []byte("\ufeff"))
	d := &tomlDoc{src: src}
	if !utf8.Valid(src) {
		bad := 0
		for r, n := utf8.DecodeRune(src); r != utf8.RuneError || n != 1; r, n = utf8.DecodeRune(src[bad:]) {
			bad += n
		}
		return nil, d.fail(bad, "", "not UTF-8 text")
	}
	var out []tomlEntry
	seen := map[string]int{}
	end := 0 // where the last entry ended
	d.p.Reset(d.src)
	for d.p.NextExpression() {
		n := d.p.Expression()
		e, err := d.entry(n, skipBlank(d.src, end))
		if err != nil {
			return nil, err
		}
		if first, dup := seen[e.key]; dup {
			return nil, &policyFileError{Line: e.line, Key: e.key, Msg: fmt.Sprintf("duplicate key (first set on line %d)", first)}
		}
		seen[e.key] = e.line
		out = append(out, e)
		end = int(n.Raw.Offset + n.Raw.Length)
	}
	if err := d.p.Error(); err != nil {
		return nil, d.explain(err, skipBlank(d.src, end))
	}
	return out, nil
}

// entry reads one key = value that starts at start.
func (d *tomlDoc) entry(n *unstable.Node, start int) (tomlEntry, error) {
	e := tomlEntry{line: d.line(start)}
	if n.Kind != unstable.KeyValue { // [table] or [[array of tables]]
		return e, d.noTables(start)
	}
	key := n.Key()
	key.Next()
	e.key = string(key.Node().Data)
	if key.Next() {
		return e, d.fail(start, e.key, "dotted keys are not supported")
	}
	v, err := d.value(n.Value(), e.key, start)
	e.val = v
	return e, err
}

// value converts a value node; at is on the value's first line, for the
// errors about an array (which has no range of its own in the AST).
func (d *tomlDoc) value(n *unstable.Node, key string, at int) (tomlValue, error) {
	raw := string(d.p.Raw(n.Raw))
	switch n.Kind {
	case unstable.String:
		if strings.HasPrefix(raw, `"""`) || strings.HasPrefix(raw, "'''") {
			return tomlValue{}, d.fail(at, key, "multi-line strings are not supported")
		}
		return tomlValue{kind: tomlString, s: string(n.Data)}, nil
	case unstable.Bool:
		return tomlValue{kind: tomlBool, b: raw == "true"}, nil
	case unstable.Integer:
		// The parser checked the syntax (0x, 0o, 0b, _ between digits),
		// not the range.
		i, err := strconv.ParseInt(strings.ReplaceAll(raw, "_", ""), 0, 64)
		if err != nil {
			return tomlValue{}, d.fail(at, key, "%s: integer out of range", raw)
		}
		return tomlValue{kind: tomlInt, n: i}, nil
	case unstable.Array:
		v := tomlValue{kind: tomlArray, arr: []string{}}
		for it := n.Children(); it.Next(); {
			c := it.Node()
			if c.Kind != unstable.String {
				return v, d.fail(nodeStart(c, at), key, "an array holds only strings")
			}
			s, err := d.value(c, key, int(c.Raw.Offset))
			if err != nil {
				return v, err
			}
			v.arr = append(v.arr, s.s)
			v.lines = append(v.lines, d.line(int(c.Raw.Offset)))
		}
		return v, nil
	case unstable.InlineTable:
		return tomlValue{}, d.fail(at, key, "inline tables are not supported: a policy file holds only top-level keys, as flags do")
	}
	return tomlValue{}, d.fail(at, key, "%s: floats and dates are not supported; quote it to pass it as a string: %q", raw, raw)
}

// nodeStart is where n starts: an array has no range, its first element does.
func nodeStart(n *unstable.Node, fallback int) int {
	for ; n != nil; n = n.Child() {
		if n.Raw.Length > 0 {
			return int(n.Raw.Offset)
		}
	}
	return fallback
}

// explain puts the parser's error in this file's words, at the line of its
// highlight and naming the key of the entry that starts at start.
func (d *tomlDoc) explain(err error, start int) error {
	var pe *unstable.ParserError
	if !errors.As(err, &pe) {
		return err
	}
	at := int(d.p.Range(pe.Highlight).Offset)
	if at < start { // in a comment or a line end between entries
		return d.fail(at, "", "%s", pe.Message)
	}
	if start < len(d.src) && d.src[start] == '[' {
		return d.noTables(start)
	}
	key, eq := d.keyAt(start)
	val := -1 // where the value starts
	if eq >= 0 && eq < len(d.src) && d.src[eq] == '=' {
		for val = eq + 1; val < len(d.src) && (d.src[val] == ' ' || d.src[val] == '\t'); val++ {
		}
	}
	msg := pe.Message
	switch {
	case strings.HasPrefix(msg, "expected '=' after key") && eq >= 0:
		msg = fmt.Sprintf("expected \"=\" after the key, found %q", d.found(eq))
	case strings.HasPrefix(msg, "invalid character at start of key"):
		msg = fmt.Sprintf("expected a key, found %q", d.found(at))
	case strings.HasSuffix(msg, "strings cannot have new lines"), strings.HasPrefix(msg, "unterminated"):
		msg = "unterminated string"
	case strings.HasPrefix(msg, "invalid escape character"):
		msg = fmt.Sprintf(`unknown escape %s in a "string" (use a 'literal string' for backslashes)`, pe.Highlight)
	case strings.HasSuffix(msg, "strings cannot have control characters"):
		msg = fmt.Sprintf("control character %q in a string: write it as an escape", pe.Highlight[0])
	case strings.HasPrefix(msg, "expected newline but got"):
		msg = fmt.Sprintf("unexpected %q after the value", d.found(at))
	case msg == "array is incomplete" && val >= 0:
		msg, at = "unterminated array", val
	case strings.HasPrefix(msg, "expected ',' or ']'"):
		msg = fmt.Sprintf(`expected "," or "]" in the array, found %q`, d.found(at))
	case strings.HasPrefix(msg, "expected value but got"):
		msg = fmt.Sprintf("an array holds only strings, found %q", d.found(at))
	case val >= 0 && slices.ContainsFunc(badWord, func(p string) bool { return strings.HasPrefix(msg, p) }):
		w := max(at, val) // back to the start of the word
		for w > val && !strings.ContainsRune(" \t\r\n[,", rune(d.src[w-1])) {
			w--
		}
		word := d.restOfLine(w)
		if i := strings.IndexAny(word, " \t#,]"); i >= 0 {
			word = word[:i]
		}
		msg = `expected a value after "="`
		if word != "" {
			msg = fmt.Sprintf(`%s is not a value: quote a string (%q), or use an integer, true, false or ["an", "array"]`, word, word)
		}
	}
	return d.fail(at, key, "%s", msg)
}

// badWord are the parser's errors about a bare word where a value goes.
var badWord = []string{"strings must be quoted", "unexpected character", "expected value, not", "expected keyword",
	"expected number", "expected digit", "radix prefix", "sign is not allowed", "integers cannot", "number must",
	"decimal point", "exponent"}

// keyAt reads the key of the entry that starts at start, the way the
// parser reads a table's name: "[" before it makes a header whose name ends
// where "=" should be. It returns the key and that place, or "" and -1.
func (d *tomlDoc) keyAt(start int) (key string, eq int) {
	var p unstable.Parser
	hdr := append(append([]byte("["), d.src[start:]...), '\n')
	p.Reset(hdr)
	p.NextExpression()
	var pe *unstable.ParserError
	if !errors.As(p.Error(), &pe) || !strings.HasPrefix(pe.Message, "expected ']'") {
		return "", -1
	}
	end := int(p.Range(pe.Highlight).Offset)
	p.Reset(append(hdr[:end:end], ']'))
	if !p.NextExpression() {
		return "", -1
	}
	k := p.Expression().Key()
	k.Next()
	return string(k.Node().Data), start + end - 1
}

func (d *tomlDoc) noTables(start int) error {
	return d.fail(start, "", "%s: tables are not supported: a policy file holds only top-level keys, as flags do", strings.TrimSpace(d.restOfLine(start)))
}

func (d *tomlDoc) fail(at int, key, format string, args ...any) error {
	return &policyFileError{Line: d.line(at), Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (d *tomlDoc) line(at int) int { return 1 + bytes.Count(d.src[:at], []byte("\n")) }

func (d *tomlDoc) restOfLine(at int) string {
	s := d.src[at:]
	if i := bytes.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// found is what is left of the line, for an error.
func (d *tomlDoc) found(at int) string {
	if s := d.restOfLine(at); s != "" {
		return s
	}
	return "end of line"
}

// skipBlank skips what lies between entries: blanks, comments, line ends.
func skipBlank(src []byte, i int) int {
	for i < len(src) {
		switch src[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}
