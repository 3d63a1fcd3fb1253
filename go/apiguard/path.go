// Package apiguard holds what the API guards (go/dockerguard,
// go/kubeguard) share: the plain-path rule every request passes before any
// route is looked at.
package apiguard

import (
	"net/http"
	"strings"
)

// PlainPath returns the request's path if it is plain: given in origin form
// ("/..." as the request target), byte for byte the path the guard decides
// on and forwards (nothing percent-encoded), at most maxLen bytes, made of
// letters, digits and "._-:@" in non-empty segments that are not "." or
// "..". Anything else is refused before any route is looked at: no
// decoding or cleaning can make the upstream see another path than the one
// decided on.
func PlainPath(r *http.Request, maxLen int) (string, bool) {
	raw, _, _ := strings.Cut(r.RequestURI, "?")
	p := r.URL.Path
	if r.URL.RawPath != "" || raw != p || len(p) < 2 || p[0] != '/' || len(p) > maxLen {
		return "", false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
		for i := 0; i < len(seg); i++ {
			if !plainByte(seg[i]) {
				return "", false
			}
		}
	}
	return p, true
}

func plainByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '.', '_', '-', ':', '@':
		return true
	}
	return false
}
