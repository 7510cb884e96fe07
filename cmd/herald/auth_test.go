package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The authenticated quickstart: serve with --jwt-secret, mint tokens with
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
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-secret", secret)
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
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-secret", "0123456789abcdef0123456789abcdef", "--anonymous")
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
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-secret", secret)
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

// A key is a secret or a file, never guessed: the old --jwt-key took a
// path that did not exist (32+ characters) as an HMAC secret, so a token
// signed with the path string published. Now a missing file stops the
// hub naming it, and the removed flags say what replaced them.
func TestJWTKeyFlagsAreExplicit(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "keys", "publisher-public-key.pem")
	notPEM := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(notPEM, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		args []string
		env  string // HERALD_JWT_KEY, when set
		want []string
	}{
		{args: []string{"--jwt-key-file", missing}, want: []string{"--jwt-key-file", missing, "no such file"}},
		{args: []string{"--publisher-jwt-key-file", missing}, want: []string{"--publisher-jwt-key-file", missing}},
		{args: []string{"--subscriber-jwt-key-file", missing}, want: []string{"--subscriber-jwt-key-file", missing}},
		{args: []string{"--jwt-key-file", notPEM}, want: []string{"--jwt-key-file " + notPEM, "no PEM block"}},
		{args: []string{"--jwt-secret", secret, "--jwt-key-file", missing}, want: []string{"exclude each other"}},
		{args: []string{"--jwt-secret", "too short"}, want: []string{"--jwt-secret", "32 bytes"}},
		{args: []string{"--jwt-key", missing}, want: []string{"--jwt-key ", "removed", "--jwt-secret", "--jwt-key-file"}},
		{args: []string{"--publisher-jwt-key", secret}, want: []string{"--publisher-jwt-key ", "--publisher-jwt-secret", "--publisher-jwt-key-file"}},
		{env: missing, want: []string{"HERALD_JWT_KEY", "--jwt-secret", "--jwt-key-file"}},
	} {
		if c.env != "" {
			t.Setenv("HERALD_JWT_KEY", c.env)
		}
		var errOut bytes.Buffer
		// A hub that starts in spite of the bad key is stopped, and fails
		// the case with its exit status 0.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		code := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, c.args...), io.Discard, &errOut)
		cancel()
		if code != 2 {
			t.Errorf("serve %q (HERALD_JWT_KEY=%q): exit %d, want 2; stderr %q", c.args, c.env, code, errOut.String())
		}
		for _, w := range c.want {
			if !strings.Contains(errOut.String(), w) {
				t.Errorf("serve %q (HERALD_JWT_KEY=%q): stderr %q does not say %q", c.args, c.env, errOut.String(), w)
			}
		}
		if strings.Contains(errOut.String(), secret) {
			t.Errorf("serve %q: stderr quotes the secret: %q", c.args, errOut.String())
		}
		os.Unsetenv("HERALD_JWT_KEY")
	}
	var help bytes.Buffer
	run(context.Background(), []string{"serve", "--help"}, &help, io.Discard)
	if strings.Contains(help.String(), "--jwt-key ") || !strings.Contains(help.String(), "--jwt-key-file") || !strings.Contains(help.String(), "HERALD_JWT_SECRET") {
		t.Errorf("serve --help lists the removed --jwt-key or misses the new flags:\n%s", help.String())
	}
}

// --jwt-key-file verifies tokens with a PEM public key, and the role flags
// give publishers and subscribers keys of their own.
func TestServeWithKeyFileAndRoleKeys(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "subscriber.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	const pubSecret = "publishers-own-secret-0123456789abcdef"
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-key-file", keyFile, "--publisher-jwt-secret", pubSecret)

	claims := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "herald": map[string]any{"subscribe": []string{"news"}, "publish": []string{"news"}}}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", s.base+"/events?topic=news", nil)
	req.Header.Set("Authorization", "Bearer "+signed)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("stream with a token signed by the key file's key: %d", stream.StatusCode)
	}
	dec := streamDecoder(t, stream.Body)

	publish := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", s.base+"/publish", strings.NewReader("topic=news&data=hello"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := freshConns.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The publisher key replaces the shared one for publishers.
	if code := publish(signed); code != http.StatusUnauthorized {
		t.Errorf("publish with the subscribers' key: %d, want 401", code)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"token", "--secret", pubSecret, "--publish", "news"}, &out, io.Discard); code != 0 {
		t.Fatal("herald token failed")
	}
	if code := publish(strings.TrimSpace(out.String())); code != http.StatusOK {
		t.Fatalf("publish with the publisher secret: %d", code)
	}
	if m, err := dec.Next(); err != nil || m.Data != "hello" {
		t.Fatalf("event: %+v, %v", m, err)
	}
}
