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
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: the unit file is not verified")
		return
	}
	unit, err := os.ReadFile(filepath.Join(deploy, "ronly-exporter.service"))
	if err != nil {
		t.Fatal(err)
	}
	unitPath := filepath.Join(dir, "ronly-exporter.service")
	os.WriteFile(unitPath, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/ronly-exporter", exporterBin)), 0o644)
	if out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
