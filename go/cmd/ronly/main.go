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
	"os"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/bpf"
	"ronly.dev/ronly/go/cli"
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
	if code, ok := runShim(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(runCLI(os.Args[1:]))
}

// commandLine is ronly's command line: the sandbox flags (cli.CLI, the
// grammar shared with the policy file) and the commands, whose Run methods
// are here. Kong flattens the embedded flags into the top level.
type commandLine struct {
	cli.CLI

	// The metrics daemon is its own binary, ronly-exporter
	// (go/cmd/ronly-exporter), so that a session links no client_golang.
	Run RunCmd `cmd:"" default:"withargs" help:"Run COMMAND in the sandbox (the default; 'run' may be omitted)."`

	Probe         ProbeCmd         `cmd:"" help:"Try ~200 operations inside the sandbox and say, for each, which layer refuses it (--json for a document)."`
	ProbeInternal ProbeInternalCmd `cmd:"" name:"probe-internal" hidden:"" help:"The parts ronly probe runs itself."`
}

// RunCmd runs a command in the sandbox.
type RunCmd struct {
	Command []string `arg:"" optional:"" passthrough:"" help:"The command and its arguments."`
}

func runCLI(args []string) int {
	var cl commandLine
	plain := plainRun(args)
	if plain {
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
	code, done := parseAndRun(parser, args)
	if done {
		return code
	}
	return exitRonly
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
		opts = append(opts, kong.IgnoreFields(`^commandLine\.(Probe|ProbeInternal)$`))
	}
	return kong.New(cl, opts...)
}

// exitPanic carries kong's exit (after --help or --version) out of Parse,
// so that only main calls os.Exit.
type exitPanic int

func parseAndRun(parser *kong.Kong, args []string) (code int, done bool) {
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
	if err := ctx.Run(&status); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", pf.Attribute(err))
		return exitRonly, true
	}
	return status, true
}

// isCommandName is true for the names of commandLine's commands (and help).
func isCommandName(a string) bool {
	switch a {
	case "run", "probe", "probe-internal", "help":
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
