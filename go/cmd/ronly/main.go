// Command ronly runs a shell or command in a read-only sandbox: the whole
// host is readable, nothing outside the scratch space can be changed, and
// the kernel is what says no.
//
// One binary plays three parts, told apart before any flag is parsed:
// the front-end inside a sandbox the C init has just built (cinit.Ran), and
// otherwise the command line: `ronly [OPTIONS] [COMMAND...]` and its
// subcommands. Only this package prints or exits.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kong"

	"ronly.dev/ronly/go/frontend"
	"ronly.dev/ronly/go/sandbox"
	cinit "ronly.dev/ronly/init"
)

// version is stamped at build time (Bazel x_defs, or -ldflags -X).
var version = "0.0.0-dev"

// started is when ronly's own code started: the origin of a session's
// timeline (initialised with the package, just before main runs).
var started = time.Now()

// Exit codes, as docker uses them: 125 ronly itself failed, 126 the command
// cannot be executed, 127 it was not found; anything else is the command's.
const (
	exitRonly    = 125
	exitNotExec  = 126
	exitNotFound = 127
)

func main() {
	if cinit.Ran() {
		err := frontend.Exec(os.Args[1:], sandbox.EnvShims, cinit.EnvFD)
		fmt.Fprintf(os.Stderr, "ronly: %v\n", err)
		var ee *frontend.ExecError
		if errors.As(err, &ee) {
			os.Exit(ee.Code)
		}
		os.Exit(exitRonly)
	}
	if code, ok := runShim(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(runCLI(os.Args[1:]))
}

func runCLI(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("ronly"),
		kong.Description(description),
		kong.Vars{"version": "ronly " + version, "default_tmpfs_size": "64M"},
		kong.Bind(&cli),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
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
		switch a {
		case "--":
			return append(append(append([]string{}, args[:i]...), "run"), args[i:]...)
		case "run", "exporter", "probe", "probe-internal", "help":
			return args
		}
	}
	return args
}

func oneLine(err error) string {
	var pe *kong.ParseError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}
