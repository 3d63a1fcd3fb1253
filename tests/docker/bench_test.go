package docker_e2e

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPerformance reports `docker ps` through the guard against the daemon
// directly (median of N runs), and what `docker logs -f` keeps up with when
// a container logs 10 MB/s. It fails only on a gross regression (the guard
// under half the daemon's own logs throughput); the numbers go to the log
// (go test -v -run Performance ./tests/docker).
func TestPerformance(t *testing.T) {
	needDocker(t)
	cli := clients[0]
	const n = 21
	medians := map[string]time.Duration{}
	for _, sock := range []string{direct, guardSock} {
		docker(t, cli, sock, "ps") // warm
	}
	var times = map[string][]time.Duration{}
	for i := 0; i < n; i++ {
		for _, sock := range []string{direct, guardSock} {
			start := time.Now()
			docker(t, cli, sock, "ps")
			times[sockName(sock)] = append(times[sockName(sock)], time.Since(start))
		}
	}
	for k, v := range times {
		slices.Sort(v)
		medians[k] = v[len(v)/2]
	}
	t.Logf("docker ps, median of %d: daemon %v, guard %v (+%v)", n, medians["daemon"].Round(100*time.Microsecond),
		medians["guard"].Round(100*time.Microsecond), (medians["guard"] - medians["daemon"]).Round(100*time.Microsecond))

	const rate, secs = 10_000_000, 5
	mbps := map[string]float64{}
	for _, sock := range []string{direct, guardSock} {
		name := "ronly-rate-" + sockName(sock)
		start := time.Now()
		docker(t, cli, direct, "run", "-d", "--name", name, "--network", "none", image, "/logger", "rate", fmt.Sprint(rate), fmt.Sprint(secs))
		total, err := follow(cli, sock, name)
		elapsed := time.Since(start)
		docker(t, cli, direct, "rm", "-f", name)
		if err != nil {
			t.Fatalf("logs -f via %s: %v", sockName(sock), err)
		}
		mbps[sockName(sock)] = float64(total) / 1e6 / elapsed.Seconds()
		t.Logf("logs -f via %s: %.1f MB in %v: %.2f MB/s (container writes %d MB/s for %ds)",
			sockName(sock), float64(total)/1e6, elapsed.Round(time.Millisecond), mbps[sockName(sock)], rate/1_000_000, secs)
		if total < rate*secs {
			t.Errorf("logs -f via %s: %d bytes, want at least %d", sockName(sock), total, rate*secs)
		}
	}
	if mbps["guard"] < mbps["daemon"]/2 {
		t.Errorf("logs -f through the guard at %.2f MB/s, under half the daemon's %.2f MB/s", mbps["guard"], mbps["daemon"])
	}
}

// follow runs `docker logs -f name` until the line "done" and returns the
// bytes of output up to it.
func follow(cli, sock, name string) (int, error) {
	cmd := exec.Command(cli, "-H", "unix://"+sock, "logs", "-f", name)
	cmd.Env = cliEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 1<<20)
	total := 0
	var last []byte
	deadline := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for {
		n, err := out.Read(buf)
		total += n
		last = append(last, buf[:n]...)
		if len(last) > 16 {
			last = last[len(last)-16:]
		}
		if strings.HasSuffix(string(last), "\ndone\n") {
			return total, nil
		}
		if err != nil {
			cmd.Wait() // for all of stderr
			return total, fmt.Errorf("after %d bytes: %v (%s)", total, err, strings.TrimSpace(stderr.String()))
		}
	}
}

// BenchmarkPs runs `docker ps` through the daemon's socket and the guard's.
func BenchmarkPs(b *testing.B) {
	needDocker(b)
	for _, sock := range []string{direct, guardSock} {
		b.Run(sockName(sock), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				docker(b, clients[0], sock, "ps")
			}
		})
	}
}

// TestPerformanceInsideRonly reports what `docker ps` costs inside a ronly
// session — the shim (one more start of ronly's binary) plus the guard —
// against the same CLI run directly on the daemon: the same loop of n runs,
// timed as a whole, so the session's own start is spread over n. Numbers
// only (go test -v -run PerformanceInsideRonly ./tests/docker).
func TestPerformanceInsideRonly(t *testing.T) {
	needDocker(t)
	ronly := ronlyBinary(t)
	cli := clients[0]
	const n = 30
	loop := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do docker ps >/dev/null || exit 1; i=$((i+1)); done`, n)
	env := append(cliEnv(), "DOCKER_HOST=unix://"+direct, "PATH="+strings.TrimSuffix(cli, "/docker")+":/usr/bin:/bin")
	timeIt := func(args ...string) time.Duration {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Dir = env, "/"
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return time.Since(start)
	}
	// The floor of a shim that is a Go program (the shape: shims are the
	// Go front-end): each command pays one more start of ronly's binary.
	// `ronly --version` is that start, plus kong's parse.
	floorLoop := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do %s --version >/dev/null && docker ps >/dev/null || exit 1; i=$((i+1)); done`, n, ronly)
	var direct_, floor, inside []time.Duration
	for r := 0; r < 5; r++ {
		direct_ = append(direct_, timeIt("/bin/sh", "-c", loop))
		floor = append(floor, timeIt("/bin/sh", "-c", floorLoop))
		inside = append(inside, timeIt(ronly, "--no-metrics", "--", "/bin/sh", "-c", loop))
	}
	slices.Sort(direct_)
	slices.Sort(floor)
	slices.Sort(inside)
	d, f, i := direct_[len(direct_)/2]/n, floor[len(floor)/2]/n, inside[len(inside)/2]/n
	round := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	t.Logf("docker ps, per command, median of 5 loops of %d: direct %v; direct after a start of ronly's binary (the floor of a Go shim) %v (+%v); inside ronly through shim and guard %v (+%v, %v over the floor)",
		n, round(d), round(f), round(f-d), round(i), round(i-d), round(i-f))
}
