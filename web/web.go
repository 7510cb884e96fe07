// Package web is Herald's browser page: one self-contained HTML file to
// subscribe to topics with EventSource, watch the events arrive and publish
// new ones. It needs no build step and loads nothing from other origins.
package web

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

//go:embed index.html
var indexHTML []byte

// page is index.html with the headers it is served with, computed once.
var page = newPage(indexHTML)

type pageData struct {
	body []byte
	csp  string
	etag string
}

// newPage prepares the response for an HTML page whose script and style are
// inline. The Content-Security-Policy allows exactly those inline blocks, by
// hash, and otherwise only requests to the page's own origin (EventSource
// and fetch): no other script, no inline event handlers, no style
// attributes, nothing from other origins.
func newPage(body []byte) *pageData {
	scripts := inlineHashes(body, "<script>", "</script>")
	styles := inlineHashes(body, "<style>", "</style>")
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + strings.Join(scripts, " "),
		"style-src " + strings.Join(styles, " "),
		"connect-src 'self'",
		"img-src data:",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
	sum := sha256.Sum256(body)
	return &pageData{
		body: body,
		csp:  csp,
		etag: `"` + hex.EncodeToString(sum[:12]) + `"`,
	}
}

// inlineHashes returns the CSP source expression ('sha256-...') of the
// content of every open...close element in body. The tags must be written
// exactly as given, without attributes; index.html is ours, so a mismatch is
// a programming error and panics at init.
func inlineHashes(body []byte, open, close string) []string {
	var hashes []string
	rest := body
	for {
		i := bytes.Index(rest, []byte(open))
		if i < 0 {
			break
		}
		rest = rest[i+len(open):]
		j := bytes.Index(rest, []byte(close))
		if j < 0 {
			panic(fmt.Sprintf("web: index.html has %s without %s", open, close))
		}
		sum := sha256.Sum256(rest[:j])
		hashes = append(hashes, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		rest = rest[j+len(close):]
	}
	if len(hashes) == 0 {
		// Allow nothing rather than write an empty, invalid directive.
		return []string{"'none'"}
	}
	return hashes
}

// Handler returns the handler of Herald's web page. It answers GET and HEAD
// with index.html, whatever the path (the hub routes only "/" to it), and
// any other method with 405 and a JSON error, like the rest of the API.
//
// The page talks to the hub through relative URLs ("events", "publish"), so
// it must be served from the directory where the hub's endpoints are.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusMethodNotAllowed)
		body, _ := json.Marshal(map[string]string{
			"error": "method " + r.Method + " not allowed; use GET or HEAD",
		})
		_, _ = w.Write(append(body, '\n'))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", page.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", page.etag)
	// ServeContent answers HEAD, If-None-Match (304) and Range requests.
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page.body))
}
