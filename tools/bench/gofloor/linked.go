//go:build gofloor_linked

package main

// Built with -tags gofloor_linked, the Go floor links every package ronly
// links, so it runs their package init before main and starts from a
// binary about as large. tools/bench times it beside the plain floor: the
// difference is what ronly pays for its packages alone, before any of its
// own work, and 1.1x the floor less that is what is left for the session.
import (
	_ "encoding/json"
	_ "os/signal"
	_ "reflect"

	_ "github.com/alecthomas/kong"

	_ "ronly.dev/ronly/bpf"
	_ "ronly.dev/ronly/go/cli"
	_ "ronly.dev/ronly/go/metrics"
	_ "ronly.dev/ronly/go/policy"
	_ "ronly.dev/ronly/go/probe"
	_ "ronly.dev/ronly/go/probe/runner"
	_ "ronly.dev/ronly/go/report"
	_ "ronly.dev/ronly/go/sandbox"
)
