package web

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func do(t *testing.T, method string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, "/", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func TestGetServesPage(t *testing.T) {
	res := do(t, http.MethodGet, nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if string(body) != string(indexHTML) {
		t.Errorf("body is not index.html (%d bytes, want %d)", len(body), len(indexHTML))
	}
	if res.Header.Get("ETag") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("missing ETag or nosniff: %v", res.Header)
	}
}

// TestCSPAllowsExactlyTheInlineBlocks recomputes the hashes independently of
// inlineHashes, so an edit of index.html can never leave the page blocked.
func TestCSPAllowsExactlyTheInlineBlocks(t *testing.T) {
	csp := do(t, http.MethodGet, nil).Header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	hashOf := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	for _, c := range []struct{ directive, tag string }{{"script-src", "script"}, {"style-src", "style"}} {
		blocks := regexp.MustCompile(`(?s)<`+c.tag+`>(.*?)</`+c.tag+`>`).FindAllStringSubmatch(string(indexHTML), -1)
		if len(blocks) != 1 {
			t.Fatalf("index.html has %d <%s> blocks, want 1", len(blocks), c.tag)
		}
		if want := hashOf(blocks[0][1]); directives[c.directive] != want {
			t.Errorf("%s is %q, want %q", c.directive, directives[c.directive], want)
		}
	}
	want := map[string]string{"default-src": "'none'", "connect-src": "'self'", "base-uri": "'none'", "frame-ancestors": "'none'"}
	for name, value := range want {
		if directives[name] != value {
			t.Errorf("%s is %q, want %q (CSP %q)", name, directives[name], value, csp)
		}
	}
}

// TestPageIsSelfContained guards against what the CSP would block or what
// would make event data active content.
func TestPageIsSelfContained(t *testing.T) {
	html := string(indexHTML)
	for _, bad := range []struct{ re, why string }{
		{`(?i)\b(src|href)\s*=\s*"(https?:)?//`, "loads something from another origin"},
		{`(?i)<[^>]+\son[a-z]+\s*=`, "inline event handler attribute (blocked by the CSP)"},
		{`(?i)<[^>]+\sstyle\s*=`, "style attribute (blocked by the CSP)"},
		{`(?i)<(script|style)\s[^>]*>`, "script or style tag with attributes (not hashed)"},
		{`innerHTML|outerHTML|insertAdjacentHTML|document\.write`, "HTML built from strings"},
	} {
		if m := regexp.MustCompile(bad.re).FindString(html); m != "" {
			t.Errorf("index.html: %s: %q", bad.why, m)
		}
	}
}

func TestHeadHasNoBody(t *testing.T) {
	res := do(t, http.MethodHead, nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || len(body) != 0 {
		t.Fatalf("status %d, %d body bytes", res.StatusCode, len(body))
	}
	if res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
	}
}

func TestConditionalGet(t *testing.T) {
	etag := do(t, http.MethodGet, nil).Header.Get("ETag")
	res := do(t, http.MethodGet, http.Header{"If-None-Match": {etag}})
	if res.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", res.StatusCode)
	}
}

func TestOtherMethodsGet405JSON(t *testing.T) {
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		res := do(t, m, nil)
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d", m, res.StatusCode)
			continue
		}
		if res.Header.Get("Allow") != "GET, HEAD" || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: headers %v", m, res.Header)
		}
		var body struct{ Error string }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error == "" {
			t.Errorf("%s: body not a JSON error: %v", m, err)
		}
	}
}

func TestInlineHashesWithoutBlocks(t *testing.T) {
	if got := inlineHashes([]byte("<p>hi</p>"), "<script>", "</script>"); len(got) != 1 || got[0] != "'none'" {
		t.Errorf("got %q", got)
	}
}
