package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// Claim names are matched exactly and a duplicate is refused:
// encoding/json alone matches them case-insensitively (with Unicode
// folding) and lets the last spelling win.
func TestClaimNamesAreExact(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret})
	ctx := context.Background()
	// Only an upper-case HERALD claim: rights granted.
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("herald", nil, "HERALD", map[string]any{"publish": []string{"*"}, "subscribe": []string{"*"}}))
	id, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HERALD only: publish=%v subscribe=%v", id.Publish, id.Subscribe)
	if id.CanSubscribe(herald.All{}) {
		t.Errorf("claim \"HERALD\" grants subscribe *")
	}
	// Both: a legit herald claim and a later "Herald": which wins? Build raw payload to control order.
	payload := `{"sub":"alice","exp":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"herald":{"subscribe":["news"]},"Herald":{"subscribe":["*"]},"Sub":"admin","ſub":"root"}`
	tok2 := rawHS256(t, payload)
	id, err = v.Verify(ctx, tok2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("herald+Herald: subject=%q subscribe=%v", id.Subject, id.Subscribe)
	if id.CanSubscribe(herald.All{}) || id.Subject != "alice" {
		t.Errorf("later differently-cased claims override: subject %q, subscribe %v", id.Subject, id.Subscribe)
	}
	// aud with Unicode folding: "aud" has no foldable letters; iss: "iſs".
	v2 := newVerifier(t, auth.Config{Secret: testSecret, Issuer: "https://idp"})
	payload = `{"exp":` + itoa(time.Now().Add(time.Hour).Unix()) + `,"iss":"https://evil","iſs":"https://idp"}`
	if _, err := v2.Verify(ctx, rawHS256(t, payload)); err == nil {
		t.Errorf("iss \"https://evil\" accepted thanks to a later \"iſs\" (U+017F) claim")
	}
}

// A member given twice inside the herald claim is refused, as at the top
// level: readers differ on which one counts, so the token cannot say what
// it grants.
func TestHeraldClaimMemberTwice(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret})
	exp := itoa(time.Now().Add(time.Hour).Unix())
	for _, herald := range []string{
		`{"publish":["a"],"publish":["*"]}`,
		`{"subscribe":["a"],"publish":["a"],"subscribe":["*"]}`,
		`{"publish":["a"],"publis\u0068":["*"]}`, // the same name, escaped
		`{"publish":["a"],"x":1,"x":2}`,
	} {
		tok := rawHS256(t, `{"sub":"alice","exp":`+exp+`,"herald":`+herald+`}`)
		id, err := v.Verify(context.Background(), tok)
		if err == nil {
			t.Errorf("herald claim %s accepted: publish %v, subscribe %v", herald, id.Publish, id.Subscribe)
			continue
		}
		checkRejected(t, err, auth.ReasonInvalidClaims, tok, testSecret)
		if !strings.Contains(err.Error(), "twice") {
			t.Errorf("herald claim %s: %q does not say a member is there twice", herald, err)
		}
	}
	// Distinct names, differently cased ones included, are fine.
	tok := rawHS256(t, `{"sub":"alice","exp":`+exp+`,"herald":{"publish":["a"],"Publish":["*"],"subscribe":["b"]}}`)
	id, err := v.Verify(context.Background(), tok)
	if err != nil || !id.CanPublish([]string{"a"}) || id.CanPublish([]string{"z"}) {
		t.Errorf("distinct members: %+v, %v; want publish a only", id, err)
	}
}

func itoa(n int64) string { return strings.TrimSpace(jsonNum(n)) }
func jsonNum(n int64) string {
	b, _ := jwt.NewNumericDate(time.Unix(n, 0)).MarshalJSON()
	return string(b)
}

func rawHS256(t *testing.T, payload string) string {
	t.Helper()
	h := b64([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := b64([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(h+"."+p, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return h + "." + p + "." + b64(sig)
}

// The JWKS URL's query (which may hold a key) is not logged, not even in
// the transport error that quotes the URL.
func TestJWKSQueryNotLogged(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connection refused from now on
	var logs syncBuffer
	v := newVerifier(t, auth.Config{JWKSURL: "http://user:pw@" + addr + "/jwks?api_key=S3CRET", JWKSTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_ = v
	t.Logf("log: %s", logs.String())
	if strings.Contains(logs.String(), "S3CRET") {
		t.Errorf("the JWKS URL's query (api_key) is logged")
	}
}

// A client that sends a random kid and goes away does not cancel the
// unknown-kid refresh it triggered: that refresh (at most one a minute)
// still brings in keys rotated meanwhile, so a token from the new key
// verifies at once instead of waiting for the hourly refresh.
func TestUnknownKIDRefreshSurvivesAbortedRequest(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "old", priv: k.rsa})
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL, Logger: quiet()}) // 1 unknown-kid fetch a minute
	// The provider rotates, and answers slowly from now on.
	other := otherRSA(t)
	srv.set(http.StatusOK, jwk{kid: "old", priv: k.rsa}, jwk{kid: "new", priv: other})
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // a slow provider, not synchronisation
		inner.ServeHTTP(w, r)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa, claims(), "kid", "random-1234")); err == nil {
		t.Fatal("a random kid verified")
	}
	tok := sign(t, jwt.SigningMethodRS256, other, claims(), "kid", "new")
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("token from the rotated key refused (%v): the aborted request cancelled the refresh", err)
	}
}

// A verifier whose first fetch failed fetches again for tokens without
// kid, within the unknown-kid rate limit, instead of waiting for the
// hourly refresh.
func TestNoKIDTokenAfterFailedStart(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t)
	srv.set(http.StatusInternalServerError)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL, Logger: quiet(), JWKSUnknownKIDRefresh: time.Nanosecond})
	srv.set(http.StatusOK, jwk{kid: "a", priv: k.rsa})
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, claims()) // no kid
	for i := 0; i < 3; i++ {
		_, err := v.Verify(context.Background(), tok)
		t.Logf("no-kid try %d: %v (hits %d)", i, err, srv.hits.Load())
		if err == nil {
			return
		}
	}
	t.Errorf("tokens without kid stay refused after the IdP is back (until JWKSRefresh)")
}

func otherRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A Bearer token after a tab is the header's token (not skipped for a
// cookie), and two cookies of the token's name are refused, not guessed.
func TestExtractionEdges(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/events?access_token=fromquery", nil)
	r.Header.Set("Authorization", "Bearer\tfromheader")
	if tok, from, err := auth.ExtractToken(r, "", 0); err != nil || tok != "fromheader" || from != auth.FromHeader {
		t.Errorf("Bearer<TAB>: %q from %v, %v", tok, from, err)
	}
	r, _ = http.NewRequest(http.MethodGet, "/events", nil)
	r.Header.Add("Cookie", "herald_token=planted; herald_token=real")
	if _, _, err := auth.ExtractToken(r, "", 0); auth.ReasonOf(err) != auth.ReasonMalformed {
		t.Errorf("two cookies: %v, want malformed", err)
	}
}

func TestLeewayIsBounded(t *testing.T) {
	if _, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret, Leeway: time.Hour}); err == nil {
		t.Fatal("an hour of leeway accepted")
	}
	if _, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret, Leeway: auth.MaxLeeway}); err != nil {
		t.Fatal(err)
	}
}
