package sandbox

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// TestNonsFallbackNeedsLandlock: auto mode falls back to landlock-only mode
// after a namespaced mode's failure only where the session would get
// Landlock: not in a configuration that leaves it out, nor on a kernel
// without it (Debian 11's 5.10, where the failure is mount_setattr's
// ENOSYS), where the session would have nothing but the files' own
// permissions.
func TestNonsFallbackNeedsLandlock(t *testing.T) {
	failed := fmt.Errorf("start: %w", &cinit.Error{Step: "mount_setattr(AT_RECURSIVE, RDONLY)", Detail: "/", Errno: unix.ENOSYS})
	withLandlock := LandlockABI() > 0 // this kernel's: the fallback's only when it has Landlock
	for _, c := range []struct {
		name string
		p    policy.Policy
		want bool
	}{
		{"auto", policy.Policy{Mode: policy.ModeAuto}, withLandlock},
		{"auto without Landlock", policy.Policy{Mode: policy.ModeAuto, SkipLandlock: true}, false},
		{"forced userns", policy.Policy{Mode: policy.ModeUserNS}, false},
	} {
		if _, ok := nonsFallback(&c.p, failed); ok != c.want {
			t.Errorf("%s (kernel's Landlock ABI %d): fallback %t, want %t", c.name, LandlockABI(), ok, c.want)
		}
	}
}
