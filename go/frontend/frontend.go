// Package frontend is the first Go code that runs inside the sandbox, once
// the C init has built it: it removes ronly's own variables from the
// environment, puts the shim directories first on PATH, and execs the
// command in place of itself.
package frontend

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// ExecError is a command that could not be started; Code follows the shell
// (126 cannot execute, 127 not found).
type ExecError struct {
	Code int
	Err  error
}

func (e *ExecError) Error() string { return e.Err.Error() }
func (e *ExecError) Unwrap() error { return e.Err }

// Exec runs args (or the user's shell when args is empty) in place of this
// process. It returns only on failure.
func Exec(args []string, shimsEnv, initEnv string) error {
	var shims string
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, shimsEnv+"="):
			shims = strings.TrimPrefix(kv, shimsEnv+"=")
		case strings.HasPrefix(kv, initEnv+"="):
		default:
			env = append(env, kv)
		}
	}
	if shims != "" {
		path := shims
		if old := os.Getenv("PATH"); old != "" {
			path += ":" + old
		}
		os.Setenv("PATH", path) // exec.LookPath reads it
		env = setEnv(env, "PATH", path)
	}
	if len(args) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/bash"
		}
		args = []string{sh}
	}
	bin, err := exec.LookPath(args[0])
	if err != nil {
		code := 127
		if errors.Is(err, fs.ErrPermission) {
			code = 126
		}
		return &ExecError{code, fmt.Errorf("%s: %w", args[0], unwrapExec(err))}
	}
	err = syscall.Exec(bin, args, env)
	code := 126
	if errors.Is(err, fs.ErrNotExist) {
		code = 127
	}
	return &ExecError{code, fmt.Errorf("exec %s: %w", args[0], err)}
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

func setEnv(env []string, name, value string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			env[i] = name + "=" + value
			return env
		}
	}
	return append(env, name+"="+value)
}
