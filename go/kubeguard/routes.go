package kubeguard

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"ronly.dev/ronly/go/apiguard"
)

// What passes (the rows of table, below), on a plain path
// (apiguard.PlainPath), HTTP/1.x, without Upgrade, impersonation headers or
// a dryRun parameter:
//
//   - GET of discovery and OpenAPI (/api, /apis, /apis/{group},
//     /apis/{group}/{version}, /openapi/v2, /openapi/v3/...), /version,
//     /healthz, /readyz and /livez (and their checks, /readyz/etcd);
//   - GET of a resource, a collection or a watch (get, list, watch of every
//     resource, CRDs included), and of the subresources in readSubresources
//     (pods/log with follow, status, scale);
//   - POST of the reviews `kubectl auth can-i` and `kubectl auth whoami`
//     create: selfsubjectaccessreviews, selfsubjectrulesreviews
//     (authorization.k8s.io) and selfsubjectreviews (authentication.k8s.io).
//     A review changes nothing: the API server answers it and stores nothing.
//
// With Guard.HideSecrets (--kube-hide-secrets), reads of core secrets pass
// through hideSecretValues (secrets.go), which empties their values.
//
// Everything else is refused, notably: every other method; the connect
// subresources (exec, attach, portforward, proxy: pods/proxy, services/proxy
// and nodes/proxy, which reaches the kubelet's API and can run commands),
// whatever method or protocol they come with; serviceaccounts/token
// (TokenRequest, a POST); Impersonate-* headers; dryRun (a dry-run write is
// still a write request, and admission webhooks see it); /metrics, /logs
// (the API server's own log directory), /debug.
var readSubresources = map[string]bool{
	"log":    true,
	"status": true,
	"scale":  true,
}

// reviews are the creates that only ask the API server about the caller.
var reviews = map[[2]string]bool{
	{"authorization.k8s.io", "selfsubjectaccessreviews"}: true,
	{"authorization.k8s.io", "selfsubjectrulesreviews"}:  true,
	{"authentication.k8s.io", "selfsubjectreviews"}:      true,
}

// nonResource are the paths outside /api and /apis that GET may reach; a
// path below one of them (/readyz/etcd, /openapi/v3/apis/apps/v1) too.
var nonResource = []string{"/version", "/healthz", "/readyz", "/livez", "/openapi/v2", "/openapi/v3"}

// request is what the guard made of a request's path.
type request struct {
	verb     string // Kubernetes' verb: get, list, watch, create, update, patch, delete, deletecollection; connect; impersonate; or the method for non-resource paths
	group    string // "" for the core group
	resource string // resource[/subresource], "" for a non-resource path
	name     string
	// deeper: the path goes on below the subresource (nodes/{name}/proxy/{path})
	deeper          bool
	resourceRequest bool
}

// label is the refusal's bounded resource label.
func (r request) label() string {
	if !r.resourceRequest {
		return "nonresource"
	}
	if labelRE().MatchString(r.resource) {
		return r.resource
	}
	return "other"
}

