package dockerguard

import (
	"net/http"
	"strings"
	"sync"

	"ronly.dev/ronly/go/apiguard"
)

// allowed are the routes (templates of routes, below) that GET and HEAD may
// reach: what `docker ps|logs|inspect|stats|top|images|info|version|events|
// diff|port|history`, `network ls|inspect`, `volume ls|inspect`, `system df`
// and `image inspect|history` call. `docker inspect NAME` without --type tries
// container, image, volume, network and plugin in turn and moves on after a
// 404, so the plugin inspect route is here too: refusing it would turn "No
// such object" into a 403. (On a swarm manager it would go on to the swarm
// objects; those stay refused.)
//
// Deliberately absent although they are GET: /containers/{id}/export and
// /containers/{id}/archive (a container's files), /containers/{id}/attach/ws
// (a websocket onto stdin), /images/get and /images/{name}/get (docker save),
// /images/search and /distribution/{name}/json (reach out to registries),
// /exec/{id}/json, the plugin list and privileges, and every swarm route.
var allowed = map[string]bool{
	"/_ping":                   true,
	"/version":                 true,
	"/info":                    true,
	"/events":                  true,
	"/system/df":               true,
	"/containers/json":         true,
	"/containers/{id}/json":    true,
	"/containers/{id}/logs":    true,
	"/containers/{id}/top":     true,
	"/containers/{id}/stats":   true,
	"/containers/{id}/changes": true,
	"/images/json":             true,
	"/images/{name}/json":      true,
	"/images/{name}/history":   true,
	"/networks":                true,
	"/networks/{id}":           true,
	"/volumes":                 true,
	"/volumes/{id}":            true,
	"/plugins/{name}/json":     true,
}

// templates are the Engine API's routes as labels: the first that matches
// a path names it (a path none matches is "other"). {id} stands for one
// path segment, {name} (image and plugin references, which may contain
// slashes) for one or more. Literal routes come before parameterised ones,
// and a template with a suffix before the bare {name} one.
var templates = []string{
	// system, session, build
	"/_ping", "/version", "/info", "/events", "/system/df", "/auth",
	"/session", "/grpc", "/commit", "/build", "/build/prune", "/build/cancel",
	// literal routes under parameterised prefixes
	"/containers/json", "/containers/create", "/containers/prune",
	"/images/json", "/images/search", "/images/get", "/images/load",
	"/images/create", "/images/prune",
	"/networks", "/networks/create", "/networks/prune",
	"/volumes", "/volumes/create", "/volumes/prune",
	"/plugins", "/plugins/privileges", "/plugins/pull", "/plugins/create",
	"/swarm", "/swarm/init", "/swarm/join", "/swarm/leave", "/swarm/update",
	"/swarm/unlockkey", "/swarm/unlock",
	"/services", "/services/create", "/nodes", "/tasks",
	"/secrets", "/secrets/create", "/configs", "/configs/create",
	// containers and exec
	"/containers/{id}/json", "/containers/{id}/logs", "/containers/{id}/top",
	"/containers/{id}/stats", "/containers/{id}/changes",
	"/containers/{id}/export", "/containers/{id}/archive",
	"/containers/{id}/attach", "/containers/{id}/attach/ws",
	"/containers/{id}/kill", "/containers/{id}/pause",
	"/containers/{id}/unpause", "/containers/{id}/restart",
	"/containers/{id}/start", "/containers/{id}/stop", "/containers/{id}/wait",
	"/containers/{id}/resize", "/containers/{id}/exec",
	"/containers/{id}/rename", "/containers/{id}/update", "/containers/{id}",
	"/exec/{id}/json", "/exec/{id}/start", "/exec/{id}/resize",
	// images
	"/images/{name}/json", "/images/{name}/history", "/images/{name}/get",
	"/images/{name}/push", "/images/{name}/tag", "/images/{name}",
	"/distribution/{name}/json",
	// networks, volumes
	"/networks/{id}/connect", "/networks/{id}/disconnect", "/networks/{id}",
	"/volumes/{id}",
	// plugins
	"/plugins/{name}/json", "/plugins/{name}/enable",
	"/plugins/{name}/disable", "/plugins/{name}/push",
	"/plugins/{name}/upgrade", "/plugins/{name}/set", "/plugins/{name}",
	// swarm
	"/services/{id}/update", "/services/{id}/logs", "/services/{id}",
	"/nodes/{id}/update", "/nodes/{id}",
	"/tasks/{id}/logs", "/tasks/{id}",
	"/secrets/{id}/update", "/secrets/{id}",
	"/configs/{id}/update", "/configs/{id}",
}

// routes is the route table: each template, in order, letting GET and
// HEAD through when it is allowed. {name} becomes {name...}: one or more
// segments. Built at first use: every session's start would otherwise
// pay for it, though only a session with a Docker socket needs it.
var routes = sync.OnceValue(func() *apiguard.Table {
	rows := make([]apiguard.Route, 0, len(templates))
	for _, t := range templates {
		r := apiguard.Route{Pattern: strings.ReplaceAll(t, "{name}", "{name...}")}
		if allowed[t] {
			r.Methods = []string{http.MethodGet, http.MethodHead}
		}
		rows = append(rows, r)
	}
	return apiguard.NewTable(rows...)
})

// isAllowed reports whether method may be sent upstream for path, a plain
// path (see plainPath).
func isAllowed(method, path string) bool {
	r := routes().Match(routeKey(path))
	return r != nil && r.Allows(method)
}

// routeLabel is the template that names path, "other" if none does.
func routeLabel(path string) string {
	if r := routes().Match(routeKey(path)); r != nil {
		return r.Label()
	}
	return "other"
}

// routeKey is path less its version prefix (/v1.47), which is no part of
// a route.
func routeKey(path string) string {
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) > 1 && isVersion(segs[0]) {
		segs = segs[1:]
	}
	return "/" + strings.Join(segs, "/")
}

// isVersion reports whether seg is an API version prefix as this guard
// accepts it: "v" and digits with at most one dot ("v1.47"). The daemon
// accepts more ("v[0-9.]+"); what it would take as a version and this does
// not falls to "other" and is refused.
func isVersion(seg string) bool {
	if len(seg) < 2 || seg[0] != 'v' {
		return false
	}
	major, minor, dot := strings.Cut(seg[1:], ".")
	return digits(major) && (!dot || digits(minor))
}

func digits(s string) bool {
	if s == "" || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// maxPath is the longest path the guard lets through.
const maxPath = 1024

// plainPath is apiguard.PlainPath with this API's longest path.
func plainPath(r *http.Request) (string, bool) { return apiguard.PlainPath(r, maxPath) }
