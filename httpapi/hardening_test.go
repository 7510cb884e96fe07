package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/httpapi"
)

// GET /connections and GET /cluster name users and their addresses: they
// need a publisher token with the right "*", not just any valid token.
func TestOperatorEndpointsNeedPublishAll(t *testing.T) {
	th := startAuthHub(t, false)
	th.handler.AnnounceConnections = true // read per request; no stream is open yet
	for _, path := range []string{"/connections", "/cluster"} {
		for _, tc := range []struct {
			name, token string
			status      int
			reason      string
		}{
			{"no token", "", http.StatusUnauthorized, "missing"},
			{"subscriber", mint(t, testSecret, time.Hour, "", "*"), http.StatusForbidden, "insufficient_scope"},
			{"publisher of one topic", mint(t, testSecret, time.Hour, "news", "*"), http.StatusForbidden, "insufficient_scope"},
			{"publisher of every topic", mint(t, testSecret, time.Hour, "*", ""), http.StatusOK, ""},
		} {
			if got := th.do(t, http.MethodGet, path, tc.token, ""); got.status != tc.status || got.reason != tc.reason {
				t.Errorf("%s with %s: %+v, want %d (reason %q)", path, tc.name, got, tc.status, tc.reason)
			}
		}
	}
}

// A zero Handler (no PublishAuth, no OpenPublish) does not let anyone
// publish: 403 saying what to choose, and nothing published.
func TestZeroHandlerRefusesPublishing(t *testing.T) {
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) { h.OpenPublish = false })
	s := th.subscribe(t, "news")
	status, ans := th.post(t, "application/json", `{"topic":"news","data":"x"}`)
	if status != http.StatusForbidden || ans["reason"] != "publishing_disabled" ||
		!strings.Contains(fmt.Sprint(ans["error"]), "PublishAuth") || !strings.Contains(fmt.Sprint(ans["error"]), "OpenPublish") {
		t.Fatalf("publish on a zero Handler: %d %v, want 403 naming PublishAuth and OpenPublish", status, ans)
	}
	if n := th.logs.take("request rejected"); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
	for _, path := range []string{"/connections", "/cluster"} {
		resp, err := th.client.Get(th.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if ans := decodeJSONBody(t, resp); resp.StatusCode != http.StatusForbidden || ans["reason"] != "publishing_disabled" {
			t.Errorf("%s on a zero Handler: %d %v, want 403", path, resp.StatusCode, ans)
		}
		resp.Body.Close()
	}
	// Published directly, an event is the first the stream sees.
	if _, err := th.hub.Publish(herald.Event{Topics: []string{"news"}, Data: "direct"}); err != nil {
		t.Fatal(err)
	}
	if m := s.next(t); m.Data != "direct" {
		t.Fatalf("stream got %q first, want the direct publish only", m.Data)
	}
}

// "*" in CORSOrigins lets any origin in, without credentials: the answer
// is "Access-Control-Allow-Origin: *" and never Allow-Credentials, for
// preflights and requests alike, and a cookie such a request carries does
// not authenticate. Listed origins keep credentials.
func TestCORSWildcardWithoutCredentials(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"engine", "goroutine", "h2"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) {
				h.CORSOrigins = []string{"*", "https://app.example.com", "https://*.example.org"}
				h.SubscribeAuth = v
			})
			cookie := http.Header{"Cookie": {auth.DefaultCookieName + "=" + mint(t, testSecret, time.Hour, "", "news")}}
			preflight := http.Header{"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}}
			for _, tc := range []struct {
				origin      string
				credentials bool
			}{
				{"https://evil.example", false},
				{"null", false},
				{"https://app.example.com", true},
				{"https://a.example.org", true},
			} {
				resp := corsRequest(t, th, http.MethodOptions, "/events?topic=news", tc.origin, preflight)
				checkCORS(t, "preflight from "+tc.origin, resp, http.StatusNoContent, tc.origin, tc.credentials)
				resp = corsRequest(t, th, http.MethodGet, "/events?topic=news", tc.origin, cookie)
				if tc.credentials {
					checkCORS(t, "stream with a cookie from "+tc.origin, resp, http.StatusOK, tc.origin, true)
				} else {
					// Refused as if the cookie were not there.
					checkCORS(t, "stream with a cookie from "+tc.origin, resp, http.StatusUnauthorized, tc.origin, false)
				}
				resp = corsRequest(t, th, http.MethodGet, "/events?topic=news", tc.origin,
					http.Header{"Authorization": {"Bearer " + mint(t, testSecret, time.Hour, "", "news")}})
				checkCORS(t, "stream with a bearer token from "+tc.origin, resp, http.StatusOK, tc.origin, tc.credentials)
			}
		})
	}
}

