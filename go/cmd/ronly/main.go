// Command ronly runs a shell or command in a read-only sandbox: the whole
// host is readable, nothing outside the scratch space can be changed, and
// the kernel is what says no.
//
// One binary plays two parts, told apart before any flag is parsed: a
// shimmed tool inside a sandbox (docker, kubectl…: argv[0] names it), and
// otherwise the command line: `ronly [OPTIONS] [COMMAND...]` and its
// subcommands. Inside a session the C init (package cinit) builds the
// sandbox and execs the command itself, before this runtime ever starts.
// Only this package prints or exits.
package main

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/cli"
	"ronly.dev/ronly/go/sandbox"
	cinit "ronly.dev/ronly/init"
)

// version is stamped at build time (Bazel x_defs, or -ldflags -X).
var version = "0.0.0-dev"

// started is when ronly's own code started: the origin of a session's
// timeline (initialised with the package, just before main runs).
var started = time.Now()

// exitRonly is the exit code of ronly itself failing (records.h); 126 and
// 127, the command cannot be executed or was not found, the C init gives
// as it execs the command; anything else is the command's.
const exitRonly = cinit.ExitRonly

func main() {
	if cinit.Ran() {
		// The init returns only when its records named no command,
		// which ronly's supervisor never sends.
		fmt.Fprintln(os.Stderr, "ronly: the sandbox was built but given no command to run")
		os.Exit(exitRonly)
	}
	if os.Getenv(cinit.EnvSweep) != "" {
		// Exec'd by the watchdog of a supervisor that died without
		// cleaning up: what its session left running dies now, not
		// at the next session's start.
		os.Exit(sweepLost(os.Args[1:]))
	}
	if code, ok := runShim(os.Args); ok {
		os.Exit(code)
	}
	// Forked before the runtime started (init/watchdog.c); dismissed only
	// once the session is cleaned up, so a supervisor that dies before
	// that has its session killed.
	watchdog := cinit.TakeWatchdog()
	code := runCLI(os.Args[1:])
	if err := watchdog.Dismiss(); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: warning: %v\n", err)
	}
	os.Exit(code)
}

// commandLine is ronly's command line: the sandbox flags (cli.CLI, the
// grammar shared with the policy file) and the commands, whose Run methods
// are here. Kong flattens the embedded flags into the top level.
type commandLine struct {
	cli.CLI

	// The metrics daemon is its own binary, ronly-exporter
	// (go/cmd/ronly-exporter), so that a session links no client_golang.
	Run RunCmd `cmd:"" default:"withargs" help:"Run COMMAND in the sandbox (the default; 'run' may be omitted)."`

	Probe         ProbeCmd         `cmd:"" help:"Try hostile and everyday operations inside the sandbox and say, for each, which layer refuses it (--json for a document)."`
	Sweep         SweepCmd         `cmd:"" help:"End what the sessions of killed supervisors left running and report them lost (for a timer, or a unit's ExecStopPost)."`
	ProbeInternal ProbeInternalCmd `cmd:"" name:"probe-internal" hidden:"" help:"The parts ronly probe runs itself."`
}

// RunCmd runs a command in the sandbox.
type RunCmd struct {
	Command []string `arg:"" optional:"" passthrough:"" help:"The command and its arguments."`
}

func runCLI(args []string) int {
	var cl commandLine
	// The write counter's helper takes longer to start and attach than
	// kong, the policy and the planning take together: begin it first,
	// so that it overlaps them. Closed (and reaped) on every way out
	// unless the session took it.
	counter := startWriteCounter(args)
	defer counter.Close()
	if command, ok := flagless(args); ok {
		// Not the host's table read ahead, as below for a line with
		// flags: here nothing as long as kong's model overlaps it, and
		// the goroutine's start cost more than it saved (1.02x,
		// interleaved, twice); nor the signals caught ahead (1.04x).
		go bpf.Warm()
		return runFlagless(command, counter)
	}
	plain := plainRun(args)
	if plain {
		// The session reads the host's mount table; on a Kubernetes
		// node's thousands of mounts that takes as long as kong's model.
		sandbox.ReadMountsAhead()
		// The supervisor needs the policy's table (parsed from its
		// text) and the programs once the sandbox runs: make them on
		// another core while kong builds its model.
		go bpf.Warm()
	}
	parser, err := newParser(&cl, plain)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", err)
		return exitRonly
	}
	code, done := parseAndRun(parser, args, counter)
	if done {
		return code
	}
	return exitRonly
}

