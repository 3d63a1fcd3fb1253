package metrics_e2e

import (
	"fmt"
	"testing"
	"time"

	"ronly.dev/ronly/go/metrics"
)

// session is the report of one test session, with known counts: each adds
// 2 mount and 1 ptrace refusals, 1 unlink, 1 "docker rm", 1 docker API
// kill, and 1.5 seconds.
func session(t testing.TB, i int) metrics.Report {
	start := time.Now().Add(-1500 * time.Millisecond)
	return metrics.Report{
		Session:         fmt.Sprintf("%s-%d-%d", sanitize(t.Name()), start.UnixNano(), i),
		Start:           start,
		End:             start.Add(1500 * time.Millisecond),
		LandlockABI:     5,
		SeccompMode:     metrics.SeccompNotify,
		BlockedSyscalls: map[string]uint64{"mount": 2, "ptrace": 1},
		BlockedWrites:   map[string]uint64{"unlink": 1},
		BlockedCommands: map[string]uint64{"docker rm": 1},
		BlockedAPICalls: map[string]uint64{"POST /containers/{id}/kill": 1},
	}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// expected is what n test sessions add up to, as sample keys of the
// exposition: client_golang writes the labels of a sample sorted by name.
func expected(n int) map[string]float64 {
	f := float64(n)
	return map[string]float64{
		`ronly_blocked_syscalls_total{syscall="mount"}`:                                            2 * f,
		`ronly_blocked_syscalls_total{syscall="ptrace"}`:                                           f,
		`ronly_blocked_writes_total{operation="unlink"}`:                                           f,
		`ronly_blocked_commands_total{subcommand="rm",tool="docker"}`:                              f,
		`ronly_blocked_api_calls_total{api="docker",resource="/containers/{id}/kill",verb="POST"}`: f,
		`ronly_sessions_total{result="ok"}`:                                                        f,
		`ronly_sessions_total{result="failed"}`:                                                    0,
		`ronly_session_duration_seconds_sum`:                                                       1.5 * f,
		`ronly_session_duration_seconds_count`:                                                     f,
		`ronly_session_duration_seconds_bucket{le="1"}`:                                            0,
		`ronly_session_duration_seconds_bucket{le="5"}`:                                            f,
		`ronly_landlock_abi`:                                                                       5,
		`ronly_seccomp_counting`:                                                                   1,
	}
}

// mismatch describes how got differs from want, or is empty.
func mismatch(got, want map[string]float64) string {
	var s string
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			s += fmt.Sprintf("%s = %v (present %v), want %v; ", k, g, ok, w)
		}
	}
	return s
}
