package main

import (
	"fmt"
	"os"

	"ronly.dev/ronly/go/sandbox"
)

// Run builds the sandbox and runs the command; status receives its exit code.
func (r *RunCmd) Run(cli *CLI, status *int) error {
	p, err := cli.policy(r.Command)
	if err != nil {
		return err
	}
	code, layers, err := sandbox.Run(p, func(msg string) { fmt.Fprintf(os.Stderr, "ronly: warning: %s\n", msg) })
	if p.Verbose {
		fmt.Fprintf(os.Stderr, "ronly: %s\n", layers)
	}
	if err != nil {
		return err
	}
	*status = code
	return nil
}