// sweepLost is the watchdog's sweep (init/watchdog.c): as `ronly sweep`,
// with the metrics destination of args, the dead supervisor's command
// line. Nothing else args name is touched: not its --report, not its
// --audit-log.
func sweepLost(args []string) (code int) {
	c := cli.Defaults()
	var cl commandLine
	if flags, ok := parseOnly(&cl, args); ok {
		c = *flags
	}
	if _, err := sweep(&c); err != nil {
		return exitRonly
	}
	return 0
}

// SweepCmd ends what dead sessions left.
type SweepCmd struct{}

// Help is `ronly sweep --help`'s text below the usage line.
func (SweepCmd) Help() string {
	return `A session's supervisor that is SIGKILLed (systemctl stop past its timeout,
the OOM killer) cannot end its session: what the command left running lives on,
confined, until some ronly removes the session's cgroup. Every session's start
does, and a session with a limit has a watchdog that does at once; this does it
now. Run it as root from a timer (tools/deploy/ronly-sweep.timer), or from the
ExecStopPost= of a unit that runs sessions. It prints the sessions it ended, and
reports each lost (ronly_sessions_total{result="lost"}) where the metrics flags
say.`
}

// Run sweeps and prints each session it swept.
func (SweepCmd) Run(flags *cli.CLI) error {
	lost, err := sweep(flags)
	for _, s := range lost {
		fmt.Printf("session %s: its supervisor was gone; what it left running is killed and its cgroup removed\n", s)
	}
	return err
}

// sweep removes dead sessions' cgroups and what runs in them
// (sandbox.SweepLost) and reports each session lost where flags send
// metrics.
func sweep(flags *cli.CLI) (lost []string, err error) {
	lost = sandbox.SweepLost()
	if len(lost) == 0 {
		return nil, nil
	}
	out := flags.OpenMetrics()
	defer out.Close()
	failed := 0
	for _, s := range lost {
		if derr := out.DeliverLost(s); derr != nil {
			failed, err = failed+1, derr
		}
	}
	if err != nil {
		err = fmt.Errorf("metrics of %d lost sessions not delivered: %w", failed, err)
	}
	return lost, err
}

// parseOnly parses args into cl as runCLI would, running nothing; ok is
// false for a line kong refuses or that asks for help or the version.
func parseOnly(cl *commandLine, args []string) (flags *cli.CLI, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, exit := r.(exitPanic); !exit {
				panic(r)
			}
			ok = false
		}
	}()
	parser, err := newParser(cl, plainRun(args))
	if err != nil {
		return nil, false
	}
	parser.Stdout, parser.Stderr = io.Discard, io.Discard
	if _, _, err := cli.Parse(parser, args); err != nil {
		return nil, false
	}
	return &cl.CLI, true
}

// flagless is the command of a command line with no flag and no command
// name ahead of it: `ronly`, `ronly -- CMD...`, `ronly CMD...` (whatever
// follows the command is its own). Such a line leaves every flag at its
// default, so a session started this way skips kong's model, 2.5-5 ms of
// reflection and regular expressions in a fresh process on a 2-core VM;
// TestFlaglessIsKongs holds the result to kong's. Any other line, and
// anything but a session, is kong's to parse.
func flagless(args []string) (command []string, ok bool) {
	if len(args) == 0 {
		return nil, true
	}
	if args[0] == "--" {
		return args[1:], true
	}
	if strings.HasPrefix(args[0], "-") || isCommandName(args[0]) {
		return nil, false
	}
	return args, true
}

// runFlagless runs command as run does after kong parsed a line without
// flags.
func runFlagless(command []string, counter *sandbox.PendingCounter) int {
	c := cli.Defaults()
	var status int
	if err := (&RunCmd{Command: command}).Run(&c, &status, counter); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", err)
		return exitRonly
	}
	return status
}

