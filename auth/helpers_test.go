package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald/auth"
)

// testSecret is 32 bytes, the least accepted.
var testSecret = []byte("herald-test-secret-0123456789abc")

// testKeys are generated once per test binary (RSA generation is slow).
type testKeys struct {
	rsa                 *rsa.PrivateKey
	ec256, ec384, ec521 *ecdsa.PrivateKey
	ed                  ed25519.PrivateKey
}

var keys = sync.OnceValue(func() testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k testKeys
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	k.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

// pemOf encodes the public half of a private key as a PKIX PEM block.
func pemOf(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// claims returns valid claims: exp in an hour, a herald claim.
func claims(extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":    "alice",
		"exp":    time.Now().Add(time.Hour).Unix(),
		"herald": map[string]any{"publish": []string{"news"}, "subscribe": []string{"news", "alerts"}},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

// sign makes a token; header entries are added to (or, when nil, removed
// from) the JOSE header.
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.Claims, header ...any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == nil {
			delete(tok.Header, header[i].(string))
		} else {
			tok.Header[header[i].(string)] = header[i+1]
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, c auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// checkRejected checks that err is an *auth.Error of reason with status
// 401, a well-formed challenge, and no trace of the token or secrets.
func checkRejected(t testing.TB, err error, reason auth.Reason, token string, secrets ...[]byte) {
	t.Helper()
	var e *auth.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T); want an *auth.Error of reason %s", err, err, reason)
	}
	if e.Reason != reason {
		t.Fatalf("reason %s (%q); want %s", e.Reason, e.Description, reason)
	}
	if e.StatusCode() != http.StatusUnauthorized {
		t.Errorf("status %d; want 401", e.StatusCode())
	}
	ch := e.Challenge()
	if reason == auth.ReasonMissing {
		if ch != `Bearer realm="herald"` {
			t.Errorf("challenge %q", ch)
		}
	} else if !strings.HasPrefix(ch, `Bearer realm="herald", error="invalid_token", error_description="`) || !strings.HasSuffix(ch, `"`) {
		t.Errorf("challenge %q", ch)
	}
	for _, s := range []string{e.Error(), ch} {
		if token != "" {
			parts := strings.Split(token, ".")
			for _, p := range append(parts, token) {
				if len(p) >= 8 && strings.Contains(s, p) {
					t.Errorf("error text %q contains part of the token", s)
				}
			}
		}
		for _, secret := range secrets {
			if len(secret) > 0 && strings.Contains(s, string(secret)) {
				t.Errorf("error text %q contains key material", s)
			}
		}
	}
}
