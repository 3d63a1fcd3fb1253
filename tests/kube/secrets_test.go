package kube_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ronly.dev/ronly/tests/kube"
)

// The secret the cluster's setup applied from outside (cluster.go): its
// value, as stored and base64 as the API serves data.
const (
	secretValue  = "hunter2"
	secretBase64 = "aHVudGVyMg=="
	// liveValue is the value of the secrets created from outside while a
	// watch runs inside.
	liveValue  = "s3cret-live-value"
	liveBase64 = "czNjcmV0LWxpdmUtdmFsdWU="
)

// TestHideSecrets reads secrets inside ronly, in the debug and ci profiles,
// in every way kubectl and a raw client can (yaml, json, jsonpath, the
// table, describe, a raw watch, a list-and-watch that sees secrets created
// from outside while it runs, a protobuf Accept from curl): with
// --kube-hide-secrets no value reaches the session, neither in data nor in
// the copy `kubectl apply` left in the last-applied annotation, while the
// keys do; without the flag the same reads show the values. A redaction is
// not a refusal: nothing is counted. The cluster is unchanged.
func TestHideSecrets(t *testing.T) {
	needCluster(t)
	ns := kube.Namespace
	script := `exec 2>&1
timeout 12 kubectl get secrets -n ronly-watch -w --watch-only -o json > "${TMPDIR:-/tmp}/live.txt" 2>&1 &
printf '\n@@yaml\n'; kubectl get secret db-password -o yaml
printf '\n@@json\n'; kubectl get secret db-password -o json
printf '\n@@data\n'; kubectl get secret db-password -o jsonpath='{.data}'
printf '\n@@table\n'; kubectl get secrets -o wide
printf '\n@@describe\n'; kubectl describe secret db-password
printf '\n@@list\n'; kubectl get secrets -A -o json
printf '\n@@rawwatch\n'; kubectl get --raw '/api/v1/namespaces/` + ns + `/secrets?watch=1&timeoutSeconds=2'
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
printf '\n@@proto\n'; curl -sk -H 'Accept: application/vnd.kubernetes.protobuf' "$server/api/v1/namespaces/` + ns + `/secrets/db-password"
printf '\n@@protolist\n'; curl -sk -H 'Accept: application/vnd.kubernetes.protobuf' "$server/api/v1/namespaces/` + ns + `/secrets"
wait; printf '\n@@live\n'; cat "${TMPDIR:-/tmp}/live.txt"
`
	env := append(kube.KubectlEnv(), "KUBECONFIG="+cluster.AdminConfig, "PATH="+filepath.Dir(cluster.Kubectl)+":/usr/local/bin:/usr/bin:/bin")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"debug", []string{"--profile", "debug"}},
		{"ci", []string{"--profile", "ci", "--keepenv", "PATH"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, hide := range []bool{true, false} {
				args := c.args
				if hide {
					args = append(append([]string{}, args...), "--kube-hide-secrets")
				}
				stop := liveCreates(t, 500*time.Millisecond, func(name string) []string {
					return []string{"secret", "generic", name, "--from-literal=token=" + liveValue}
				})
				s := runRonly(t, args, env, script)
				stop()
				parts := sections(s.out)
				if hide {
					for _, v := range []string{secretValue, secretBase64, liveValue, liveBase64} {
						if strings.Contains(s.out, v) {
							t.Errorf("--kube-hide-secrets: %q reached the session:\n%s", v, s.out)
						}
					}
					if got := strings.TrimSpace(parts["data"]); got != `{"password":""}` {
						t.Errorf("--kube-hide-secrets: jsonpath {.data} = %q, want the key with no value", got)
					}
					for _, sec := range []string{"yaml", "json", "list", "rawwatch", "proto", "protolist", "live"} {
						if !strings.Contains(parts[sec], "password") && !strings.Contains(parts[sec], "token") {
							t.Errorf("--kube-hide-secrets: %s shows no key:\n%s", sec, parts[sec])
						}
					}
					if !strings.Contains(parts["yaml"], "last-applied-configuration") {
						t.Errorf("--kube-hide-secrets: the annotation is gone, not redacted:\n%s", parts["yaml"])
					}
					if !strings.Contains(parts["live"], "live-") {
						t.Errorf("--kube-hide-secrets: the watch saw no live secret:\n%s", parts["live"])
					}
					// The table answers as outside (it holds no value).
					if got, want := dropLastColumn(parts["table"]), dropLastColumn(outside("get", "secrets", "-n", ns, "-o", "wide")); got != want {
						t.Errorf("--kube-hide-secrets: table inside:\n%s\noutside:\n%s", parts["table"], want)
					}
				} else {
					for sec, v := range map[string]string{"yaml": secretBase64, "json": secretValue, "data": secretBase64,
						"list": secretBase64, "rawwatch": secretBase64, "proto": secretValue, "live": liveBase64} {
						if !strings.Contains(parts[sec], v) {
							t.Errorf("without the flag: %s lacks %q:\n%s", sec, v, parts[sec])
						}
					}
				}
				if api := s.report.Refused["api"]; len(api) != 0 {
					t.Errorf("reads refused: %v\n%s", api, s.out)
				}
				if strings.Contains(s.metrics, "ronly_blocked_api_calls_total{") {
					t.Errorf("reads counted as refusals:\n%s", s.metrics)
				}
			}
		})
	}
	assertUnchanged(t)
}

// dropLastColumn is a table without its last column (AGE, which may have
// moved on between inside and outside).
func dropLastColumn(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 {
			f = f[:len(f)-1]
		}
		out = append(out, strings.Join(f, " "))
	}
	return strings.Join(out, "\n")
}
