package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald/auth"
)

// jwk is one key of a test JWKS: its private half signs tokens.
type jwk struct {
	kid, alg, use string
	priv          any
}

// jwksServer serves a JWKS that tests can replace, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	keys   []jwk
	status int
	hits   atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...jwk) *jwksServer {
	s := &jwksServer{keys: keys, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			w.WriteHeader(s.status)
			return
		}
		set := map[string][]map[string]string{"keys": {}}
		for _, k := range s.keys {
			set["keys"] = append(set["keys"], jwkJSON(t, k))
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, keys ...jwk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.keys = status, keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkJSON writes the public JWK of k (RFC 7517, 7518, 8037).
func jwkJSON(t *testing.T, k jwk) map[string]string {
	m := map[string]string{"kid": k.kid}
	if k.alg != "" {
		m["alg"] = k.alg
	}
	if k.use != "" {
		m["use"] = k.use
	}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PrivateKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		pub, err := p.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			t.Fatal(err)
		}
		m["kty"], m["crv"], m["x"], m["y"] = "EC", p.Curve.Params().Name, b64(pub[1:1+size]), b64(pub[1+size:])
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(p.Public().(ed25519.PublicKey))
	case []byte:
		m["kty"], m["k"] = "oct", b64(p)
	default:
		t.Fatalf("no JWK for %T", k.priv)
	}
	return m
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func jwksVerifier(t *testing.T, url string, c auth.Config) *auth.Verifier {
	c.JWKSURL = url
	c.Logger = quiet()
	if c.JWKSUnknownKIDRefresh == 0 {
		c.JWKSUnknownKIDRefresh = time.Hour // one unknown-kid refresh per test
	}
	return newVerifier(t, c)
}

func TestJWKS(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t,
		jwk{kid: "rsa", priv: k.rsa},
		jwk{kid: "rsa-pinned", alg: "RS256", priv: k.rsa},
		jwk{kid: "ec", use: "sig", priv: k.ec384},
		jwk{kid: "ed", priv: k.ed},
		jwk{kid: "enc", use: "enc", priv: k.ec256},
		jwk{kid: "oct", priv: testSecret},
	)
	v := jwksVerifier(t, srv.URL, auth.Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		token  string
		reason auth.Reason
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "rsa"), ""},
		{"PS512", sign(t, jwt.SigningMethodPS512, k.rsa, claims(), "kid", "rsa"), ""},
		{"pinned alg", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "rsa-pinned"), ""},
		{"other alg than the key's", sign(t, jwt.SigningMethodPS256, k.rsa, claims(), "kid", "rsa-pinned"), auth.ReasonWrongAlgorithm},
		{"ES384", sign(t, jwt.SigningMethodES384, k.ec384, claims(), "kid", "ec"), ""},
		{"ES256 on a P-384 key", sign(t, jwt.SigningMethodES256, k.ec256, claims(), "kid", "ec"), auth.ReasonWrongAlgorithm},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, claims(), "kid", "ed"), ""},
		{"no kid: every key tried", sign(t, jwt.SigningMethodEdDSA, k.ed, claims()), ""},
		{"no kid, no key for alg", sign(t, jwt.SigningMethodES512, k.ec521, claims()), auth.ReasonUnknownKey},
		{"encryption key", sign(t, jwt.SigningMethodES256, k.ec256, claims(), "kid", "enc"), auth.ReasonUnknownKey},
		{"HMAC with the JWKS's oct key", sign(t, jwt.SigningMethodHS256, testSecret, claims(), "kid", "oct"), auth.ReasonWrongAlgorithm},
		{"RS256 with the oct key", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "oct"), auth.ReasonWrongAlgorithm},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(), "kid", "rsa"), auth.ReasonWrongAlgorithm},
		{"kid not a string", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", 7), auth.ReasonMalformed},
		{"expired", sign(t, jwt.SigningMethodRS256, k.rsa, claims("exp", time.Now().Add(-time.Hour).Unix()), "kid", "rsa"), auth.ReasonExpired},
		{"wrong key for kid", sign(t, jwt.SigningMethodEdDSA, otherEd(t), claims(), "kid", "ed"), auth.ReasonBadSignature},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "nope"), auth.ReasonUnknownKey},
		// The limiter's one refresh was spent by the unknown kid above: a
		// second one fails at once instead of waiting an hour.
		{"unknown kid again", sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "nope2"), auth.ReasonUnknownKey},
	} {
		id, err := v.Verify(ctx, tc.token)
		if tc.reason == "" {
			if err != nil || id.Subject != "alice" {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		t.Run(tc.name, func(t *testing.T) { checkRejected(t, err, tc.reason, tc.token) })
	}
	if hits := srv.hits.Load(); hits != 2 {
		t.Errorf("%d fetches; want 2 (start, one unknown kid)", hits)
	}
}

func otherEd(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Rotation: the provider replaces key A with key B. The first token
// signed with B (unknown kid) makes the verifier fetch the set again, with
// no wait; A, gone from the new set, is then refused.
func TestJWKSRotationOnUnknownKID(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "a", priv: k.ec256})
	v := jwksVerifier(t, srv.URL, auth.Config{})
	ctx := context.Background()
	tokA := sign(t, jwt.SigningMethodES256, k.ec256, claims(), "kid", "a")
	tokB := sign(t, jwt.SigningMethodEdDSA, k.ed, claims(), "kid", "b")
	if _, err := v.Verify(ctx, tokA); err != nil {
		t.Fatal(err)
	}

	srv.set(http.StatusOK, jwk{kid: "b", priv: k.ed})
	if _, err := v.Verify(ctx, tokA); err != nil {
		t.Fatalf("cached key a refused before any refresh: %v", err)
	}
	start := time.Now()
	if _, err := v.Verify(ctx, tokB); err != nil {
		t.Fatalf("new key b: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refresh took %v", d)
	}
	_, err := v.Verify(ctx, tokA)
	checkRejected(t, err, auth.ReasonUnknownKey, tokA)
	if hits := srv.hits.Load(); hits != 2 {
		t.Errorf("%d fetches; want 2", hits)
	}
}