func checkCORS(t *testing.T, what string, resp *http.Response, status int, origin string, credentials bool) {
	t.Helper()
	acao, acac := resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Allow-Credentials")
	wantACAO := "*"
	if credentials {
		wantACAO = origin
	}
	if resp.StatusCode != status || acao != wantACAO || (acac == "true") != credentials {
		t.Errorf("%s: status %d, Allow-Origin %q, Allow-Credentials %q; want %d, %q, credentials %v",
			what, resp.StatusCode, acao, acac, status, wantACAO, credentials)
	}
}

// What an HTML checkbox sends for "private" is accepted.
func TestFormPrivateValues(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "news") // no token: sees public events only
	for value, private := range map[string]bool{"on": true, "true": true, "1": true, "TRUE": true, "off": false, "false": false, "0": false, "": false} {
		status, ans := th.post(t, "application/x-www-form-urlencoded", url.Values{"topic": {"news"}, "data": {value}, "private": {value}}.Encode())
		if status != http.StatusOK {
			t.Fatalf("private=%q: %d %v", value, status, ans)
		}
		if !private {
			if m := s.next(t); m.Data != value {
				t.Fatalf("after private=%q the stream got %q: a private event reached an anonymous stream, or a public one was lost", value, m.Data)
			}
		}
	}
	status, ans := th.post(t, "application/x-www-form-urlencoded", "topic=news&private=yes")
	if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(ans["error"]), "on") {
		t.Fatalf("private=yes: %d %v, want 400 naming the accepted values", status, ans)
	}
}

// Pattern-like selectors are refused, naming what is supported, instead
// of being taken as topic names; topics may not contain those characters.
func TestPatternSelectorsRefused(t *testing.T) {
	th := startHub(t, nil)
	for _, sel := range []string{"a*", "*a", "books/{id}", "{id}", "a}"} {
		resp, err := th.client.Get(th.srv.URL + "/events?" + url.Values{"topic": {sel}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		ans := decodeJSONBody(t, resp)
		resp.Body.Close()
		if msg := fmt.Sprint(ans["error"]); resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, "pattern selectors") || !strings.Contains(msg, `"*" alone`) {
			t.Errorf("selector %q: %d %v, want 400 naming what is supported", sel, resp.StatusCode, ans)
		}
		status, ans := th.post(t, "application/json", `{"topic":`+strconvQuote(sel)+`,"data":"x"}`)
		if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(ans["error"]), "reserved") {
			t.Errorf("publish to %q: %d %v, want 400", sel, status, ans)
		}
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// A hub without a cluster or NodeID still names itself in GET /cluster.
func TestClusterNamesSingleNode(t *testing.T) {
	th := startHub(t, nil)
	resp, err := th.client.Get(th.srv.URL + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Node  string
		Nodes []herald.NodeInfo
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(th.srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusOK || body.Node == "" || !strings.HasSuffix(body.Node, ":"+port) ||
		len(body.Nodes) != 1 || body.Nodes[0].Node != body.Node || !body.Nodes[0].Self {
		t.Fatalf("GET /cluster: %d %+v, want this node named host:%s", resp.StatusCode, body, port)
	}
}

// With a per-subject cap, a token without sub cannot open streams: it
// would escape the cap.
func TestTokenWithoutSubjectUnderSubjectCap(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.SubscribeAuth, h.MaxConnectionsPerSubject = v, 1
	})
	noSub, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": time.Now().Add(time.Hour).Unix(), "herald": map[string][]string{"subscribe": {"news"}},
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := th.do(t, http.MethodGet, "/events?topic=news", noSub, ""); got.status != http.StatusForbidden || got.reason != "missing_subject" {
			t.Fatalf("stream with a token without sub: %+v, want 403 missing_subject", got)
		}
	}
	th.subscribe(t, mint(t, testSecret, time.Hour, "", "news"), "news")
	if got := th.do(t, http.MethodGet, "/events?topic=news", mint(t, testSecret, time.Hour, "", "news"), ""); got.status != http.StatusTooManyRequests {
		t.Fatalf("second stream of alice: %+v, want 429", got)
	}
}

// A request with both Content-Length and chunked encoding (which net/http
// would read chunked, a proxy in front maybe by its length) is refused
// with 400 and its connection closed; so is any chunked request, since
// net/http hides the Content-Length of such a request from the handler.
func TestChunkedRequestsRefused(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			th := startTransport(t, mode, nil)
			s := th.subscribe(t, "", "news")
			chunk := func(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }
			body := `{"topic":"news","data":"smuggled"}`
			for name, head := range map[string]string{
				"both":         fmt.Sprintf("Content-Length: %d\r\nTransfer-Encoding: chunked\r\n", len(chunk(body))),
				"chunked only": "Transfer-Encoding: chunked\r\n",
			} {
				c, err := net.Dial("tcp", th.srv.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				// A second request follows on the same connection: it must
				// never be served.
				fmt.Fprintf(c, "POST /publish HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n%s\r\n%s"+
					"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n", head, chunk(body))
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				var ans map[string]string
				json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || !resp.Close || !strings.Contains(ans["error"], "Content-Length") {
					t.Errorf("%s: status %d, close %v, %v; want 400, closed, naming Content-Length", name, resp.StatusCode, resp.Close, ans)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
					t.Errorf("%s: after the refusal read %q, %v; want the connection closed", name, rest, err)
				}
			}
			// Nothing was published: the next event is the first.
			if got := th.do(t, http.MethodPost, "/publish", "", `{"topic":"news","data":"plain"}`); got.status != http.StatusOK {
				t.Fatalf("plain publish: %+v", got)
			}
			if m := s.next(t); m.Data != "plain" {
				t.Fatalf("stream got %q, want only the plain publish", m.Data)
			}
		})
	}
}

