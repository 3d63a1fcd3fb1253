// Command probebin runs ronly's probe battery (package probe) and prints
// the results as JSON on stdout. The end-to-end tests run it inside ronly.
// It refuses to run outside a sandbox: the hostile operations are meant
// for a sandbox's walls, not for the host.
//
//	probebin -targets '{"file":...}' [-only NAME]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"ronly.dev/ronly/go/probe"
)

func main() {
	targets := flag.String("targets", "", "the host's canaries as JSON (probe.Targets)")
	only := flag.String("only", "", "run only the operation with this name")
	list := flag.Bool("list", false, "list the operations and exit, running none")
	flag.Parse()

	ops := probe.All()
	if *list {
		for _, op := range ops {
			fmt.Printf("%s\t%s\n", op.Kind, op.Name)
		}
		return
	}
	if err := probe.CheckInside(); err != nil {
		fmt.Fprintf(os.Stderr, "probebin: %v\n", err)
		os.Exit(2)
	}
	var t probe.Targets
	if err := json.Unmarshal([]byte(*targets), &t); err != nil {
		fmt.Fprintf(os.Stderr, "probebin: -targets: %v\n", err)
		os.Exit(2)
	}
	if *only != "" {
		var sel []probe.Op
		for _, op := range ops {
			if op.Name == *only {
				sel = append(sel, op)
			}
		}
		if len(sel) == 0 {
			fmt.Fprintf(os.Stderr, "probebin: no operation named %q\n", *only)
			os.Exit(2)
		}
		ops = sel
	}
	if err := probe.WriteJSON(os.Stdout, probe.Run(ops, t)); err != nil {
		fmt.Fprintf(os.Stderr, "probebin: %v\n", err)
		os.Exit(1)
	}
}
