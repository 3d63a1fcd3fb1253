package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"ronly.dev/ronly/go/kubeguard"
	"ronly.dev/ronly/tests/kube"
)

// kubeBench measures the Kubernetes guard against a real kube-apiserver
// (tests/kube's cluster; tools/kube/build builds it):
//
//	get pods   `kubectl get pods` through the guard vs straight to the API
//	           server, interleaved; the difference of the medians is what
//	           the guard adds (a TLS hop on loopback and a fresh upstream
//	           request); and inside one ronly session, where each connect
//	           to the guard also takes the supervisor's mediation
//	watch      the events/s one watch carries: the API server sends an
//	           ADDED event for each of n existing config maps as fast as
//	           it can, through the guard and directly
func kubeBench(ronly string, runs int) {
	dir, err := os.MkdirTemp("/var/tmp", "ronly-bench-kube-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fatal(err)
	}
	c, err := kube.Start(dir)
	if err != nil {
		fatal(err)
	}
	defer c.Stop()
	guardCfg, guardURL, stop := benchGuard(c, dir)
	defer stop()

	vs := []variant{
		{"kubectl get pods, direct", []string{c.Kubectl, "--kubeconfig", c.AdminConfig, "get", "pods"}},
		{"  through the guard", []string{c.Kubectl, "--kubeconfig", guardCfg, "get", "pods"}},
	}
	t := timeRuns(vs, runs)
	direct, guarded := median(t[0]), median(t[1])
	// What the guard adds: the median of each round's difference (a slow
	// round slows both).
	added := make([]time.Duration, len(t[0]))
	for i := range added {
		added[i] = t[1][i] - t[0][i]
	}
	fmt.Println("kube")
	fmt.Printf("  %-34s %8.2f ms\n", vs[0].name, ms(direct))
	fmt.Printf("  %-34s %8.2f ms   %+.2f ms median per round (target: at most +10 ms)\n", vs[1].name, ms(guarded), ms(median(added)))
	if ronly != "" {
		inside, outside := kubectlLoop(ronly, c, runs)
		fmt.Printf("  %-34s %8.2f ms   %+.2f ms vs the same loop outside (%.2f ms)\n", "  inside ronly (guard + mediation)", ms(inside), ms(inside-outside), ms(outside))
	}

	const n = 2000
	if err := makeConfigMaps(c, n); err != nil {
		fatal(err)
	}
	d := watchRate(c.HTTPClient(), c.Server, c.AdminToken, n)
	g := watchRate(guardClient(guardCfg), guardURL, "", n)
	fmt.Printf("  %-34s %8.0f events/s\n", fmt.Sprintf("watch of %d events, direct", n), float64(n)/d.Seconds())
	fmt.Printf("  %-34s %8.0f events/s (target: at least 1,000)\n", "  through the guard", float64(n)/g.Seconds())
	fmt.Println()
}

// benchGuard serves a guard in this process with the admin's credential.
func benchGuard(c *kube.Cluster, dir string) (cfg, url string, stop func()) {
	up, err := kubeguard.FromKubeconfig([]string{c.AdminConfig})
	if err != nil {
		fatal(err)
	}
	serving, err := kubeguard.NewServing(net.IPv4(127, 0, 0, 1))
	if err != nil {
		fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	g := &kubeguard.Guard{Upstream: up}
	go g.Serve(serving.Listener(ln))
	url = "https://" + ln.Addr().String()
	cfg = filepath.Join(dir, "guard.kubeconfig")
	if err := os.WriteFile(cfg, kubeguard.Kubeconfig(url, serving.CAPEM, kube.Namespace), 0o644); err != nil {
		fatal(err)
	}
	return cfg, url, func() { ln.Close() }
}

// guardClient trusts the CA in the guard's kubeconfig.
func guardClient(cfg string) *http.Client {
	up, err := kubeguard.FromKubeconfig([]string{cfg})
	if err != nil {
		fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: up.TLS.RootCAs}}}
}

// kubectlLoop times `kubectl get pods` in a ronly session (its KUBECONFIG:
// the session's guard) against the same loop outside: rounds of a session
// of n runs, less an empty session's time, then n runs outside,
// interleaved; the medians of the rounds' per-run times.
func kubectlLoop(ronly string, c *kube.Cluster, runs int) (inside, outside time.Duration) {
	const n = 5
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do %s get pods >/dev/null || exit 1; i=$((i+1)); done`, n, c.Kubectl)
	env := append(kube.KubectlEnv(), "KUBECONFIG="+c.AdminConfig)
	timed := func(argv ...string) time.Duration {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env, cmd.Stderr = env, os.Stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			fatal(fmt.Errorf("%s: %v", strings.Join(argv, " "), err))
		}
		return time.Since(t0)
	}
	var in, out []time.Duration
	for r := 0; r < runs/n+3; r++ {
		empty := timed(ronly, "--no-metrics", "--", "/bin/true") // the session's own start and end
		in = append(in, (timed(ronly, "--no-metrics", "--", "/bin/sh", "-c", script)-empty)/n)
		out = append(out, timed("/bin/sh", "-c", script)/n)
	}
	return median(in), median(out)
}

// makeConfigMaps creates n config maps in the bench's own namespace.
func makeConfigMaps(c *kube.Cluster, n int) error {
	if _, err := c.Admin("create", "namespace", "ronly-bench"); err != nil {
		return err
	}
	client := c.HTTPClient()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-%d"},"data":{"i":"%d"}}`, i, i)
				req, _ := http.NewRequest("POST", c.Server+"/api/v1/namespaces/ronly-bench/configmaps", bytes.NewReader([]byte(body)))
				req.Header.Set("Authorization", "Bearer "+c.AdminToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("create cm-%d: %s", i, resp.Status)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// watchRate opens a watch of the bench namespace's config maps with no
// resourceVersion (the API server first sends an ADDED event for each
// existing one) and returns how long the first n events took.
func watchRate(client *http.Client, server, token string, n int) time.Duration {
	req, _ := http.NewRequest("GET", server+"/api/v1/namespaces/ronly-bench/configmaps?watch=true&allowWatchBookmarks=false", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fatal(fmt.Errorf("watch via %s: %s", server, resp.Status))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	got := 0
	for got < n && sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"type":"ADDED"`)) {
			got++
		}
	}
	if got < n {
		fatal(fmt.Errorf("watch via %s: %d of %d events: %v", server, got, n, sc.Err()))
	}
	return time.Since(t0)
}
