package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"ronly.dev/ronly/go/mountinfo"
	"ronly.dev/ronly/go/policy"
	cinit "ronly.dev/ronly/init"
)

// Kubernetes credentials are readable files: a read-only mount does not
// stop a token from being read and used against the API server, with
// whatever that token may do. So the supervisor finds them before the
// session starts and the init covers them in the session's mount
// namespace: a kubeconfig, a client key or a token file gets an empty
// read-only file bound over it (cinit.MountHide), and a service-account
// token directory a read-only snapshot of its own (cinit.MountHideDir and
// cinit.MountShow) in which ca.crt and namespace show the host's files and
// every other name reads empty.
//
// The directory is covered as a whole, not file by file, because kubelet
// rotates projected tokens: it writes a new ..TIMESTAMP directory, points
// the ..data symlink at it and removes the old one. Removing a file that is
// a mount point in another namespace detaches that mount (since Linux
// 3.18), so a bind over the old token would fall away within the hour and
// the new token would be readable. A cover over the directory itself stays:
// kubelet never removes the volume's directory while the pod lives.

const (
	// maxCredRecords bounds the init records hiding credentials take
	// (cinit.MaxMounts in all). A node with 110 pods, each with a
	// projected token volume of three files, takes 440.
	maxCredRecords = 600
	// maxShown bounds the names of one token directory that are shown;
	// the rest are absent inside.
	maxShown = 32
	// maxKubeconfig bounds a kubeconfig ronly parses.
	maxKubeconfig = 4 << 20
)

// notSecret are the names of a token directory that hold no credential:
// the cluster's CA, the pod's namespace, OpenShift's service CA.
var notSecret = map[string]bool{"ca.crt": true, "namespace": true, "service-ca.crt": true}

// tokenDirSuffixes are where token directories lie below a mount of
// secrets (a container runtime binds /run/secrets; kubelet mounts each
// projected volume at …/serviceaccount).
var tokenDirSuffixes = []string{
	"kubernetes.io/serviceaccount",
	"eks.amazonaws.com/serviceaccount",
	"azure/tokens",
}

// wellKnownTokenDirs are looked at whether or not they are mount points.
var wellKnownTokenDirs = []string{"/run/secrets", "/var/run/secrets"}

// keyTrees hold a cluster's private keys on a control-plane node (the CA's
// key signs client certificates of any user; sa.key signs any token; etcd's
// keys reach every Secret): each key file in them reads empty.
var keyTrees = []string{"/etc/kubernetes/pki"}

// keyDirs hold a node's client keys: kubelet's, whose
// kubelet-client-current.pem is a symlink kubelet points at a new file when
// it rotates its certificate. The directory is covered as a token directory
// is, with only its certificates (*.crt) shown.
var keyDirs = []string{"/var/lib/kubelet/pki"}

const (
	// maxKeyTreeFiles and maxKeyTreeDepth bound the walk of a key tree.
	maxKeyTreeFiles = 512
	maxKeyTreeDepth = 3
)

// CredPlan is what a session hides: the records for the init and the
// paths, for -v and the report.
type CredPlan struct {
	mounts []cinit.Mount
	// Hidden are the credential files and token directories that read
	// empty (a token directory: all but ca.crt and namespace), as
	// resolved on the host, sorted.
	Hidden []string
	// Notes say what ronly found but cannot cover with a mount: a
	// kubeconfig's exec plugin or auth provider (the program and its own
	// credential store stay where they are).
	Notes []string
	// unhidden is set when the session runs where nothing can be
	// covered (warnUnhidden).
	unhidden bool
}

// credScan holds what a scan found so far.
type credScan struct {
	covered func(string) bool
	plan    CredPlan
	files   []string
	dirs    []coverDir
	seen    map[string]bool
	// keyTrees, keyDirs: where keys lie (the variables; tests set others).
	keyTrees, keyDirs []string
}

// coverDir is a directory covered as a whole, and which of its names show
// the host's file.
type coverDir struct {
	path string
	show func(name string) bool
}

