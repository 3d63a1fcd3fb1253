package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	cinit "ronly.dev/ronly/init"
)

// usernsShares are the per-user kernel objects a session shares with its
// user on the host, and the part of the host's limit a session may take.
// The kernel charges what a process in a user namespace creates to that
// namespace's limit (/proc/sys/user/max_* as seen inside it, INT_MAX when
// it is made) and to every ancestor's, up to the host's: without a limit of
// its own, one session could take all 128 of root's inotify instances and
// leave none for the host. Instances are few and each costs little kernel
// memory: half. Watches and marks pin memory (about 1 kB each) and a
// session rarely needs many: a quarter.
var usernsShares = []struct {
	name    string
	divisor uint64
}{
	{"max_inotify_instances", 2},
	{"max_inotify_watches", 4},
	{"max_fanotify_groups", 2}, // Linux 5.13
	{"max_fanotify_marks", 4},
}

// usernsNoNamespaces are the namespace limits set to 0 in the session's
// user namespace: seccomp already refuses new namespaces, and with these
// the kernel refuses them too (ENOSPC) and none is ever charged to the
// host's counts. The init makes its own namespaces before it sets them.
var usernsNoNamespaces = []string{
	"max_user_namespaces", "max_mnt_namespaces", "max_pid_namespaces", "max_net_namespaces",
	"max_ipc_namespaces", "max_uts_namespaces", "max_cgroup_namespaces",
	"max_time_namespaces", // Linux 5.6
}

// usernsLimits are the limits the init sets in the session's user
// namespace, from this process's own view of /proc/sys/user: the host's
// limits, or those of the namespace ronly itself runs in. A limit this
// kernel does not have is left out; one it has but cannot be read is a
// warning.
func usernsLimits(dir string, warn func(string)) []cinit.UsernsLimit {
	var out []cinit.UsernsLimit
	for _, s := range usernsShares {
		b, err := os.ReadFile(dir + "/" + s.name)
		if os.IsNotExist(err) {
			continue
		}
		v, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || perr != nil {
			warn(fmt.Sprintf("%s/%s unreadable (%v): the session's share is not bounded", dir, s.name, orErr(err, perr)))
			continue
		}
		share := v / s.divisor
		if share == 0 && v > 0 {
			share = 1
		}
		out = append(out, cinit.UsernsLimit{Name: s.name, Value: share})
	}
	for _, name := range usernsNoNamespaces {
		if _, err := os.Stat(dir + "/" + name); err == nil {
			out = append(out, cinit.UsernsLimit{Name: name, Value: 0})
		}
	}
	return out
}

func orErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
