package main

import (
	"bytes"
	"strings"
	"testing"

	"ronly.dev/ronly/go/cli"
)

// `ronly probe` is the subcommand, `ronly -- probe` a program called probe,
// and the hidden parts parse but are not in the help.
func TestProbeCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		cmd  string
	}{
		{[]string{"probe", "--json"}, "probe"},
		{[]string{"--no-network", "probe"}, "probe"},
		{[]string{"probe-internal", "inside", "--targets", `{"pid":2}`, "--ops", "0,1", "--events", "/x/events"}, "probe-internal inside"},
		{[]string{"probe-internal", "supervise"}, "probe-internal supervise"},
		{[]string{"probe-internal", "canary"}, "probe-internal canary"},
		{[]string{"--", "probe", "x"}, "run <command>"},
	} {
		parser, _ := newTestParser(t)
		ctx, _, err := cli.Parse(parser, tc.args)
		if err != nil {
			t.Errorf("parse %q: %v", tc.args, err)
			continue
		}
		if ctx.Command() != tc.cmd {
			t.Errorf("parse %q: command %q, want %q", tc.args, ctx.Command(), tc.cmd)
		}
	}
	parser, _ := newTestParser(t)
	var help bytes.Buffer
	parser.Stdout = &help
	func() {
		defer func() { recover() }()
		parser.Parse([]string{"--help"})
	}()
	if !strings.Contains(help.String(), "probe") || strings.Contains(help.String(), "probe-internal") {
		t.Errorf("--help should list probe and hide probe-internal:\n%s", help.String())
	}
}
