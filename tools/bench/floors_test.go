package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFloorsBuildTheSandbox holds the floors to what their rows claim: a
// floor that failed to build the sandbox would start faster and make
// ronly look slow against nothing. Each floor runs a shell that checks its
// own seccomp mode and tries to create a file in a host directory outside
// /tmp; it must find the filter, fail to write, and exit with its own code,
// and the file must not exist on the host afterwards. The script makes no
// call the filter sends to a listener: neither floor answers one.
func TestFloorsBuildTheSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: the floors build a sandbox")
		}
		t.Skip("the floors need root")
	}
	host, err := os.MkdirTemp("/var/tmp", "ronly-floors-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(host)
	canary := filepath.Join(host, "canary")
	script := `while read k v; do [ "$k" = Seccomp: ] && m=$v; done < /proc/self/status
[ "$m" = 2 ] || exit 10
(echo x > ` + canary + `) 2>/dev/null && exit 11
exit 7`
	floor, dir, err := goFloor()
	defer os.RemoveAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	goArgv := append(floor, "/bin/sh", "-c", script)
	cArgv, err := cFloor(goArgv, dir)
	if err != nil {
		t.Fatal(err)
	}
	type floorRun struct {
		name string
		argv []string
	}
	floors := []floorRun{{"Go floor", goArgv}, {"C floor", cArgv}}
	// The floors linked with ronly's packages (their package init runs
	// before main) must build the same sandbox.
	for _, tag := range []string{"gofloor_lean", "gofloor_linked"} {
		r := linkedFloor(row{variant: variant{argv: goArgv}}, tag, tag, dir)
		if r.missing != "" {
			t.Fatalf("%s: %s", tag, r.missing)
		}
		floors = append(floors, floorRun{tag, r.argv})
	}
	for _, f := range floors {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, f.argv[0], f.argv[1:]...).CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 7 {
			t.Errorf("%s: %v (want exit status 7: in the sandbox, writes refused)\n%s", f.name, err, out)
		}
		if _, err := os.Lstat(canary); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s on the host after the run: %v", f.name, canary, err)
		}
	}
}