// rawPublish sends the headers of a JSON publish of a body of n bytes and
// the first sent bytes of it, and returns the connection to finish it.
func rawPublish(t *testing.T, addr string, n int, sent string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /publish HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", n, sent)
	return c
}

func readAnswer(t *testing.T, c net.Conn) (*http.Response, map[string]string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans map[string]string
	json.NewDecoder(resp.Body).Decode(&ans)
	return resp, ans
}

// Publish bodies being read hold their share of MaxPublishMemory from
// before the first byte is read: past it, a publish gets 503 with
// Retry-After (at once here: PublishMemoryWait is negative).
func TestPublishMemoryBounded(t *testing.T) {
	const size = 1000
	body := `{"topic":"news","data":"` + strings.Repeat("x", size-26) + `"}`
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.MaxBodyBytes = 4 * size
		h.MaxPublishMemory = 2 * size * httpapi.PublishMemoryFactor
		h.PublishMemoryWait = -1
	})
	addr := th.srv.Listener.Addr().String()
	s := th.subscribe(t, "", "news")

	// Two publishes whose bodies are still coming fill the bound.
	a, b := rawPublish(t, addr, size, body[:10]), rawPublish(t, addr, size, body[:10])
	small := `{"topic":"news","data":"small"}`
	early := 0 // small publishes that got in before a and b were read
	waitFor(t, "a small publish to be refused for memory", func() bool {
		c := rawPublish(t, addr, len(small), small)
		resp, ans := readAnswer(t, c)
		c.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			early++
			return false
		case resp.StatusCode != http.StatusServiceUnavailable:
			t.Fatalf("small publish: %d %v", resp.StatusCode, ans)
		case resp.Header.Get("Retry-After") == "" || ans["reason"] != "overloaded":
			t.Fatalf("503 without Retry-After or reason: %v %v", resp.Header, ans)
		}
		return true
	})
	if n := th.logs.take("request rejected"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once", n)
	}
	for _, c := range []net.Conn{a, b} {
		io.WriteString(c, body[10:])
		if resp, ans := readAnswer(t, c); resp.StatusCode != http.StatusOK {
			t.Fatalf("publish once its body came: %d %v", resp.StatusCode, ans)
		}
	}
	for range early + 2 {
		s.next(t)
	}
	// Their memory was given back.
	c := rawPublish(t, addr, len(small), small)
	if resp, ans := readAnswer(t, c); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish after the others ended: %d %v", resp.StatusCode, ans)
	}

	// A body announced larger than MaxBodyBytes is refused before it is
	// sent, not after waiting for it.
	c = rawPublish(t, addr, 5*size, "")
	if resp, ans := readAnswer(t, c); resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("announced oversized body: %d close %v %v, want 413 and closed", resp.StatusCode, resp.Close, ans)
	}
}

// A publish waiting for room under MaxPublishMemory gets in once a body
// being read is done.
func TestPublishMemoryWaits(t *testing.T) {
	const size = 1000
	body := `{"topic":"news","data":"` + strings.Repeat("x", size-26) + `"}`
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.MaxBodyBytes = 4 * size
		h.MaxPublishMemory = size * httpapi.PublishMemoryFactor
		h.PublishMemoryWait = time.Minute
	})
	addr := th.srv.Listener.Addr().String()
	a := rawPublish(t, addr, size, body[:10])
	waiting := rawPublish(t, addr, size, body)
	io.WriteString(a, body[10:])
	for _, c := range []net.Conn{a, waiting} {
		if resp, ans := readAnswer(t, c); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %v", resp.StatusCode, ans)
		}
	}
}
