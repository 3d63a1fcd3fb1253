package shims

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func builtinRules(t testing.TB, tool string) *Rules {
	t.Helper()
	r, err := LoadTool(tool, nil)
	if err != nil || r == nil {
		t.Fatalf("LoadTool(%s) = %v, %v", tool, r, err)
	}
	return r
}

type decideCase struct {
	cmd   string // split on spaces; "''" is an empty argument
	allow bool
	verb  string
	label string
}

var decideCases = []decideCase{
	// docker: allowed.
	{"docker ps", true, "ps", "ps"},
	{"docker ps -a --format {{.ID}}", true, "ps", "ps"},
	{"docker --context x ps", true, "ps", "ps"},
	{"docker --context=x ps", true, "ps", "ps"},
	{"docker -c x ps", true, "ps", "ps"},
	{"docker -cx ps", true, "ps", "ps"},
	{"docker -H unix:///run/docker.sock ps", true, "ps", "ps"},
	{"docker -H=unix:///run/docker.sock ps", true, "ps", "ps"},
	{"docker --host tcp://h:2376 --tlsverify --tlscacert ca.pem images", true, "images", "images"},
	{"docker -D ps", true, "ps", "ps"},
	{"docker --debug ps", true, "ps", "ps"},
	{"docker --debug=false ps", true, "ps", "ps"},
	{"docker -D=false ps", true, "ps", "ps"},
	{"docker -Dl=debug ps", true, "ps", "ps"},
	{"docker -Dldebug ps", true, "ps", "ps"},
	{"docker -l debug logs -f web", true, "logs", "logs"},
	{"docker container ls", true, "container ls", "container ls"},
	{"docker container list -a", true, "container list", "container list"},
	{"docker image inspect x", true, "image inspect", "image inspect"},
	{"docker image ls", true, "image ls", "image ls"},
	{"docker system df", true, "system df", "system df"},
	{"docker system info", true, "system info", "system info"},
	{"docker network ls", true, "network ls", "network ls"},
	{"docker volume inspect v", true, "volume inspect", "volume inspect"},
	{"docker inspect run", true, "inspect", "inspect"},   // after the verb nothing counts
	{"docker logs -- rm", true, "logs", "logs"},          // nor a "--" there
	{"docker ps --help", true, "ps", "ps"},               // help on an allowed verb
	{"docker --help ps", true, "ps", "ps"},               // same
	{"docker", true, "", ""},                             // help
	{"docker --help", true, "", ""},                      // help
	{"docker --version", true, "", ""},                   // version
	{"docker -v", true, "", ""},                          // version
	{"docker -H", true, "", ""},                          // flag without its value: docker errors
	{"docker container", true, "container", "container"}, // help for the management command

	// docker: blocked.
	{"docker run alpine", false, "run", "run"},
	{"docker --context x run alpine", false, "run", "run"},
	{"docker -H unix:///x exec -it c sh", false, "exec", "exec"},
	{"docker rm -f c", false, "rm", "rm"},
	{"docker container rm x", false, "container rm", "container rm"},
	{"docker container run x", false, "container run", "container run"},
	{"docker container frob", false, "container frob", "other"},
	{"docker image pull x", false, "image pull", "image pull"},
	{"docker image prune -a", false, "image prune", "image prune"},
	{"docker system prune -af", false, "system prune", "system prune"},
	{"docker volume rm v", false, "volume rm", "volume rm"},
	{"docker network create n", false, "network create", "network create"},
	{"docker compose up", false, "compose", "compose"},
	{"docker buildx build .", false, "buildx", "buildx"},
	{"docker builder prune", false, "builder", "builder"},
	{"docker context use x", false, "context", "context"},
	{"docker frobnicate", false, "frobnicate", "other"},
	{"docker -- run alpine", false, "--", "other"},
	{"docker -- ps", false, "--", "other"},
	{"docker - ps", false, "-", "other"},
	{"docker '' ps", false, `""`, "other"},
	{"docker --weird ps", false, "--weird", "other"},
	{"docker --weird=1 ps", false, "--weird", "other"},
	{"docker -X ps", false, "-X", "other"},
	{"docker -DX ps", false, "-X", "other"},
	{"docker --config /x ps", false, "--config", "other"},
	{"docker --config=/x ps", false, "--config", "other"},
	{"docker -Dl debug ps", false, "-Dl", "other"},
	{"docker --help run", false, "run", "run"},
	{"docker help run", false, "help", "help"},
	{"docker container -D ls", false, "container -D", "other"},
	{"docker container --help", false, "container --help", "other"},
	{"docker container '' ls", false, `container ""`, "other"},
	{"docker ---context x ps", false, `"---context"`, "other"},
	{"docker --context", true, "", ""},
	{"docker PS", false, "PS", "other"},
	{"docker ps\x00", false, `"ps\x00"`, "other"},
	{"docker --debug false ps", false, "false", "other"}, // a bool flag takes no separate value

	// kubectl: allowed.
	{"kubectl get pods", true, "get", "get"},
	{"kubectl -n prod get pods", true, "get", "get"},
	{"kubectl -nprod get pods", true, "get", "get"},
	{"kubectl -n=prod get pods", true, "get", "get"},
	{"kubectl --namespace prod get pods -o yaml", true, "get", "get"},
	{"kubectl --context=x get pods", true, "get", "get"},
	{"kubectl --context x --kubeconfig /k -v 6 describe pod p", true, "describe", "describe"},
	{"kubectl --v=6 logs p", true, "logs", "logs"},
	{"kubectl -v6 logs p", true, "logs", "logs"},
	{"kubectl --insecure-skip-tls-verify get ns", true, "get", "get"},
	{"kubectl --insecure-skip-tls-verify=true get ns", true, "get", "get"},
	{"kubectl get delete", true, "get", "get"}, // "delete" is a resource name here
	{"kubectl config view", true, "config view", "config view"},
	{"kubectl config current-context", true, "config current-context", "config current-context"},
	{"kubectl --kubeconfig /k config get-contexts", true, "config get-contexts", "config get-contexts"},
	{"kubectl auth can-i get pods", true, "auth can-i", "auth can-i"},
	{"kubectl auth whoami", true, "auth whoami", "auth whoami"},
	{"kubectl top pod", true, "top", "top"},
	{"kubectl cluster-info dump", true, "cluster-info", "cluster-info"},
	{"kubectl version --client", true, "version", "version"},
	{"kubectl", true, "", ""},
	{"kubectl -h", true, "", ""},

	// kubectl: blocked.
	{"kubectl delete pod x", false, "delete", "delete"},
	{"kubectl -n prod delete pod x", false, "delete", "delete"},
	{"kubectl apply -f x.yaml", false, "apply", "apply"},
	{"kubectl exec -it p -- sh", false, "exec", "exec"},
	{"kubectl edit deploy d", false, "edit", "edit"},
	{"kubectl scale --replicas 0 deploy d", false, "scale", "scale"},
	{"kubectl port-forward p 80", false, "port-forward", "port-forward"},
	{"kubectl proxy", false, "proxy", "proxy"},
	{"kubectl debug p", false, "debug", "debug"},
	{"kubectl krew install x", false, "krew", "krew"},
	{"kubectl foo", false, "foo", "other"}, // a plugin: kubectl-foo
	{"kubectl config use-context x", false, "config use-context", "config use-context"},
	{"kubectl config set-credentials u --token t", false, "config set-credentials", "config set-credentials"},
	{"kubectl config --kubeconfig /k view", false, "config --kubeconfig", "other"},
	{"kubectl auth reconcile -f x", false, "auth reconcile", "auth reconcile"},
	{"kubectl -- get pods", false, "--", "other"},
	{"kubectl - get pods", false, "-", "other"},
	{"kubectl '' get pods", false, `""`, "other"},
	{"kubectl --namespace get delete pod x", false, "delete", "delete"},
	{"kubectl --kuberc /x get pods", false, "--kuberc", "other"},
	{"kubectl --insecure_skip_tls_verify get pods", false, "--insecure_skip_tls_verify", "other"},
	{"kubectl -hn delete get pods", false, "-hn", "other"}, // pflag: get; cobra: delete
	{"kubectl help delete", false, "help", "help"},
	{"kubectl --help delete", false, "delete", "delete"},
}