// Rotation by the refresh interval alone (the unknown-kid refresh spent
// first): polls, with a deadline, until the new key is fetched.
func TestJWKSRefreshInterval(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "a", priv: k.ec256})
	v := jwksVerifier(t, srv.URL, auth.Config{JWKSRefresh: 20 * time.Millisecond})
	ctx := context.Background()
	spend := sign(t, jwt.SigningMethodES256, k.ec256, claims(), "kid", "spend")
	_, err := v.Verify(ctx, spend)
	checkRejected(t, err, auth.ReasonUnknownKey, spend)

	srv.set(http.StatusOK, jwk{kid: "b", priv: k.ed})
	tokB := sign(t, jwt.SigningMethodEdDSA, k.ed, claims(), "kid", "b")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(ctx, tokB)
		if err == nil {
			break
		}
		if auth.ReasonOf(err) != auth.ReasonUnknownKey || time.Now().After(deadline) {
			t.Fatalf("key b never accepted: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tokA := sign(t, jwt.SigningMethodES256, k.ec256, claims(), "kid", "a")
	_, err = v.Verify(ctx, tokA)
	checkRejected(t, err, auth.ReasonUnknownKey, tokA)
}

// A provider down when the verifier starts: NewVerifier still succeeds,
// tokens fail with unknown_key, and the first unknown kid once it is up
// fetches the set.
func TestJWKSUnavailableAtStart(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t)
	srv.set(http.StatusInternalServerError)
	var logs syncBuffer
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL + "/jwks?key=hidden", JWKSUnknownKIDRefresh: time.Nanosecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if l := logs.String(); !strings.Contains(l, "cannot fetch the JWKS") || strings.Contains(l, "hidden") {
		t.Errorf("log %q; want the failed fetch, without the URL's query", l)
	}
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "a")
	_, err := v.Verify(ctx, tok)
	checkRejected(t, err, auth.ReasonUnknownKey, tok)

	srv.set(http.StatusOK, jwk{kid: "a", priv: k.rsa})
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
}

// Close stops the refresh goroutine: no fetch afterwards.
func TestJWKSClose(t *testing.T) {
	srv := newJWKSServer(t, jwk{kid: "a", priv: keys().ed})
	v := jwksVerifier(t, srv.URL, auth.Config{JWKSRefresh: 5 * time.Millisecond})
	deadline := time.Now().Add(10 * time.Second)
	for srv.hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the JWKS is not fetched every 5ms")
		}
		time.Sleep(time.Millisecond)
	}
	v.Close()
	v.Close()
	// A fetch under way when Close was called may still end: wait for the
	// count to settle, then check that it stays (it grew every 5ms before).
	n := srv.hits.Load()
	for {
		time.Sleep(30 * time.Millisecond)
		m := srv.hits.Load()
		if m == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fetches go on after Close")
		}
		n = m
	}
	time.Sleep(100 * time.Millisecond)
	if m := srv.hits.Load(); m != n {
		t.Errorf("%d fetches after Close", m-n)
	}
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
