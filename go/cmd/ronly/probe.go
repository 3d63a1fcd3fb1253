package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/cli"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/probe/runner"
)

// `ronly probe` runs the probe battery in cumulative sandboxes and says
// which layer refuses each hostile operation; package probe/runner does the
// work (its doc says which processes take part), this prints the report.

// ProbeCmd checks what ronly's sandbox refuses on this kernel.
type ProbeCmd struct {
	JSON      bool   `name:"json" help:"Print a JSON document (version 1) instead of the table."`
	CanaryDir string `name:"canary-dir" placeholder:"DIR" help:"Make the canaries in DIR (default: $TMPDIR, /var/tmp, /run or your runtime directory, /tmp: the first that is writable and visible inside)."`
}

// Help is `ronly probe --help`'s text after the synopsis.
func (c *ProbeCmd) Help() string {
	kinds := map[probe.Kind]int{}
	for _, op := range probe.All() {
		kinds[op.Kind]++
	}
	return fmt.Sprintf(`Runs ronly's battery of %d hostile operations (write a canary file, signal a
canary process, remount the root, reach a hidden socket...) and %d everyday
ones inside the sandbox your flags describe, first with layers left out:
`, kinds[probe.Hostile], kinds[probe.Everyday]) + `
  mount+caps  namespaces, read-only root, private /dev, capabilities dropped
              (no user namespace: root only; for others it is mount+caps+userns)
  userns      + a user namespace
  landlock    + Landlock
  seccomp     + the seccomp filter: the full sandbox

Where no namespace can be made (or with --mode landlock-only) there are two:
caps+landlock (no namespaces, capabilities dropped, Landlock) and seccomp.

An operation is blocked by the layer from which on it is refused: found by
trying, not guessed from the errno. NONE means no layer refused it.
The canaries are made for the occasion, checked from outside after each
sandbox, and removed: in --canary-dir, else in the first writable directory
of $TMPDIR, /var/tmp, /run (your runtime directory when not root) and /tmp
that the sandbox shows as the host has it (not /tmp, which it replaces).
--rootless and --privileged choose the configurations' mode; as root, a
first configuration without a user namespace that cannot be built here is
left out, and the report says why.

--json prints a document, version 1: {"version", "kernel", "landlock_abi",
"configurations": [{"name", "mode", "landlock_abi", "seccomp", "host_changes",
...}], "operations": [{"name", "kind", "result", "errno", "blocked_by",
"results_by_config": {NAME: {"outcome", "errno"}}}], "summary", "ok"}
(see go/probe/layers.go, type Report).

Exit status: 0 when the full sandbox refused every hostile operation, every
everyday one worked and the host did not change; 1 otherwise; 125 when ronly
itself failed.`
}

// ProbeInternalCmd holds the hidden parts `ronly probe` runs itself.
type ProbeInternalCmd struct {
	Supervise ProbeSuperviseCmd `cmd:"" help:"Run one sandbox session of the probe (request on stdin)."`
	Inside    ProbeInsideCmd    `cmd:"" help:"Run the probe battery; refuses outside a sandbox."`
	Canary    ProbeCanaryCmd    `cmd:"" help:"Sleep until killed: the probe's canary process."`
	Mode      ProbeModeCmd      `cmd:"" help:"Print the mode a session of the policy on stdin gets."`
}

// Run probes and prints the report; status is 0 when the full sandbox
// refused every hostile operation and let every everyday one work.
func (c *ProbeCmd) Run(flags *cli.CLI, status *int) error {
	full, err := flags.PolicyFor(nil)
	if err != nil {
		return err
	}
	// Dead sessions a probe session's start sweeps are reported lost, as
	// a session's start reports them: where the flags send metrics.
	out := flags.OpenMetrics()
	defer out.Close()
	pr, err := runner.New(full, runner.Options{CanaryDir: c.CanaryDir, Version: version,
		Log:  func(m string) { fmt.Fprintf(os.Stderr, "ronly: %s\n", m) },
		Lost: func(s string) { warnMetrics(out.DeliverLost(s)) }})
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
			pr.Interrupt()
		}
	}()
	rep, err := pr.Run()
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printProbeTable(os.Stdout, rep)
	}
	if !rep.OK {
		*status = 1
	}
	return nil
}

func printProbeTable(w io.Writer, rep *probe.Report) {
	for _, l := range probe.TableLines(rep) {
		fmt.Fprintln(w, l)
	}
}

// The hidden parts.

// ProbeSuperviseCmd runs one sandbox session of the probe.
type ProbeSuperviseCmd struct{}

// Run runs one session of the probe: the request on stdin, the battery's
// events and then the session's line on stdout.
func (c *ProbeSuperviseCmd) Run() error { return runner.Supervise(os.Stdin, os.Stdout) }

// ProbeModeCmd runs `ronly --version` in the sandbox the policy on stdin
// describes and prints the mode the session got, as JSON.
type ProbeModeCmd struct{}

func (c *ProbeModeCmd) Run() error { return runner.TrialSession(os.Stdin, os.Stdout) }

// ProbeInsideCmd runs the battery inside a sandbox.
type ProbeInsideCmd struct {
	Targets string `required:"" placeholder:"JSON" help:"The host's canaries (probe.Targets)."`
	Ops     string `required:"" placeholder:"N,N..." help:"The operations to run, by index in the battery."`
	Events  string `required:"" placeholder:"FILE" help:"Append the events to FILE (in the --rw directory)."`
}

// Run runs the operations, one JSON event per line appended to --events
// (stdin and stdout are the stdio canaries); it refuses to run outside a
// sandbox.
func (c *ProbeInsideCmd) Run() error {
	var t probe.Targets
	if err := json.Unmarshal([]byte(c.Targets), &t); err != nil {
		return fmt.Errorf("--targets: %w", err)
	}
	if err := probe.CheckLandlocked(t); err != nil {
		return err
	}
	var idx []int
	for _, f := range strings.Split(c.Ops, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("--ops: %w", err)
		}
		idx = append(idx, n)
	}
	return probe.RunStream(probe.AppendFile(c.Events), probe.All(), idx, t)
}

// ProbeCanaryCmd is the probe's canary process.
type ProbeCanaryCmd struct{}

// Run sleeps until a signal kills the process.
func (ProbeCanaryCmd) Run() error {
	for {
		unix.Pause()
	}
}