func splitCmd(cmd string) (tool string, args []string) {
	f := strings.Split(cmd, " ")
	for i := range f {
		if f[i] == "''" {
			f[i] = ""
		}
	}
	return f[0], f[1:]
}

func TestDecide(t *testing.T) {
	for _, c := range decideCases {
		tool, args := splitCmd(c.cmd)
		r := builtinRules(t, tool)
		got := r.Decide(args)
		want := Decision{Allowed: c.allow, Verb: c.verb, Label: c.label}
		if got != want {
			t.Errorf("%q: got %+v, want %+v", c.cmd, got, want)
		}
	}
}

// The labels are bounded: a rule file's words or "other".
func TestLabelsBounded(t *testing.T) {
	r := builtinRules(t, "docker")
	for _, args := range [][]string{{"x" + strings.Repeat("y", 100)}, {"container", "zz"}, {"--" + strings.Repeat("a", 100)}} {
		if d := r.Decide(args); d.Label != other {
			t.Errorf("%q: label %q", args, d.Label)
		}
	}
}

// TestBuiltinRulesParse: Load leaves the built-in files to Tool, so a
// mistake in one must show here.
func TestBuiltinRulesParse(t *testing.T) {
	for _, name := range Builtin() {
		if _, err := parseBuiltin(name); err != nil {
			t.Errorf("built-in rules for %s: %v", name, err)
		}
	}
}

