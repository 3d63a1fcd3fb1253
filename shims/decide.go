package shims

import (
	"strconv"
	"strings"
)

// Decision is what a shim does with one command line.
type Decision struct {
	// Allowed: run the real tool with the arguments untouched.
	Allowed bool
	// Verb is what decided, as given, for messages: "ps", "container ls",
	// "--weird", "--"; quoted when it is not a plain word. It is empty
	// when the command has no verb.
	Verb string
	// Label is Verb's bounded name for reports: a verb or "group verb"
	// pair the rules know, else "other".
	Label string
}

const other = "other"

// Decide finds the verb in args (the arguments after the tool's name) the
// way the tool's own flag parser would, and allows it only if the rules
// do. It fails closed: whatever it cannot parse for certain is blocked.
//
// Global flags before the verb are skipped when the rules know them, in
// each of pflag's forms: --flag value, --flag=value, -f value, -fvalue,
// -f=value and clusters of one-letter flags (-Dl=debug). Blocked before
// the verb: an unknown flag (its value, if it takes one, could be taken
// for the verb or hide it), "--" (docker would run the word after it as
// the verb), a lone "-", and a cluster whose last flag takes the next
// argument as its value (-Dl debug: pflag and cobra's command finder
// disagree on what the verb is). Between a management command and its
// verb no flag at all is accepted. After the verb nothing is looked at.
func (r *Rules) Decide(args []string) Decision {
	i, bad := r.skipFlags(args, 0)
	if bad != "" {
		return Decision{Verb: bad, Label: other}
	}
	if i == len(args) {
		return Decision{Allowed: r.bare}
	}
	verb := args[i]
	if !r.IsGroup(verb) {
		return Decision{Allowed: r.allow[verb], Verb: show(verb), Label: r.label(verb)}
	}
	i++
	if i == len(args) {
		return Decision{Allowed: r.bare, Verb: verb, Label: verb}
	}
	sub := args[i]
	if strings.HasPrefix(sub, "-") || sub == "" {
		return Decision{Verb: verb + " " + show(sub), Label: other}
	}
	label := other
	if r.groups[verb][sub] || r.knownSub[verb][sub] {
		label = verb + " " + sub
	}
	return Decision{Allowed: r.groups[verb][sub], Verb: verb + " " + show(sub), Label: label}
}

func (r *Rules) label(verb string) string {
	if r.allow[verb] || r.known[verb] {
		return verb
	}
	return other
}

// skipFlags skips the known global flags from args[i] and returns the
// index of the first argument that is not one (len(args) if none is
// left), or what blocks the command.
func (r *Rules) skipFlags(args []string, i int) (int, string) {
	for i < len(args) {
		a := args[i]
		switch {
		case a == "--" || a == "-":
			return i, a
		case strings.HasPrefix(a, "--"):
			name, _, attached := strings.Cut(a, "=")
			known, value := r.FlagArity(name)
			if !known {
				return i, show(name)
			}
			i++
			if value && !attached {
				i++ // its value, whatever it looks like
			}
		case strings.HasPrefix(a, "-"):
			next, bad := r.skipShort(a)
			if bad != "" {
				return i, bad
			}
			i++
			if next {
				i++
			}
		default:
			return i, ""
		}
	}
	return len(args), ""
}

// skipShort reads one cluster of one-letter flags ("-Dl=debug") the way
// pflag does, and says whether its last flag takes the next argument.
func (r *Rules) skipShort(a string) (takesNext bool, bad string) {
	for j := 1; j < len(a); j++ {
		fl := "-" + a[j:j+1]
		known, value := r.FlagArity(fl)
		switch {
		case !known:
			return false, show(fl)
		case value && j+1 < len(a):
			return false, "" // -nprod, -n=prod
		case value && j > 1:
			return false, show(a) // -Dl debug: see Decide
		case value:
			return true, ""
		case j+2 < len(a) && a[j+1] == '=':
			return false, "" // -D=false (pflag reads "-D=" as -D and a flag "=")
		}
	}
	return false, ""
}

// show is w for a message: as it is when it is plain, else quoted.
func show(w string) string {
	if w != "" && plainRE().MatchString(w) {
		return w
	}
	return strconv.Quote(w)
}
