package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsAllowHeaders are the request headers a cross-origin page may send:
// what EventSource sends on reconnect, tokens, and publish bodies.
const corsAllowHeaders = "Authorization, Cache-Control, Content-Type, Last-Event-ID"

// ValidateOrigin reports why pattern cannot be an entry of
// [Handler.CORSOrigins]: an origin (scheme://host[:port], no path), "*",
// or an origin whose host starts with "*." to allow its subdomains.
func ValidateOrigin(pattern string) error {
	if pattern == "*" {
		return nil
	}
	u, err := url.Parse(strings.Replace(pattern, "://*.", "://wildcard.", 1))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("CORS origin %q: want scheme://host[:port], *, or scheme://*.domain", pattern)
	}
	if strings.HasSuffix(pattern, "/") {
		return fmt.Errorf("CORS origin %q: no trailing slash (browsers send none)", pattern)
	}
	return nil
}

// originAccess is how a browser page from some origin may use the API.
type originAccess int

const (
	originRefused originAccess = iota
	// originAnonymous: allowed by "*" only, so without credentials.
	originAnonymous
	// originCredentialed: the request's own origin, or one CORSOrigins
	// names exactly or by a subdomain pattern: with credentials.
	originCredentialed
)

// originAccess says how a page from origin may use the API. Only origins
// the operator named (or a pattern of their domain) get credentials:
// "*" means any site, and any site must not read a signed-in user's
// private events through the cookie.
func (h *Handler) originAccess(r *http.Request, origin string) originAccess {
	if sameOrigin(r, origin) {
		return originCredentialed
	}
	access := originRefused
	for _, p := range h.CORSOrigins {
		if p == "*" {
			access = originAnonymous
			continue
		}
		if strings.EqualFold(p, origin) {
			return originCredentialed
		}
		if scheme, rest, ok := strings.Cut(p, "://*."); ok {
			// "https://*.example.com" allows https://a.example.com and
			// https://a.b.example.com, not https://example.com or
			// https://evilexample.com.
			if s, host, ok := strings.Cut(origin, "://"); ok && strings.EqualFold(s, scheme) &&
				len(host) > len(rest)+1 && strings.EqualFold(host[len(host)-len(rest)-1:], "."+rest) {
				return originCredentialed
			}
		}
	}
	return access
}

// sameOrigin reports whether origin is the one the request was sent to.
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

// applyCORS handles the Origin of a request when CORSOrigins is set. It
// answers preflights itself and refuses requests from origins not
// allowed (a stream served without CORS headers would fail in the browser
// anyway, silently; a publish would still take effect). It returns the
// request to go on with, without its cookies when the origin is allowed
// only without credentials, or false when it answered.
func (h *Handler) applyCORS(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if len(h.CORSOrigins) == 0 {
		return r, true
	}
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r, true // not a browser's cross-origin request
	}
	switch h.originAccess(r, origin) {
	case originRefused:
		h.fail(w, r, http.StatusForbidden, "origin "+origin+" is not allowed (see --cors-origins)")
		return r, false
	case originAnonymous:
		// Any site may read, so none with the user's credentials: no
		// Allow-Credentials (browsers then neither send cookies nor
		// expose the answer of a request that carried them), and a
		// cookie that comes anyway does not authenticate.
		hdr.Set("Access-Control-Allow-Origin", "*")
		if _, ok := r.Header["Cookie"]; ok {
			r = r.WithContext(r.Context())
			r.Header = r.Header.Clone()
			r.Header.Del("Cookie")
		}
	default:
		// Credentials (cookies, Authorization) are allowed, so the
		// origin is echoed: browsers refuse "*" with credentials.
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		hdr.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		hdr.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return r, false
	}
	hdr.Set("Access-Control-Expose-Headers", "Last-Event-ID, Retry-After")
	return r, true
}