// labelRE is a resource name as Kubernetes allows it (lower-case DNS label
// characters), optionally with one subresource. Compiled at first use, not
// at package init: the counted repetitions make a large program (about
// 1,750 allocations, 0.3-1 ms), which every ronly session paid at start
// though only a refused Kubernetes call needs it.
var labelRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}(/[a-z0-9][a-z0-9.-]{0,62})?$`)
})

// parse reads a plain path as the API server's request-info factory does:
// /api/v1/..., /apis/{group}/{version}/..., with an optional legacy "watch"
// segment, "namespaces/{ns}" before a namespaced resource, then resource,
// name and subresource.
func parse(method, path string, query url.Values) request {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	r := request{verb: strings.ToLower(boundedMethod(method))}
	var rest []string
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		rest = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		r.group = segs[1]
		rest = segs[3:]
	default:
		return r
	}
	if len(rest) == 0 {
		return r // discovery of one group version
	}
	r.resourceRequest = true
	watch := false
	if rest[0] == "watch" {
		watch = true
		rest = rest[1:]
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) > 2 && rest[2] != "status" && rest[2] != "finalize" {
		rest = rest[2:] // a namespaced resource
	}
	if len(rest) == 0 {
		r.resource = "other"
		return r
	}
	r.resource = rest[0]
	if len(rest) >= 2 {
		r.name = rest[1]
	}
	if len(rest) >= 3 {
		r.resource += "/" + rest[2]
		r.deeper = len(rest) > 3
	}
	switch method {
	case http.MethodGet:
		switch {
		case watch || query.Get("watch") == "true" || query.Get("watch") == "1":
			r.verb = "watch"
		case r.name == "":
			r.verb = "list"
		default:
			r.verb = "get"
		}
	case http.MethodPost:
		r.verb = "create"
	case http.MethodPut:
		r.verb = "update"
	case http.MethodPatch:
		r.verb = "patch"
	case http.MethodDelete:
		if r.name == "" {
			r.verb = "deletecollection"
		} else {
			r.verb = "delete"
		}
	}
	if sub := subresource(r.resource); connectSubresource(sub) {
		r.verb = "connect"
	}
	return r
}

func subresource(resource string) string {
	_, sub, _ := strings.Cut(resource, "/")
	return sub
}

// connectSubresource: the subresources that open a stream into a pod, a
// node or a service.
func connectSubresource(sub string) bool {
	switch sub {
	case "exec", "attach", "portforward", "proxy":
		return true
	}
	return false
}

// routeKey is the key a call's route is looked up by: a non-resource path
// as it is; a resource request as "/(resource)/{group}/{scope}/{resource}",
// then "/{name}", "/{subresource}" and "/(deeper)" as the path has them,
// where group is "(core)" for the core group and scope is "(namespaces)"
// when the path mentions "/namespaces/" anywhere, else "(cluster)". The
// parenthesised segments cannot be in a plain path, so no non-resource
// path reads as a resource request's key.
func routeKey(path string, r request) string {
	if !r.resourceRequest {
		return path
	}
	group, scope := r.group, "(cluster)"
	if group == "" {
		group = "(core)"
	}
	if strings.Contains(path, "/namespaces/") {
		scope = "(namespaces)"
	}
	resource, sub, _ := strings.Cut(r.resource, "/")
	k := "/(resource)/" + group + "/" + scope + "/" + resource
	if r.name != "" {
		k += "/" + r.name
	}
	if sub != "" {
		k += "/" + sub
	}
	if r.deeper {
		k += "/(deeper)"
	}
	return k
}

var get = []string{http.MethodGet}

// table is the guard's route table, in the order it is read; a call no row
// lets through is refused.
func table(hideSecrets bool) *apiguard.Table {
	var rows []apiguard.Route
	// Discovery and the non-resource paths.
	for _, p := range []string{"/api", "/apis", "/api/{version}", "/apis/{group}", "/apis/{group}/{version}"} {
		rows = append(rows, apiguard.Route{Pattern: p, Methods: get})
	}
	for _, p := range nonResource {
		rows = append(rows, apiguard.Route{Pattern: p, Methods: get}, apiguard.Route{Pattern: p + "/{path...}", Methods: get})
	}
	// A request that names no resource, or one literally named "other"
	// (the label of what names none).
	rows = append(rows,
		apiguard.Route{Pattern: "/(resource)/{group}/{scope}/other"},
		apiguard.Route{Pattern: "/(resource)/{group}/{scope}/other/{name}"})
	// The reviews: created, cluster-wide, never named.
	for r := range reviews {
		rows = append(rows,
			apiguard.Route{Pattern: "/(resource)/" + r[0] + "/(cluster)/" + r[1], Methods: []string{http.MethodGet, http.MethodPost}, MaxBody: maxReviewBody})
	}
	if hideSecrets {
		for _, p := range []string{"/(resource)/(core)/{scope}/secrets", "/(resource)/(core)/{scope}/secrets/{name}"} {
			rows = append(rows, apiguard.Route{Pattern: p, Methods: get, Hook: hideSecretValues{}})
		}
	}
	// get, list and watch of every resource; the read subresources.
	rows = append(rows,
		apiguard.Route{Pattern: "/(resource)/{group}/{scope}/{resource}", Methods: get},
		apiguard.Route{Pattern: "/(resource)/{group}/{scope}/{resource}/{name}", Methods: get})
	for sub := range readSubresources {
		rows = append(rows, apiguard.Route{Pattern: "/(resource)/{group}/{scope}/{resource}/{name}/" + sub, Methods: get})
	}
	return apiguard.NewTable(rows...)
}
