// Command ronly-exporter is the host's metrics daemon for ronly: sessions
// deliver their reports to its unix socket (or, while it is down, to the
// spool), and Prometheus scrapes the sums from its /metrics, served by
// client_golang (go/metrics/promexport).
//
// It is its own binary so that ronly, which starts once per session, links
// no client_golang, protobuf or procfs and pays none of their package init
// (go/cmd/ronly's TestNoPrometheusInSessionBinary keeps it so). Only this
// package prints or exits.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// version is stamped at build time (Bazel x_defs, or -ldflags -X).
var version = "0.0.0-dev"

// exitFailed is the exit code of a bad flag or a failure to serve: ronly's
// own (RONLY_EXIT_RONLY in init/records.h, which this binary does not link:
// its cgo init is the session's).
const exitFailed = 125

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cmd exporterCmd
	parser, err := kong.New(&cmd,
		kong.Name("ronly-exporter"),
		kong.Description("Serve the host's ronly session metrics to Prometheus (a daemon, see tools/deploy/ronly-exporter.service)."),
		kong.Vars{"version": "ronly-exporter " + version},
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly-exporter: %v\n", err)
		return exitFailed
	}
	return parseAndRun(parser, args)
}

// exitPanic carries kong's exit (after --help or --version) out of Parse,
// so that only main calls os.Exit.
type exitPanic int

func parseAndRun(parser *kong.Kong, args []string) (code int) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitPanic)
			if !ok {
				panic(r)
			}
			code = int(c)
		}
	}()
	ctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ronly-exporter: %v\n", err)
		return exitFailed
	}
	if err := ctx.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ronly-exporter: %v\n", err)
		return exitFailed
	}
	return 0
}
