package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The authenticated quickstart: serve with --jwt-key, mint tokens with
// herald token, publish and subscribe with them; without a token, 401.
func TestServeWithJWTKey(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	const secret = "0123456789abcdef0123456789abcdef"
	mint := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"token", "--secret", secret, "--sub", "alice"}, args...), &out, &errOut); code != 0 {
			t.Fatalf("herald token: %d: %s", code, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-key", secret)
	do := func(method, path, token, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if resp := do("GET", "/events?topic=news", "", ""); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("stream without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	stream := do("GET", "/events?topic=news", mint("--subscribe", "news"), "")
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("stream with a token: %d", stream.StatusCode)
	}
	form := url.Values{"topic": {"news"}, "data": {"hello"}}.Encode()
	if resp := do("POST", "/publish", "", form); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("publish without a token: %d", resp.StatusCode)
	}
	if resp := do("POST", "/publish", mint("--publish", "sports"), form); resp.StatusCode != http.StatusForbidden {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("publish without the right: %d %s", resp.StatusCode, body)
	}
	if resp := do("POST", "/publish", mint("--publish", "news"), form); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish with the right: %d", resp.StatusCode)
	}
	if m, err := streamDecoder(t, stream.Body).Next(); err != nil || m.Data != "hello" {
		t.Fatalf("event: %+v, %v", m, err)
	}
}

// --anonymous lets streams without a token in; a bad token is still 401.
func TestServeAnonymousSubscribers(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-key", "0123456789abcdef0123456789abcdef", "--anonymous")
	if status, _ := getStatus(t, s.base+"/events?topic=news", ""); status != http.StatusOK {
		t.Fatalf("anonymous stream: %d", status)
	}
	if status, _ := getStatus(t, s.base+"/events?topic=news", "garbage"); status != http.StatusUnauthorized {
		t.Fatalf("stream with a bad token: %d", status)
	}
}

func getStatus(t *testing.T, u, token string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := freshConns.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// A publisher's token is not taken from a cookie: a form post from
// another site would carry it (CSRF).
func TestPublishIgnoresCookieTokens(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	var out bytes.Buffer
	if code := run(context.Background(), []string{"token", "--secret", secret, "--publish", "*"}, &out, io.Discard); code != 0 {
		t.Fatal("herald token failed")
	}
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-key", secret)
	req, _ := http.NewRequest("POST", s.base+"/publish", strings.NewReader("topic=a&data=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "herald_token", Value: strings.TrimSpace(out.String())})
	resp, err := freshConns.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("publish with a cookie token: %d, want 401", resp.StatusCode)
	}
}