// newParser builds kong's model of cl. plain leaves out the commands that
// a session's command line cannot name (see plainRun).
func newParser(cl *commandLine, plain bool) (*kong.Kong, error) {
	opts := append(cli.Options(version),
		kong.Bind(&cl.CLI),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
	if plain {
		// Kong's model is reflection over every field of every command:
		// a session's command line gets the flags and run only, and
		// leaves the other commands' fields unread (about 1 ms of the
		// start on a busy 2-core VM).
		opts = append(opts, kong.IgnoreFields(`^commandLine\.(Probe|ProbeInternal|Sweep)$`))
	}
	return kong.New(cl, opts...)
}

// exitPanic carries kong's exit (after --help or --version) out of Parse,
// so that only main calls os.Exit.
type exitPanic int

func parseAndRun(parser *kong.Kong, args []string, counter *sandbox.PendingCounter) (code int, done bool) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			code, done = int(c), true
		}
	}()
	ctx, pf, err := cli.Parse(parser, args) // --policy FILE: its flags, then args
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", err)
		return exitRonly, true
	}
	var status int
	if err := ctx.Run(&status, counter); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", pf.Attribute(err))
		return exitRonly, true
	}
	return status, true
}

// isCommandName is true for the names of commandLine's commands (and help).
func isCommandName(a string) bool {
	switch a {
	case "run", "probe", "probe-internal", "sweep", "help":
		return true
	}
	return false
}

// plainRun is true when args can only run a command: no command is named
// before a "--" (not even as some flag's value: then the whole model is
// built, to be sure) and no help is asked for, whose text lists them all.
func plainRun(args []string) bool {
	for _, a := range args {
		switch {
		case a == "--":
			return true
		case isCommandName(a), a == "-h", a == "--help":
			return false
		}
	}
	return true
}

// startWriteCounter begins attaching the write counter when the command
// line asks for one (countsWrites), before kong has parsed it; nil
// otherwise. A guess that turns out wrong (a bad flag, a policy that turns
// counting off) costs a helper's start, which the caller's Close ends; a
// session the guess misses (count-writes in a --policy file) starts its
// counter itself, later, as it would without this.
//
// The C side may have started the helper already, on a coarser reading of
// the same words (init/counter_early.c): StartWriteCounter adopts it, and
// a line that does not count after all ends it here.
func startWriteCounter(args []string) *sandbox.PendingCounter {
	count, events := countsWrites(args)
	if !count {
		sandbox.EndEarlyCounter(cinit.TakeEarlyCounter())
		return nil
	}
	return sandbox.StartWriteCounter(events)
}

// countsWrites reads the flags ahead of the command (before a "--" or the
// first word that is not a flag or its value) as kong will: count is set
// by --count-writes, events by --audit-log (the session then wants each
// refusal, sandbox.Options.Refused). Any other command than run, or help,
// counts nothing.
func countsWrites(args []string) (count, events bool) {
	// Most command lines do not count: no reflection for them.
	asked := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "--count-writes") {
			asked = true
			break
		}
	}
	if !asked {
		return false, false
	}
	takesValue := valueFlags()
	sawRun := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if a == "run" && !sawRun {
				sawRun = true // run's flags may follow it
				continue
			}
			if isCommandName(a) {
				return false, false
			}
			break // the command
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			// Short flags: -v and -h only, neither takes a value.
			if strings.Contains(name, "h") {
				return false, false
			}
			continue
		}
		switch name {
		case "help", "version":
			return false, false
		case "no-write-counting":
			return false, false
		case "count-writes":
			count = true
			if hasValue {
				b, err := strconv.ParseBool(value)
				count = err == nil && b
			}
			continue
		case "audit-log":
			if !hasValue && i+1 < len(args) {
				value = args[i+1]
			}
			events = value != ""
		}
		if takesValue[name] && !hasValue {
			i++ // its value, whatever it looks like (--rw --count-writes is a path)
		}
	}
	return count, events
}

// valueFlags are the long names of cli.CLI's flags that take a value (all
// but the booleans), named as kong names them: the name tag, else the
// field's name in lower case.
func valueFlags() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(cli.CLI{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Bool {
			continue
		}
		name := f.Tag.Get("name")
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = true
	}
	return m
}
