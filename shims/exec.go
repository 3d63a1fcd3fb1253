package shims

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	cinit "ronly.dev/ronly/init"
)

// EnvReportFD names the descriptor a shim appends its refusals to, one
// JSON line each: {"kind":"command","tool":"docker","subcommand":"run"}.
const EnvReportFD = cinit.EnvShimReport

// ExitBlocked is a refused command's exit code; the others are
// cinit.ExitRonly (the shim itself failed), cinit.ExitNotExec and
// cinit.ExitNotFound, as the shell and docker use them.
const ExitBlocked = 1

// ExecError is a real tool that could not be run; Code is the exit code
// (126 cannot execute, 127 not found, 125 the shim failed).
type ExecError struct {
	Code int
	Err  error
}

func (e *ExecError) Error() string { return e.Err.Error() }
func (e *ExecError) Unwrap() error { return e.Err }

// Run is a shim's whole life short of exiting: when argv[0] names a tool
// with rules, it decides, and either execs the real tool (and returns only
// on failure) or refuses. Messages go to stderr. handled is false when
// argv[0] names no shimmed tool, and the caller goes on as itself.
func Run(argv []string, stderr io.Writer) (code int, handled bool) {
	if len(argv) == 0 {
		return 0, false
	}
	r, err := LoadTool(argv[0], ExtraDirs())
	if err != nil {
		fmt.Fprintf(stderr, "ronly: %v\n", err)
		return cinit.ExitRonly, true
	}
	if r == nil {
		return 0, false
	}
	d := r.Decide(argv[1:])
	if !d.Allowed {
		if d.Verb == "" {
			fmt.Fprintf(stderr, "ronly: %s is blocked (read-only session)\n", r.Tool)
		} else {
			fmt.Fprintf(stderr, "ronly: %s %s is blocked (read-only session)\n", r.Tool, d.Verb)
		}
		Report(r.Tool, d.Label)
		return ExitBlocked, true
	}
	err = Exec(r, argv[1:])
	fmt.Fprintf(stderr, "ronly: %v\n", err)
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.Code, true
	}
	return cinit.ExitRonly, true
}

// Exec runs the real tool in place of this process with args untouched
// and argv[0] the tool's name. The real tool is the first on PATH that is
// not this binary: every PATH entry whose tool is the shim itself (same
// device and inode as /proc/self/exe, whatever the link) is passed over,
// as are relative entries. The environment, PATH included, is passed on
// unchanged, so that the tool's own children find the shims again. Exec
// returns only on failure.
func Exec(r *Rules, args []string) error {
	bin, err := LookPath(r.Tool, os.Getenv("PATH"))
	if err != nil {
		return err
	}
	err = syscall.Exec(bin, append([]string{r.Tool}, args...), os.Environ())
	code := cinit.ExitNotExec
	if errors.Is(err, fs.ErrNotExist) {
		code = cinit.ExitNotFound
	}
	return &ExecError{code, fmt.Errorf("%s: exec %s: %w", r.Tool, bin, err)}
}

// Dir is where a ronly sandbox puts its built-in shims, first on PATH.
const Dir = "/dev/ronly-shims"

// LookPath finds the real tool on path, passing over this binary and
// ronly's own shim directory. Passing over only itself is not enough: a
// second shim on PATH (a shim tested inside ronly, a wrapper of the
// user's) would pass over itself back to this one, and the two would
// exec each other forever.
func LookPath(tool, path string) (string, error) {
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return "", &ExecError{cinit.ExitRonly, fmt.Errorf("%s: cannot tell the shim from the real tool: %w", tool, err)}
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) == Dir {
			continue
		}
		p := filepath.Join(dir, tool)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || os.SameFile(fi, self) {
			continue
		}
		if err := unix.Access(p, unix.X_OK); err != nil {
			if denied == nil {
				denied = &ExecError{cinit.ExitNotExec, fmt.Errorf("%s: %s: %w", tool, p, err)}
			}
			continue
		}
		return p, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", &ExecError{cinit.ExitNotFound, fmt.Errorf("%s: not found on PATH", tool)}
}

// Report appends one refusal to the descriptor RONLY_REPORT_FD names, if
// any, in a single write; errors are ignored. Descriptors 0-2 are never
// written: a report must not end up in the command's output.
func Report(tool, label string) {
	fd, err := strconv.Atoi(os.Getenv(EnvReportFD))
	if err != nil || fd < 3 {
		return
	}
	line, err := json.Marshal(struct {
		Kind       string `json:"kind"`
		Tool       string `json:"tool"`
		Subcommand string `json:"subcommand"`
	}{"command", tool, label})
	if err != nil {
		return
	}
	_, _ = unix.Write(fd, append(line, '\n'))
}
