package probe

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CheckLandlocked is CheckConfined for landlock-only mode, where the
// battery shares the host's mount namespace and its read-only root is not
// read-only: it runs only with no_new_privs, capabilities dropped and a
// Landlock domain that refuses a file in the canary directory, which the
// runner can write outside (tried, so that nothing but Landlock can pass
// for it).
func CheckLandlocked(t Targets) error {
	if err := CheckConfined(); err == nil {
		return nil
	}
	if !t.NoNS || t.Dir == "" {
		return CheckConfined()
	}
	try := filepath.Join(t.Dir, ".ronly-probe-landlock-"+t.Marker)
	fd, err := unix.Open(try, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err == nil {
		unix.Close(fd)
		unix.Unlink(try)
		return fmt.Errorf("%w: landlock-only mode, but a file could be created in the canary directory %s", ErrOnHost, t.Dir)
	}
	if !errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: landlock-only mode, and creating a file in the canary directory %s failed with %v, not Landlock's EACCES", ErrOnHost, t.Dir, err)
	}
	return nil
}
