package sandbox

import (
	"golang.org/x/sys/unix"
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
