package cinit

import "testing"

// The watchdog is forked for a command line that asks for a limit, or
// names a policy file that may set one, among the words ahead of "--".
func TestWantsWatchdog(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--", "sleep", "1"}, false},
		{[]string{"--rw", "/x", "make"}, false},
		{[]string{"--timeout", "1m", "--", "make"}, true},
		{[]string{"--timeout=1m", "make"}, true},
		{[]string{"--cpu-time=1m", "make"}, true},
		{[]string{"--memory", "1G", "make"}, true},
		{[]string{"--pids=10", "make"}, true},
		{[]string{"--policy", "job.toml", "--", "make"}, true},
		{[]string{"--timeouts", "make"}, false},
		{[]string{"--", "make", "--timeout", "1m"}, false},
		{[]string{"-v", "--", "--pids"}, false},
	} {
		if got := WantsWatchdog(tc.args); got != tc.want {
			t.Errorf("WantsWatchdog(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
