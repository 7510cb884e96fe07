package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
)

// The fuzz targets use fixed keys and a fixed clock so that their seed
// corpora (testdata/fuzz) hold tokens that stay valid.
var (
	fuzzSecret = []byte("herald-fuzz-secret-0123456789abc")
	fuzzEd     = ed25519.NewKeyFromSeed([]byte("herald-fuzz-ed25519-seed-32bytes"))
	fuzzNow    = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func fuzzClaims(rights any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "fuzz", "iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix()}
	if rights != nil {
		c["herald"] = rights
	}
	return c
}

func fuzzSign(tb testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzTokens are the only tokens the fuzz verifiers accept (HMAC and
// Ed25519 signatures are deterministic).
func fuzzTokens(tb testing.TB) (hs, ed []string) {
	rights := map[string]any{"publish": []string{"news"}, "subscribe": []string{"*"}}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		hs = append(hs, fuzzSign(tb, m, fuzzSecret, fuzzClaims(rights)))
	}
	ed = append(ed, fuzzSign(tb, jwt.SigningMethodEdDSA, fuzzEd, fuzzClaims(rights)))
	return hs, ed
}

func fuzzVerifiers(tb testing.TB) (hs, ed *Verifier) {
	clock := func() time.Time { return fuzzNow }
	var err error
	if hs, err = NewVerifier(context.Background(), Config{Secret: fuzzSecret, Now: clock}); err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(fuzzEd.Public())
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if ed, err = NewVerifier(context.Background(), Config{PublicKeyPEM: pemKey, Now: clock}); err != nil {
		tb.Fatal(err)
	}
	return hs, ed
}

// checkError checks that a rejection is an *Error with a known reason, a
// header-safe challenge and no trace of the token.
func checkError(t *testing.T, err error, token string) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v is a %T", err, err)
	}
	switch e.Reason {
	case ReasonMissing, ReasonMalformed, ReasonExpired, ReasonNotYetValid, ReasonBadSignature,
		ReasonWrongAlgorithm, ReasonWrongAudience, ReasonWrongIssuer, ReasonUnknownKey, ReasonInvalidClaims:
	default:
		t.Fatalf("unknown reason %q", e.Reason)
	}
	ch := e.Challenge()
	for i := 0; i < len(ch); i++ {
		if ch[i] < 0x20 || ch[i] > 0x7e {
			t.Fatalf("challenge %q has byte %#x", ch, ch[i])
		}
	}
	if len(token) >= 16 && (strings.Contains(e.Error(), token) || strings.Contains(ch, token)) {
		t.Fatalf("error %q contains the token", e.Error())
	}
}

// FuzzVerify: no input panics, and only the exact tokens signed with the
// keys verify: changing any byte of one, or anything else, fails.
func FuzzVerify(f *testing.F) {
	hsTokens, edTokens := fuzzTokens(f)
	for _, s := range append(hsTokens, edTokens...) {
		f.Add(s)
		f.Add(s[:len(s)-1])
		f.Add(strings.ToUpper(s))
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add(fuzzSign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, fuzzClaims(nil)))
	hs, ed := fuzzVerifiers(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, v := range []struct {
			v     *Verifier
			valid []string
		}{{hs, hsTokens}, {ed, edTokens}} {
			id, err := v.v.Verify(context.Background(), s)
			if err == nil {
				if !slices.Contains(v.valid, s) {
					t.Fatalf("verified a token never signed: %q", s)
				}
				if id.Subject != "fuzz" || !id.CanPublish([]string{"news"}) {
					t.Fatalf("identity %+v", id)
				}
				continue
			}
			if slices.Contains(v.valid, s) {
				t.Fatalf("refused a signed token: %v", err)
			}
			checkError(t, err, s)
		}
		// The same string as a request's header, cookie or query.
		r := &http.Request{Header: http.Header{"Authorization": {s}, "Cookie": {DefaultCookieName + "=" + s}},
			URL: &url.URL{RawQuery: QueryParameter + "=" + url.QueryEscape(s)}}
		if _, err := hs.Authenticate(r); err != nil {
			checkError(t, err, s)
		}
	})
}

// FuzzClaims: the herald claim parser never panics, and what it accepts
// reads back as itself and grants what it says; a signed token carrying
// the claim gets the same rights or the same refusal.
func FuzzClaims(f *testing.F) {
	for _, s := range []string{
		`{"publish":["news"],"subscribe":["*"]}`, `null`, `{}`, `{"publish":[""]}`, `{"subscribe":"news"}`,
		`{"publish":[null]}`, `[]`, `"*"`, `{"publish":["a","*","b"],"extra":1}`,
	} {
		f.Add([]byte(s))
	}
	hs, _ := fuzzVerifiers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		publish, subscribe, err := parseRights(data)
		if err != nil {
			if publish != nil || subscribe != nil {
				t.Fatal("rights with an error")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, `claim "herald"`) && !strings.HasPrefix(msg, "herald.") {
				t.Fatalf("error %q does not name the claim", msg)
			}
		} else {
			id := &herald.Identity{Publish: publish, Subscribe: subscribe}
			hasAll := false
			for _, sel := range subscribe {
				if _, ok := sel.(herald.All); ok {
					hasAll = true
				}
				if !id.CanSubscribe(sel) {
					t.Fatalf("subscribe right %q does not cover itself", sel)
				}
			}
			if id.CanSubscribe(herald.All{}) != hasAll {
				t.Fatalf(`CanSubscribe("*") = %v with rights %v`, !hasAll, subscribe)
			}
			for _, sel := range append(slices.Clone(publish), subscribe...) {
				back, err := herald.ParseSelector(sel.String())
				if err != nil || back != sel {
					t.Fatalf("selector %q reads back as %v, %v", sel, back, err)
				}
			}
			for _, sel := range publish {
				if tp, ok := sel.(herald.Topic); ok && !id.CanPublish([]string{string(tp)}) {
					t.Fatalf("publish right %q does not allow its topic", tp)
				}
			}
		}

		if !json.Valid(data) || len(data) > MaxTokenBytes/2 {
			return
		}
		tok := fuzzSign(t, jwt.SigningMethodHS256, fuzzSecret, fuzzClaims(json.RawMessage(data)))
		got, verr := hs.Verify(context.Background(), tok)
		switch {
		case err != nil && ReasonOf(verr) != ReasonInvalidClaims:
			t.Fatalf("claim refused by parseRights (%v) but token gave %v", err, verr)
		case err == nil && verr != nil:
			t.Fatalf("claim accepted by parseRights but token refused: %v", verr)
		case err == nil && (!sameSelectors(got.Publish, publish) || !sameSelectors(got.Subscribe, subscribe)):
			t.Fatalf("token rights %v %v; parsed %v %v", got.Publish, got.Subscribe, publish, subscribe)
		}
	})
}

func sameSelectors(a, b []herald.Selector) bool {
	return slices.EqualFunc(a, b, func(x, y herald.Selector) bool { return x.String() == y.String() })
}
