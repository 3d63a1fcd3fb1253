package metrics_e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployFiles: the example scrape config, the alert rules (with their
// unit tests) and the systemd unit in tools/deploy pass the checks of the
// tools that will read them.
func TestDeployFiles(t *testing.T) {
	promtool := needTool(t, "promtool")
	deploy := filepath.Join(repo, "tools", "deploy")
	alerts := filepath.Join(deploy, "alerts.yml")
	dir := t.TempDir()
	check := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	check("rules", "check", "rules", alerts)

	// A whole prometheus.yml around the example: Debian's Prometheus (2.42)
	// predates scrape_config_files, so the example is a scrape_configs:
	// block to paste, and is pasted here.
	scrape, err := os.ReadFile(filepath.Join(deploy, "prometheus-scrape.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	full := "global:\n  scrape_interval: 15s\nrule_files:\n  - " + alerts + "\n" + string(scrape)
	if err := os.WriteFile(cfg, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	check("config", "check", "config", cfg)

	// The alerts fire when they should (promtool's rule unit tests).
	tests, err := os.ReadFile(filepath.Join(repo, "tests", "metrics", "testdata", "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	testsPath := filepath.Join(dir, "alerts_test.yml")
	os.WriteFile(testsPath, []byte(strings.ReplaceAll(string(tests), "ALERTS_YML", alerts)), 0o644)
	check("rule tests", "test", "rules", testsPath)

	// The unit, with ExecStart pointing at the ronly-exporter under test
	// (systemd-analyze verify fails when ExecStart's binary is missing).
	analyze := needTool(t, "systemd-analyze")
	// The sweep's service and timer likewise, verified together (the
	// timer names its service).
	paths := map[string]string{"/usr/local/bin/ronly-exporter": exporterBin, "/usr/local/bin/ronly ": ronly + " "}
	var units []string
	for _, name := range []string{"ronly-exporter.service", "ronly-sweep.service", "ronly-sweep.timer"} {
		unit, err := os.ReadFile(filepath.Join(deploy, name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(unit)
		for from, to := range paths {
			text = strings.ReplaceAll(text, from, to)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, path)
	}
	if out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
