package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// extraMounts is how many mounts the mounts target adds: a Kubernetes
// node's table grows by each pod's volumes, secrets, service-account
// token and overlay, and a node with a hundred pods has a few thousand.
const extraMounts = 2000

// manyMounts times the start of /bin/true under bwrap, the Go floor and
// ronly on a host with extraMounts more mounts than this one, against the
// same on this host's table. Each half runs in a mount namespace of its
// own, private (nothing reaches the host's table): one as it is, one with
// extraMounts small tmpfs mounts added. All six rows run interleaved in
// the same rounds. Every tool copies the whole table into its sandbox and
// the kernel tears it down when the command exits; ronly also reads and
// parses it on the way (credentials, cgroup hierarchies).
func manyMounts(ronly, bwrap, work string, runs int) {
	fmt.Printf("startup of /bin/true with %d more mounts on the host\n", extraMounts)
	floor, dir, err := goFloor()
	defer os.RemoveAll(dir)
	if err != nil {
		fmt.Printf("  Go floor not built: %v\n\n", err)
		return
	}
	plain, err := newPrivateNS("")
	if err != nil {
		fatal(err)
	}
	defer plain.close()
	many, err := newPrivateNS("")
	if err != nil {
		fatal(err)
	}
	defer many.close()
	points := filepath.Join(work, "mounts")
	many.do(func() { err = addMounts(points, extraMounts) })
	if err != nil {
		fatal(err)
	}
	var rows []row
	for _, ns := range []struct {
		suffix string
		ns     *privateNS
	}{{"", plain}, {fmt.Sprintf(", +%d", extraMounts), many}} {
		rows = append(rows,
			row{variant: variant{"bwrap" + ns.suffix, bwrapTrue(bwrap)}, in: ns.ns},
			row{variant: variant{"Go floor" + ns.suffix, append(append([]string{}, floor...), "/bin/true")}, in: ns.ns},
			row{variant: variant{"ronly" + ns.suffix, []string{ronly, "--", "/bin/true"}}, in: ns.ns},
		)
	}
	if _, err := os.Stat(bwrap); err != nil {
		rows[0].missing, rows[3].missing = "not installed", "not installed"
	}
	settle(floor[0])
	t, _, faults := timeRows(rows, runs)
	fmt.Printf("  %-24s %8s %8s %8s %8s %8s %8s %8s\n", "ms", "median", "p10", "p90", "/bwrap", "/floor", "/before", "faults")
	for i, r := range rows {
		if r.missing != "" {
			fmt.Printf("  %-24s %s\n", r.name, r.missing)
			continue
		}
		half := i / 3 * 3 // the same namespace's bwrap and floor
		bi := half
		if rows[bi].missing != "" {
			bi = -1
		}
		before := "-"
		if i >= 3 {
			before = ratioOr(t, i, i-3) // the same tool on the host's own table
		}
		fmt.Printf("  %-24s %8.2f %8.2f %8.2f %8s %8s %8s %8d\n", r.name, ms(pct(t[i], 50)), ms(pct(t[i], 10)), ms(pct(t[i], 90)),
			ratioOr(t, i, bi), ratioOr(t, i, half+1), before, median(faults[i]))
	}
	fmt.Println()
}

// addMounts mounts n 64 KiB tmpfs file systems under dir, in the calling
// thread's mount namespace.
func addMounts(dir string, n int) error {
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("ronly-bench", p, "tmpfs", 0, "size=64k"); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", p, err)
		}
	}
	return nil
}