func TestBuiltin(t *testing.T) {
	if got := Builtin(); !reflect.DeepEqual(got, []string{"docker", "kubectl"}) {
		t.Errorf("Builtin() = %q", got)
	}
	s, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Tool("/dev/ronly-shims/docker"); !ok {
		t.Error("no docker")
	}
	for _, name := range []string{"ronly", "docker-compose", "kubectl-foo", "sh", ""} {
		if _, ok := s.Tool(name); ok {
			t.Errorf("Tool(%q) found", name)
		}
		if r, err := LoadTool(name, nil); r != nil || err != nil {
			t.Errorf("LoadTool(%q) = %v, %v", name, r, err)
		}
	}
}

const systemctlRules = `# systemctl: look, do not touch.
tool systemctl
bare allow                      # systemctl alone lists units
value-flags -H --host -M --machine -t --type --state -p --property -n --lines -o --output
bool-flags --user --system -a --all --no-pager -l --full -q --quiet
allow status show list-units list-unit-files list-timers is-active is-enabled is-failed cat
known start stop restart reload enable disable mask unmask kill daemon-reload edit
`

func TestExtraRules(t *testing.T) {
	dir, dir2 := t.TempDir(), t.TempDir()
	write(t, filepath.Join(dir, "systemctl.rules"), systemctlRules)
	write(t, filepath.Join(dir, "docker.rules"), "tool docker\nallow ps run\n")
	write(t, filepath.Join(dir2, "docker.rules"), "tool docker\nallow version\n")
	write(t, filepath.Join(dir, "README"), "not rules")
	s, err := Load([]string{dir, dir2})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Tools(); !reflect.DeepEqual(got, []string{"docker", "kubectl", "systemctl"}) {
		t.Errorf("Tools() = %q", got)
	}
	sc, _ := s.Tool("systemctl")
	for cmd, want := range map[string]Decision{
		"status nginx":          {true, "status", "status"},
		"--user status x":       {true, "status", "status"},
		"-t service list-units": {true, "list-units", "list-units"},
		"restart nginx":         {false, "restart", "restart"},
		"isolate rescue":        {false, "isolate", "other"},
		"--now stop x":          {false, "--now", "other"},
	} {
		if got := sc.Decide(strings.Fields(cmd)); got != want {
			t.Errorf("systemctl %s: got %+v, want %+v", cmd, got, want)
		}
	}
	if got := sc.Decide(nil); !got.Allowed {
		t.Errorf("bare systemctl blocked")
	}
	// The first directory wins, over the other and over the built-in file.
	d, _ := s.Tool("docker")
	if !d.Decide([]string{"run"}).Allowed || d.Decide([]string{"version"}).Allowed {
		t.Errorf("docker rules from %s", d.Source)
	}
	d, err = LoadTool("docker", []string{dir2, dir})
	if err != nil || !d.Decide([]string{"version"}).Allowed || d.Decide([]string{"ps"}).Allowed {
		t.Errorf("LoadTool: docker rules from %s, %v", d.Source, err)
	}
	// Without a bare line, the tool alone is blocked.
	if d.Decide(nil).Allowed {
		t.Error("bare docker allowed without a bare line")
	}
	// A broken file breaks Load, but only its own tool in LoadTool.
	write(t, filepath.Join(dir2, "broken.rules"), "tool broken\nallow ok\nalow typo\n")
	if _, err := Load([]string{dir2}); err == nil || !strings.Contains(err.Error(), "broken.rules:3:") {
		t.Errorf("Load: %v", err)
	}
	if r, err := LoadTool("kubectl", []string{dir2}); r == nil || err != nil {
		t.Errorf("LoadTool(kubectl) beside a broken file: %v", err)
	}
	if _, err := LoadTool("broken", []string{dir2}); err == nil {
		t.Error("LoadTool(broken) succeeded")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"allow ps\n", "x.rules:1: the first line must be"},
		{"", "x.rules: no tool line"},
		{"# only a comment\n\n", "x.rules: no tool line"},
		{"tool y\n", `x.rules:1: tool "y" in a file named x.rules`},
		{"tool x\ntool x\n", "x.rules:2: a second tool line"},
		{"tool x\nfrob a\n", `x.rules:2: unknown directive "frob"`},
		{"tool x\nallow\n", "x.rules:2: allow lists no verbs"},
		{"tool x\nallow a b a\n", "x.rules:2: verb a listed twice"},
		{"tool x\nallow a\nknown a\n", "x.rules:3: verb a listed twice"},
		{"tool x\nallow -a\n", `x.rules:2: bad verb "-a"`},
		{"tool x\nallow a/b\n", `x.rules:2: bad verb "a/b"`},
		{"tool x\nvalue-flags -n\nbool-flags -n\n", "x.rules:3: flag -n listed twice"},
		{"tool x\nvalue-flags n\n", `x.rules:2: bad flag "n"`},
		{"tool x\nvalue-flags -ab\n", `x.rules:2: bad flag "-ab"`},
		{"tool x\nbool-flags --\n", `x.rules:2: bad flag "--"`},
		{"tool x\nvalue-flags\n", "x.rules:2: value-flags lists no flags"},
		{"tool x\nallow g\ngroup g a\n", "x.rules:3: g is a verb and a management command"},
		{"tool x\ngroup g a\nallow g\n", "x.rules:3: verb g listed twice"},
		{"tool x\ngroup g a a\n", "x.rules:2: verb g a listed twice"},
		{"tool x\nknown-sub g a\n", "x.rules:2: known-sub g: g is not declared"},
		{"tool x\ngroup g a\nknown-sub g a\n", "x.rules:3: verb g a listed twice"},
		{"tool x\nknown-sub g a\ngroup g a\n", "x.rules:3: verb g a listed twice"},
		{"tool x\nbare maybe\n", "x.rules:2: bare takes allow or block"},
		{"tool x\nbare allow\nbare block\n", "x.rules:3: a second bare line"},
	} {
		_, err := Parse("x.rules", strings.NewReader(c.text))
		var pe *ParseError
		if err == nil || !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %s…", c.text, err, c.want)
		}
	}
	for _, name := range []string{"ronly"} {
		if _, err := Parse(name+".rules", strings.NewReader("tool "+name+"\n")); err == nil {
			t.Errorf("tool %s accepted", name)
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