// KubeConfigPaths lists the kubeconfigs ronly looks for, in this order:
// explicit (--kube-config), $KUBECONFIG, ~/.kube/config of $HOME and,
// where readable, every user's in /etc/passwd (root inside reads them
// all), /etc/kubernetes/*.conf and /var/lib/kubelet/kubeconfig. Paths are
// as found (not resolved); missing ones are left out.
func KubeConfigPaths(explicit []string, env func(string) string) []string {
	var cand []string
	cand = append(cand, explicit...)
	for _, p := range filepath.SplitList(env("KUBECONFIG")) {
		if p != "" {
			cand = append(cand, p)
		}
	}
	if h := env("HOME"); h != "" {
		cand = append(cand, filepath.Join(h, ".kube", "config"))
	}
	for _, h := range passwdHomes("/etc/passwd") {
		cand = append(cand, filepath.Join(h, ".kube", "config"))
	}
	confs, _ := filepath.Glob("/etc/kubernetes/*.conf")
	sort.Strings(confs)
	cand = append(cand, confs...)
	cand = append(cand, "/var/lib/kubelet/kubeconfig")
	var out []string
	seen := map[string]bool{}
	for _, p := range cand {
		if !filepath.IsAbs(p) {
			if abs, err := filepath.Abs(p); err == nil {
				p = abs
			}
		}
		p = filepath.Clean(p)
		if seen[p] {
			continue
		}
		seen[p] = true
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// passwdHomes lists the home directories in a passwd file, but "/".
func passwdHomes(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 6 && filepath.IsAbs(fields[5]) && filepath.Clean(fields[5]) != "/" {
			out = append(out, filepath.Clean(fields[5]))
		}
	}
	return out
}

// planCreds finds the credentials to hide: the kubeconfigs (explicit
// first), the files they name, and the token directories in the mount
// table ms. covered says whether a host path is out of sight inside anyway
// (under a tmpfs of the session's): nothing is mounted there.
func planCreds(explicit []string, env func(string) string, ms []mountinfo.Mount, covered func(string) bool) *CredPlan {
	return scanCreds(&credScan{covered: covered, seen: map[string]bool{}, keyTrees: keyTrees, keyDirs: keyDirs}, explicit, env, ms)
}

func scanCreds(s *credScan, explicit []string, env func(string) string, ms []mountinfo.Mount) *CredPlan {
	for _, kc := range KubeConfigPaths(explicit, env) {
		s.kubeconfig(kc)
	}
	files := 0
	for _, t := range s.keyTrees {
		s.keyTree(t, 0, &files)
	}
	for _, d := range s.keyDirs {
		s.dir(d, func(n string) bool { return strings.HasSuffix(n, ".crt") })
	}
	for _, d := range tokenDirCandidates(ms) {
		if holdsToken(d) {
			s.dir(d, func(n string) bool { return notSecret[n] })
		}
	}
	// Files first: a file inside a token directory is then covered
	// before the directory is, and the directory's cover holds it.
	for _, f := range s.files {
		s.plan.mounts = append(s.plan.mounts, cinit.Mount{Kind: cinit.MountHide, Path: f})
		s.plan.Hidden = append(s.plan.Hidden, f)
	}
	budget := maxCredRecords - len(s.plan.mounts)
	for i, d := range s.dirs {
		budget -= s.dirRecords(d, budget-(len(s.dirs)-i-1))
		s.plan.Hidden = append(s.plan.Hidden, d.path)
	}
	sort.Strings(s.plan.Hidden)
	return &s.plan
}

// kubeconfig hides the kubeconfig path and the key and token files it
// names. Relative names are taken from the kubeconfig's directory, as
// client-go does.
func (s *credScan) kubeconfig(path string) {
	real, ok := s.file(path)
	if !ok {
		return
	}
	b, err := readSmall(real)
	if err != nil {
		return
	}
	var kc struct {
		Users []struct {
			Name string `yaml:"name"`
			User struct {
				ClientKey         string `yaml:"client-key"`
				ClientCertificate string `yaml:"client-certificate"`
				TokenFile         string `yaml:"tokenFile"`
				Exec              *struct {
					Command string `yaml:"command"`
				} `yaml:"exec"`
				AuthProvider *struct {
					Name string `yaml:"name"`
				} `yaml:"auth-provider"`
			} `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		s.plan.Notes = append(s.plan.Notes, fmt.Sprintf("kubeconfig %s: not parsed (%v): hidden, but the files it names are not", path, firstLine(err)))
		return
	}
	dirs := []string{filepath.Dir(path)}
	if d := filepath.Dir(real); d != dirs[0] {
		dirs = append(dirs, d)
	}
	ref := func(name string, onlyKeys bool) {
		if name == "" {
			return
		}
		for _, d := range dirs {
			p := name
			if !filepath.IsAbs(p) {
				p = filepath.Join(d, p)
			}
			if onlyKeys && !holdsKey(p) {
				continue
			}
			s.file(p)
			if filepath.IsAbs(name) {
				return
			}
		}
	}
	for _, u := range kc.Users {
		ref(u.User.ClientKey, false)
		ref(u.User.TokenFile, false)
		// A certificate is no secret, but kubelet's
		// kubelet-client-current.pem holds the key too.
		ref(u.User.ClientCertificate, true)
		if u.User.Exec != nil {
			s.plan.Notes = append(s.plan.Notes, fmt.Sprintf("kubeconfig %s: user %q runs the exec plugin %q for its credentials: the kubeconfig is hidden, the plugin's own credential store is not", path, u.Name, u.User.Exec.Command))
		}
		if u.User.AuthProvider != nil {
			s.plan.Notes = append(s.plan.Notes, fmt.Sprintf("kubeconfig %s: user %q uses the auth provider %q: the kubeconfig is hidden, the provider's own credential store is not", path, u.Name, u.User.AuthProvider.Name))
		}
	}
}

// file plans to hide the regular file path (through its symlinks: the
// file they lead to) and returns that file.
func (s *credScan) file(path string) (string, bool) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	fi, err := os.Lstat(real)
	if err != nil || !fi.Mode().IsRegular() || s.covered(real) {
		return real, fi != nil && fi.Mode().IsRegular()
	}
	if !s.seen[real] {
		s.seen[real] = true
		s.files = append(s.files, real)
	}
	return real, true
}

// dir plans to cover the directory dir as a whole: the names show says
// hold no secret show the host's file, the others read empty.
func (s *credScan) dir(dir string, show func(string) bool) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil || s.seen[real] || s.covered(real) || real == "/" {
		return
	}
	if fi, err := os.Lstat(real); err != nil || !fi.IsDir() {
		return
	}
	s.seen[real] = true
	s.dirs = append(s.dirs, coverDir{path: real, show: show})
}

// keyTree plans to hide each private key below dir: a *.key file, or one
// that holds a PEM private key. Symlinks are not walked into; a symlink to
// a key is hidden at the file it leads to.
func (s *credScan) keyTree(dir string, depth int, files *int) {
	ents, err := os.ReadDir(dir)
	if err != nil || depth > maxKeyTreeDepth {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if *files >= maxKeyTreeFiles {
			return
		}
		if e.IsDir() {
			s.keyTree(p, depth+1, files)
			continue
		}
		*files++
		if strings.HasSuffix(e.Name(), ".key") || holdsKey(p) {
			s.file(p)
		}
	}
}

// dirRecords adds the records that cover the token directory dir, using at
// most budget records (at least one, the cover: what does not fit is absent
// inside), and returns how many it used.
func (s *credScan) dirRecords(d coverDir, budget int) int {
	dir := d.path
	mode := uint32(0o755)
	if fi, err := os.Stat(dir); err == nil {
		mode = uint32(fi.Mode().Perm())
	}
	s.plan.mounts = append(s.plan.mounts, cinit.Mount{Kind: cinit.MountHideDir, Path: dir, Mode: mode})
	used := 1
	ents, err := os.ReadDir(dir)
	if err != nil {
		return used
	}
	shown := 0
	for _, e := range ents {
		name := e.Name()
		// kubelet's own ..data and ..TIMESTAMP: what the names
		// outside them point into.
		if strings.HasPrefix(name, "..") || shown >= maxShown || used >= budget {
			continue
		}
		// A stat through the links is enough for a name that reads
		// empty; only a shown one needs the file it leads to.
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() {
			continue // a directory or a dangling link: absent inside
		}
		m := cinit.Mount{Kind: cinit.MountShow, Path: filepath.Join(dir, name), Mode: 0o444}
		if d.show(name) {
			if m.Source, err = filepath.EvalSymlinks(m.Path); err != nil {
				continue
			}
		}
		s.plan.mounts = append(s.plan.mounts, m)
		used++
		shown++
	}
	return used
}

// tokenDirCandidates are the directories that may hold a service-account
// token: mounts of …/serviceaccount (kubelet's projected volume in a pod),
// a token file mounted alone, the token directories below a mount of
// secrets (/run/secrets from a container runtime), and every pod's
// projected and secret volumes on a node (/var/lib/kubelet/pods/…). Only
// these paths are looked at: a stat below an arbitrary mount point could
// wait on an automounter or a dead network file system.
func tokenDirCandidates(ms []mountinfo.Mount) []string {
	var out []string
	add := func(p string) { out = append(out, p) }
	for _, d := range wellKnownTokenDirs {
		belowMount(d, add)
	}
	for _, m := range ms {
		switch dir, secrets := mountTokenDir(m.Point); {
		case secrets:
			belowMount(dir, add)
		case dir != "":
			add(dir)
		}
	}
	return out
}

// tokenMount says whether a mount may lead to a token directory: the
// mounts of the host's table a session's start keeps.
func tokenMount(m *mountinfo.Mount) bool {
	dir, _ := mountTokenDir(m.Point)
	return dir != ""
}

// mountTokenDir is the directory a mount at p may hold a token in, if any;
// secrets: p is a mount of secrets, with token directories below it.
func mountTokenDir(p string) (dir string, secrets bool) {
	base := filepath.Base(p)
	switch {
	case base == "serviceaccount", base == "tokens" && filepath.Base(filepath.Dir(p)) == "azure",
		strings.Contains(p, "/volumes/kubernetes.io~projected/"), strings.Contains(p, "/volumes/kubernetes.io~secret/"):
		return p, false
	case base == "token" && filepath.Base(filepath.Dir(p)) == "serviceaccount":
		return filepath.Dir(p), false
	case base == "secrets":
		return p, true
	}
	return "", false
}

// belowMount adds the token directories below p, a mount of secrets.
func belowMount(p string, add func(string)) {
	for _, suf := range tokenDirSuffixes {
		add(filepath.Join(p, suf))
	}
}

// holdsToken says whether dir holds a token: a name "token" or "…-token"
// (Azure's azure-identity-token).
func holdsToken(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() == "token" || strings.HasSuffix(e.Name(), "-token") {
			return true
		}
	}
	return false
}

// holdsKey says whether the file at path holds a PEM private key.
func holdsKey(path string) bool {
	b, err := readSmall(path)
	return err == nil && bytes.Contains(b, []byte("PRIVATE KEY-----"))
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKubeconfig+1))
	if err == nil && len(b) > maxKubeconfig {
		err = errors.New("too large")
	}
	return b, err
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// coveredBy says whether path lies under one of the session's own tmpfs
// mounts (tmp, the --writable places, the ci profile's HOME), where the
// host's file is out of sight inside.
func coveredBy(p *policy.Policy) func(string) bool {
	cover := p.Cover()
	return func(path string) bool {
		_, covered := cover(path)
		return covered
	}
}

// credMounts plans the hiding of the session's credentials; ms is the
// host's mount table (mountinfo.Read's, with err), of which it needs the
// mounts tokenMount keeps.
func credMounts(p *policy.Policy, ms []mountinfo.Mount, err error) (*CredPlan, error) {
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return planCreds(p.KubeConfig, os.Getenv, ms, coveredBy(p)), nil
}

// CredResult is what a session did with the credentials it found.
type CredResult struct {
	// Hidden read empty inside (a token directory: all but ca.crt,
	// namespace and service-ca.crt).
	Hidden []string
	// Unhidden were found but stayed readable: the mode could not cover
	// them (landlock-only has no mount namespace).
	Unhidden []string
	// Notes are what ronly found and cannot cover (exec plugins).
	Notes []string
}

func (c *CredPlan) result() CredResult {
	if c == nil {
		return CredResult{}
	}
	if c.unhidden {
		return CredResult{Unhidden: c.Hidden, Notes: c.Notes}
	}
	return CredResult{Hidden: c.Hidden, Notes: c.Notes}
}

// warnUnhidden says, in a mode without a mount namespace, which
// credentials stay readable: Landlock refuses writes only (a ruleset
// cannot take reading away below a directory it lets be read), and open()
// is not mediated, so nothing can cover them there.
func (c *CredPlan) warnUnhidden(warn func(string)) {
	if c == nil || len(c.Hidden) == 0 {
		return
	}
	c.unhidden = true
	warn(fmt.Sprintf("landlock-only mode cannot hide credentials (no mount namespace to cover them): readable inside: %s",
		strings.Join(c.Hidden, ", ")))
}
