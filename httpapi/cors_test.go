package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

func corsRequest(t *testing.T, th *transportHub, method, path, origin string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, th.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := th.client(false, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCORS(t *testing.T) {
	origins := []string{"https://app.example.com", "http://*.example.org"}
	for _, mode := range []string{"engine", "goroutine", "h2"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) { h.CORSOrigins = origins })

			t.Run("preflight allowed", func(t *testing.T) {
				resp := corsRequest(t, th, http.MethodOptions, "/events?topic=a", "https://app.example.com", http.Header{
					"Access-Control-Request-Method":  {"GET"},
					"Access-Control-Request-Headers": {"last-event-id, authorization"},
				})
				if resp.StatusCode != http.StatusNoContent {
					t.Fatalf("status %d", resp.StatusCode)
				}
				allowHeaders := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
				for _, h := range []string{"last-event-id", "authorization", "content-type"} {
					if !strings.Contains(allowHeaders, h) {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowHeaders, h)
					}
				}
				if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
					t.Errorf("headers %v", resp.Header)
				}
			})
			t.Run("preflight refused", func(t *testing.T) {
				resp := corsRequest(t, th, http.MethodOptions, "/publish", "https://evil.example", http.Header{"Access-Control-Request-Method": {"POST"}})
				if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
					t.Fatalf("status %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
				}
			})
			for origin, allowed := range map[string]bool{
				"https://app.example.com":   true,
				"http://a.example.org":      true,
				"http://a.b.example.org":    true,
				"http://example.org":        false, // the wildcard is for subdomains
				"http://evilexample.org":    false,
				"https://a.example.org":     false, // scheme differs
				"https://app.example.com.x": false,
				th.srv.URL:                  true, // same origin
			} {
				resp := corsRequest(t, th, http.MethodGet, "/events?topic=a", origin, nil)
				switch {
				case allowed && resp.StatusCode != http.StatusOK:
					t.Errorf("stream from %s: status %d, want 200", origin, resp.StatusCode)
				case allowed && origin != th.srv.URL && (resp.Header.Get("Access-Control-Allow-Origin") != origin ||
					!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Last-Event-ID")):
					t.Errorf("stream from %s: CORS headers %v", origin, resp.Header)
				case !allowed && resp.StatusCode != http.StatusForbidden:
					t.Errorf("stream from %s: status %d, want 403", origin, resp.StatusCode)
				}
			}
			if th.logs.take("request rejected") == 0 {
				t.Error("refused origins not logged")
			}
		})
	}
}

// Without CORSOrigins, the API adds no CORS headers and refuses nothing.
func TestNoCORSByDefault(t *testing.T) {
	th := startTransport(t, "engine", nil)
	resp := corsRequest(t, th, http.MethodGet, "/events?topic=a", "https://other.example", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("status %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

func TestValidateOrigin(t *testing.T) {
	for p, ok := range map[string]bool{
		"*": true, "https://a.example": true, "http://localhost:3000": true, "https://*.example.com": true,
		"a.example": false, "https://a.example/": false, "https://a.example/path": false, "ftp://a.example": false,
		"https://": false, "https://a.example?x=1": false,
	} {
		if err := httpapi.ValidateOrigin(p); (err == nil) != ok {
			t.Errorf("ValidateOrigin(%q) = %v, want ok %v", p, err, ok)
		}
	}
}
