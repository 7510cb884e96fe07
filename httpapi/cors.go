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

// originAllowed reports whether a browser page from origin may use the
// API: it is the request's own origin, or matches CORSOrigins.
func (h *Handler) originAllowed(r *http.Request, origin string) bool {
	if sameOrigin(r, origin) {
		return true
	}
	for _, p := range h.CORSOrigins {
		if p == "*" || strings.EqualFold(p, origin) {
			return true
		}
		if scheme, rest, ok := strings.Cut(p, "://*."); ok {
			// "https://*.example.com" allows https://a.example.com and
			// https://a.b.example.com, not https://example.com or
			// https://evilexample.com.
			if s, host, ok := strings.Cut(origin, "://"); ok && strings.EqualFold(s, scheme) &&
				len(host) > len(rest)+1 && strings.EqualFold(host[len(host)-len(rest)-1:], "."+rest) {
				return true
			}
		}
	}
	return false
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
// anyway, silently; a publish would still take effect); it reports
// whether the request should go on.
func (h *Handler) applyCORS(w http.ResponseWriter, r *http.Request) bool {
	if len(h.CORSOrigins) == 0 {
		return true
	}
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser's cross-origin request
	}
	if !h.originAllowed(r, origin) {
		h.fail(w, r, http.StatusForbidden, "origin "+origin+" is not allowed (see --cors-origins)")
		return false
	}
	// Credentials (cookies, Authorization) are allowed, so the origin is
	// echoed: browsers refuse "*" with credentials.
	hdr.Set("Access-Control-Allow-Origin", origin)
	hdr.Set("Access-Control-Allow-Credentials", "true")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		hdr.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		hdr.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	hdr.Set("Access-Control-Expose-Headers", "Last-Event-ID, Retry-After")
	return true
}
