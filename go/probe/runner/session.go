package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"ronly.dev/ronly/go/policy"
	"ronly.dev/ronly/go/probe"
	"ronly.dev/ronly/go/report"
	"ronly.dev/ronly/go/sandbox"
)

// The hidden commands of ronly's command line that the probe runs, this
// binary again: main routes each to its function here.
var (
	superviseCommand = []string{"/proc/self/exe", "probe-internal", "supervise"} // Supervise
	modeCommand      = []string{"/proc/self/exe", "probe-internal", "mode"}      // TrialSession
	canaryCommand    = []string{"/proc/self/exe", "probe-internal", "canary"}    // sleeps until killed
	// insideCommand runs the battery (RunStream) inside the sandbox;
	// --targets, --ops and --events follow.
	insideCommand = []string{"/proc/self/exe", "probe-internal", "inside"}
)

// request is what the orchestrator sends a supervisor on its stdin.
type request struct {
	Policy  *policy.Policy `json:"policy"`
	Targets probe.Targets  `json:"targets"`
	Ops     []int          `json:"ops"`
	// Stdin and Stdout are host files the session gets as stdin and, opened
	// O_APPEND, as stdout: canaries for the stdio operations.
	Stdin  string `json:"stdin"`
	Stdout string `json:"stdout"`
	// Events is the file in the --rw directory the battery appends its
	// events to: written by the kernel as they happen, they outlive a
	// supervisor that an operation killed (stdio would die with it, since
	// the supervisor relays the session's stdio).
	Events string `json:"events"`
}

// sessionLine is the supervisor's last line on stdout, after the
// battery's events: how the session went.
type sessionLine struct {
	Layers   sandbox.Layers               `json:"layers"`
	Blocked  map[string]map[string]uint64 `json:"blocked,omitempty"`
	ExitCode int                          `json:"exit_code"`
	Error    string                       `json:"error,omitempty"`
	Warnings []string                     `json:"warnings,omitempty"`
	// Swept are the dead sessions the start swept (sandbox.Result.Swept):
	// the probe reports them lost where its flags send metrics.
	Swept []string `json:"swept,omitempty"`
}

type sessionLineJSON struct {
	Session *sessionLine `json:"session"`
}

// Supervise runs one session of the probe (`ronly probe-internal
// supervise`): the request on in, the battery's events and then one
// session line on out.
func Supervise(in io.Reader, out io.Writer) error {
	var req request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return fmt.Errorf("probe request on stdin: %w", err)
	}
	if req.Policy == nil || len(req.Ops) == 0 {
		return errors.New("probe request on stdin: no policy or no operations")
	}
	targets, err := json.Marshal(req.Targets)
	if err != nil {
		return err
	}
	ops := make([]string, len(req.Ops))
	for i, n := range req.Ops {
		ops[i] = strconv.Itoa(n)
	}
	p := req.Policy
	// The battery is this binary: /proc/self/exe, as the front-end inside
	// resolves it when it execs the command, wherever the binary lives.
	p.Command = append(append([]string{}, insideCommand...), "--targets", string(targets), "--ops", strings.Join(ops, ","),
		"--events", req.Events)
	if err := p.Validate(); err != nil {
		return err
	}
	// stdin and stdout are the stdio canaries.
	stdin, err := os.Open(req.Stdin)
	if err != nil {
		return fmt.Errorf("stdio canary: %w", err)
	}
	defer stdin.Close()
	stdout, err := os.OpenFile(req.Stdout, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("stdio canary: %w", err)
	}
	defer stdout.Close()
	var mu sync.Mutex
	var warnings []string
	res, err := sandbox.Run(p, sandbox.Options{Warn: func(m string) {
		mu.Lock()
		warnings = append(warnings, m)
		mu.Unlock()
	}, Stdin: stdin, Stdout: stdout, Session: probeSession()})
	s := sessionLine{Layers: res.Layers, Blocked: res.Blocked, ExitCode: res.ExitCode, Warnings: warnings, Swept: res.Swept}
	if err != nil {
		s.Error = err.Error()
	}
	b, err := json.Marshal(sessionLineJSON{Session: &s})
	if err != nil {
		return err
	}
	_, err = out.Write(append([]byte("\n"), append(b, '\n')...))
	return err
}

// modeLine is TrialSession's answer.
type modeLine struct {
	Mode  string   `json:"mode"`
	Error string   `json:"error,omitempty"`
	Swept []string `json:"swept,omitempty"` // as in sessionLine
}

// probeSession is a name for one of the probe's sessions: marked as the
// probe's (sandbox.ProbeSessionPrefix), so that a sweep does not report it
// lost when the probe killed its supervisor.
func probeSession() string {
	return sandbox.ProbeSessionPrefix + report.NewSessionID()
}

// TrialSession (`ronly probe-internal mode`) runs `ronly --version` in the
// sandbox the policy on in describes and writes the mode the session got
// to out, as JSON.
func TrialSession(in io.Reader, out io.Writer) error {
	var p policy.Policy
	if err := json.NewDecoder(in).Decode(&p); err != nil {
		return fmt.Errorf("policy on stdin: %w", err)
	}
	p.Command = []string{"/proc/self/exe", "--version"}
	if err := p.Validate(); err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	res, err := sandbox.Run(&p, sandbox.Options{Warn: func(string) {}, Stdin: null, Stdout: null, Stderr: null, Session: probeSession()})
	line := modeLine{Mode: res.Layers.Mode, Swept: res.Swept}
	if err != nil {
		line.Error = err.Error()
	}
	return json.NewEncoder(out).Encode(line)
}

// trialMode is the mode auto mode picks here for full: one session of
// `ronly --version`, in a process of its own (TrialSession). lost gets the
// dead sessions its start swept.
func trialMode(full *policy.Policy, lost func(string)) (string, error) {
	p := *full
	p.NoShims, p.ShimTools, p.NoWriteCounting, p.Limits = true, nil, true, policy.Limits{}
	req, err := json.Marshal(&p)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(modeCommand[0], modeCommand[1:]...)
	cmd.Args[0] = "ronly"
	cmd.Stdin = bytes.NewReader(req)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("probe: trial session: %w", err)
	}
	var line modeLine
	if err := json.Unmarshal(out, &line); err != nil {
		return "", fmt.Errorf("probe: trial session: %w", err)
	}
	for _, s := range line.Swept {
		lost(s)
	}
	if line.Error != "" {
		return "", errors.New(line.Error)
	}
	return line.Mode, nil
}
