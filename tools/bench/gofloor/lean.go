//go:build gofloor_lean

package main

// Built with -tags gofloor_lean, the Go floor links what a session binary
// without the Docker and Kubernetes guards and the kubeconfig parser would
// keep: the flag parser, the policy file's TOML, libseccomp and ronly's
// packages that need neither net/http, crypto/tls nor YAML. Timed beside
// the plain floor and the one linked as ronly is (linked.go), it bounds
// what moving the guards into a helper could save.
import (
	_ "encoding/json"
	_ "os/signal"
	_ "reflect"

	_ "github.com/alecthomas/kong"
	_ "github.com/creack/pty"
	_ "github.com/pelletier/go-toml/v2/unstable"
	_ "golang.org/x/term"

	_ "ronly.dev/ronly/bpf"
	_ "ronly.dev/ronly/go/audit"
	_ "ronly.dev/ronly/go/cgroup"
	_ "ronly.dev/ronly/go/hostfile"
	_ "ronly.dev/ronly/go/metrics"
	_ "ronly.dev/ronly/go/mountinfo"
	_ "ronly.dev/ronly/go/policy"
	_ "ronly.dev/ronly/go/probe"
	_ "ronly.dev/ronly/go/report"
	_ "ronly.dev/ronly/go/writewatch/remote"
)
