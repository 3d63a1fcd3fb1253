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
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/bpf"
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

func runCLI(args []string) int {
	var cli CLI
	opts := []kong.Option{
		kong.Name("ronly"),
		kong.Description(description),
		kong.Vars{"version": "ronly " + version, "default_tmpfs_size": "64M"},
		kong.Bind(&cli),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	}
	if plainRun(args) {
		// Kong's model is reflection over every field of every command:
		// a session's command line gets the flags and run only, and
		// leaves the other commands' fields unread (about 1 ms of the
		// start on a busy 2-core VM).
		opts = append(opts, kong.IgnoreFields(`^CLI\.(Probe|ProbeInternal)$`))
		// The supervisor needs the policy's table (parsed from its
		// text) once the sandbox runs: parse it on another core while
		// kong builds its model.
		go bpf.DefaultTable()
	}
	parser, err := kong.New(&cli, opts...)
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
	args, pf, err := withPolicyFile(parser, args) // --policy FILE: its flags, then args
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", err)
		return exitRonly, true
	}
	ctx, err := parser.Parse(explicitRun(args))
	if err == nil {
		err = pf.afterParse()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", pf.attribute(oneLine(err)))
		return exitRonly, true
	}
	var status int
	if err := ctx.Run(&status); err != nil {
		fmt.Fprintf(os.Stderr, "ronly: %v\n", pf.attribute(err.Error()))
		return exitRonly, true
	}
	return status, true
}

// explicitRun makes `ronly -- probe` run a program called probe rather than
// the probe subcommand: a "--" before any subcommand name selects run. The
// "run" goes right before the "--", so flags ahead of it are still parsed
// (and a misspelt one is still an error, not a command).
func explicitRun(args []string) []string {
	for i, a := range args {
		switch {
		case a == "--":
			return append(append(append([]string{}, args[:i]...), "run"), args[i:]...)
		case isCommandName(a):
			return args
		}
	}
	return args
}

// isCommandName is true for the names of CLI's commands (and help).
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

func oneLine(err error) string {
	var pe *kong.ParseError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}
