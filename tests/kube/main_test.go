// The tests of this package run against one real cluster (cluster.go)
// started by TestMain: kubectl outside, and kubectl, curl and a client-go
// program inside ronly through its Kubernetes guard. They need root, etcd
// and the binaries of tools/kube/build: missing ones skip, except under
// CI=true, where they fail.
package kube_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"ronly.dev/ronly/tests/kube"
)

var (
	skipReason string
	tmp        string
	cluster    *kube.Cluster
	// atStart is the namespace's objects once the cluster was set up.
	atStart string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := kube.Missing(); reason != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "kube tests: "+reason+" (CI=true, so this fails instead of skipping)")
			return 1
		}
		skipReason = reason
		return m.Run()
	}
	var err error
	// Under /var/tmp, not /tmp: ronly replaces /tmp with a tmpfs of its own,
	// and the sessions must see the kubeconfigs.
	if tmp, err = os.MkdirTemp("/var/tmp", "ronly-kube-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster, err = kube.Start(tmp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube tests: start the cluster:", err)
		return 1
	}
	defer cluster.Stop()
	if atStart, err = cluster.Snapshot(); err != nil {
		fmt.Fprintln(os.Stderr, "kube tests:", err)
		return 1
	}
	code := m.Run()
	// Whatever ran, the cluster's objects are as they were.
	now, err := cluster.Snapshot()
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "kube tests: final snapshot:", err)
		code = 1
	case now != atStart:
		fmt.Fprintf(os.Stderr, "kube tests: THE CLUSTER CHANGED:\nbefore:\n%s\nafter:\n%s\n", atStart, now)
		code = 1
	}
	return code
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// assertUnchanged fails t when any object of the namespace changed since
// the setup.
func assertUnchanged(t *testing.T) {
	t.Helper()
	now, err := cluster.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if now != atStart {
		t.Errorf("THE CLUSTER CHANGED:\nbefore:\n%s\nafter:\n%s", atStart, now)
	}
}

// TestClusterOutside: the cluster answers kubectl as the tests expect it
// to, with the reader allowed to read and nothing else.
func TestClusterOutside(t *testing.T) {
	needCluster(t)
	out, err := cluster.KubectlAs(cluster.ReaderConfig, "", "get", "pods", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "pod/web-0 pod/web-1" {
		t.Errorf("reader: get pods = %q", out)
	}
	if out, err := cluster.KubectlAs(cluster.ReaderConfig, "", "get", "configmap", "settings", "-o", "jsonpath={.data.mode}"); err != nil || out != "read-only" {
		t.Errorf("reader: configmap settings mode = %q, %v", out, err)
	}
	if _, err := cluster.KubectlAs(cluster.ReaderConfig, "", "delete", "pod", "web-0"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("reader: delete pod: %v, want Forbidden", err)
	}
	if out, err := cluster.KubectlAs(cluster.ReaderConfig, "", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "ronly-reader" {
		t.Errorf("reader: auth whoami = %q, %v", out, err)
	}
	out, err = cluster.Admin("version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, `"gitVersion": "`+kube.Version+`"`) != 2 {
		t.Errorf("kubectl and kube-apiserver are not both %s:\n%s", kube.Version, out)
	}
	assertUnchanged(t)
}
