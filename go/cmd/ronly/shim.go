package main

import (
	"os"

	"ronly.dev/ronly/shims"
)

// runShim answers for a shimmed tool when argv[0]'s base name is one
// (docker, kubectl, or a tool an --extra-shims directory has rules for):
// it runs the real tool for an allowed verb, in place of this process,
// and otherwise says why not. ok is false when argv[0] names no shimmed
// tool, and ronly goes on as itself.
func runShim(argv []string) (code int, ok bool) {
	return shims.Run(argv, os.Stderr)
}
