package sandbox

import (
	"golang.org/x/sys/unix"

	"ronly.dev/ronly/go/policy"
)

// LandlockABI returns the kernel's Landlock ABI version, or 0 when Landlock
// is missing or disabled (ENOSYS, EOPNOTSUPP).
func LandlockABI() int {
	const createRulesetVersion = 1 << 0
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, createRulesetVersion)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// landlockMissing says, for a kernel at ABI abi, what a floor of min
// would have given.
func landlockMissing(abi, min int) string {
	switch {
	case abi == 0:
		return "Landlock is not enabled in this kernel (CONFIG_SECURITY_LANDLOCK, lsm=landlock)"
	case abi < 6 && min >= 6:
		return "without ABI 6 Landlock cannot scope signals and abstract unix sockets, so the sandbox could signal host processes"
	default:
		return "the kernel's Landlock lacks rights the floor asks for"
	}
}

// Admit refuses a policy this kernel cannot give (a Landlock floor above
// its ABI, a mode it cannot have) with the error Run would give, before
// anything is started: for callers that run several sessions of it, such
// as the probe, whose first sessions leave some layers out.
func Admit(p *policy.Policy) error {
	_, err := admit(p, LandlockABI())
	return err
}
