package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// Every algorithm family verifies with its key, and the identity carries
// the token's subject, rights and expiry.
func TestEveryAlgorithmVerifies(t *testing.T) {
	k := keys()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		method jwt.SigningMethod
		key    any // signing key
		cfg    auth.Config
	}{
		{jwt.SigningMethodHS256, testSecret, auth.Config{Secret: testSecret}},
		{jwt.SigningMethodHS384, testSecret, auth.Config{Secret: testSecret}},
		{jwt.SigningMethodHS512, testSecret, auth.Config{Secret: testSecret}},
		{jwt.SigningMethodRS256, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodRS384, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodRS512, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodPS256, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodPS384, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodPS512, k.rsa, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodES256, k.ec256, auth.Config{PublicKeyPEM: pemOf(t, k.ec256)}},
		{jwt.SigningMethodES384, k.ec384, auth.Config{PublicKeyPEM: pemOf(t, k.ec384)}},
		{jwt.SigningMethodES512, k.ec521, auth.Config{PublicKeyPEM: pemOf(t, k.ec521)}},
		{jwt.SigningMethodEdDSA, k.ed, auth.Config{PublicKeyPEM: pemOf(t, k.ed)}},
	} {
		t.Run(tc.method.Alg(), func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			id, err := v.Verify(context.Background(), sign(t, tc.method, tc.key, claims("exp", exp.Unix())))
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "alice" || !id.Expires.Equal(exp) {
				t.Errorf("identity %+v", id)
			}
			if !id.CanPublish([]string{"news"}) || id.CanPublish([]string{"alerts"}) ||
				!id.CanSubscribe(herald.Topic("alerts")) || id.CanSubscribe(herald.All{}) {
				t.Errorf("rights publish %v subscribe %v", id.Publish, id.Subscribe)
			}
		})
	}
}

// The RSA public key also works as PKCS #1 and inside a certificate.
func TestPublicKeyFormats(t *testing.T) {
	k := keys()
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.ec256.PublicKey, k.ec256)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if _, err := newVerifier(t, auth.Config{PublicKeyPEM: pkcs1}).Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, claims())); err != nil {
		t.Errorf("PKCS #1: %v", err)
	}
	if _, err := newVerifier(t, auth.Config{PublicKeyPEM: cert}).Verify(context.Background(), sign(t, jwt.SigningMethodES256, k.ec256, claims())); err != nil {
		t.Errorf("certificate: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	k := keys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec256)
	private := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	for name, c := range map[string]auth.Config{
		"no key":              {},
		"two keys":            {Secret: testSecret, PublicKeyPEM: pemOf(t, k.ed)},
		"short secret":        {Secret: []byte("short")},
		"not PEM":             {PublicKeyPEM: []byte("hello")},
		"private key":         {PublicKeyPEM: private},
		"small RSA key":       {PublicKeyPEM: pemOf(t, small)},
		"unknown algorithm":   {Secret: testSecret, Algorithms: []string{"HS1"}},
		"none":                {Secret: testSecret, Algorithms: []string{"none"}},
		"algorithm for other": {PublicKeyPEM: pemOf(t, k.rsa), Algorithms: []string{"HS256"}},
		"curve mismatch":      {PublicKeyPEM: pemOf(t, k.ec256), Algorithms: []string{"ES384"}},
		"HMAC with JWKS":      {JWKSURL: "https://idp.example/jwks", Algorithms: []string{"HS256"}},
		"relative JWKS URL":   {JWKSURL: "/jwks"},
		"JWKS URL scheme":     {JWKSURL: "file:///etc/jwks"},
	} {
		v, err := auth.NewVerifier(context.Background(), c)
		if err == nil {
			v.Close()
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), string(testSecret)) || strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: error %q quotes key material", name, err)
		}
	}
}

// The token cases of a single-key verifier, each with its reason.
func TestTokenCases(t *testing.T) {
	k := keys()
	now := time.Now()
	hs := newVerifier(t, auth.Config{Secret: testSecret})
	rs := newVerifier(t, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)})
	otherSecret := []byte("another-secret-of-32-bytes-00000")
	valid := sign(t, jwt.SigningMethodHS256, testSecret, claims())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999,"herald":{"publish":["*"]}}`)) + "." + parts[2]
	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims())
	inAnHour, anHourAgo := strconv.FormatInt(now.Add(time.Hour).Unix(), 10), strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)
	header := func(h string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + parts[1] + "." + parts[2]
	}

	for _, tc := range []struct {
		name   string
		v      *auth.Verifier
		token  string
		reason auth.Reason // "" = valid
	}{
		{"valid", hs, valid, ""},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", now.Add(-time.Hour).Unix())), auth.ReasonExpired},
		{"expired within leeway", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", now.Add(-10*time.Second).Unix())), ""},
		{"not yet valid", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("nbf", now.Add(time.Hour).Unix())), auth.ReasonNotYetValid},
		{"not yet valid within leeway", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("nbf", now.Add(10*time.Second).Unix())), ""},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", nil)), auth.ReasonInvalidClaims},
		{"expired with bad signature", hs, sign(t, jwt.SigningMethodHS256, otherSecret, claims("exp", now.Add(-time.Hour).Unix())), auth.ReasonBadSignature},
		{"other secret", hs, sign(t, jwt.SigningMethodHS256, otherSecret, claims()), auth.ReasonBadSignature},
		{"tampered claims", hs, tampered, auth.ReasonBadSignature},
		{"signature of another token", rs, strings.Join(strings.Split(sign(t, jwt.SigningMethodRS256, k.rsa, claims()), ".")[:2], ".") + "." +
			strings.Split(sign(t, jwt.SigningMethodRS256, k.rsa, claims("sub", "bob")), ".")[2], auth.ReasonBadSignature},
		{"RS256 against a secret", hs, sign(t, jwt.SigningMethodRS256, k.rsa, claims()), auth.ReasonWrongAlgorithm},
		{"ES256 against RSA", rs, sign(t, jwt.SigningMethodES256, k.ec256, claims()), auth.ReasonWrongAlgorithm},
		{"alg none (secret)", hs, noneToken, auth.ReasonWrongAlgorithm},
		{"alg none (RSA)", rs, noneToken, auth.ReasonWrongAlgorithm},
		{"alg none, no signature", hs, strings.TrimSuffix(noneToken, "."), auth.ReasonMalformed},
		{"alg None", hs, header(`{"alg":"None","typ":"JWT"}`), auth.ReasonWrongAlgorithm},
		{"no alg", hs, header(`{"typ":"JWT"}`), auth.ReasonWrongAlgorithm},
		{"alg not a string", hs, header(`{"alg":256}`), auth.ReasonWrongAlgorithm},
		{"empty", hs, "", auth.ReasonMissing},
		{"garbage", hs, "hello", auth.ReasonMalformed},
		{"three garbage parts", hs, "a.b.c", auth.ReasonMalformed},
		{"line break in signature", hs, valid[:len(valid)-4] + "\n" + valid[len(valid)-4:], auth.ReasonMalformed},
		{"padding", hs, valid + "=", auth.ReasonMalformed},
		{"too long", hs, strings.Repeat("a", auth.MaxTokenBytes+1), auth.ReasonMalformed},
		{"critical header", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims(), "crit", []string{"b64"}, "b64", false), auth.ReasonMalformed},
		{"exp not a number", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", "tomorrow")), auth.ReasonInvalidClaims},
		// NumericDates are JSON numbers: jwt alone reads a string of digits.
		{"exp a string of digits", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", inAnHour)), auth.ReasonInvalidClaims},
		{"exp a string of digits, bad signature", hs, sign(t, jwt.SigningMethodHS256, otherSecret, claims("exp", inAnHour)), auth.ReasonBadSignature},
		{"nbf a string of digits", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("nbf", anHourAgo)), auth.ReasonInvalidClaims},
		{"iat a string of digits", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("iat", anHourAgo)), auth.ReasonInvalidClaims},
		{"exp null", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", json.RawMessage("null"))), auth.ReasonInvalidClaims},
		{"exp a fraction", hs, sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", float64(now.Add(time.Hour).Unix())+0.5)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.v.Verify(context.Background(), tc.token)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if id.Subject != "alice" {
					t.Errorf("subject %q", id.Subject)
				}
				return
			}
			if id != nil {
				t.Errorf("identity %+v with the error", id)
			}
			checkRejected(t, err, tc.reason, tc.token, testSecret, otherSecret)
		})
	}
}

// Leeway is configurable: negative means none, and a custom clock is used.
func TestLeewayAndClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", now.Add(-10*time.Second).Unix(), "nbf", now.Add(-time.Hour).Unix()))
	early := sign(t, jwt.SigningMethodHS256, testSecret, claims("exp", now.Add(time.Hour).Unix(), "nbf", now.Add(10*time.Second).Unix()))
	for _, tc := range []struct {
		leeway time.Duration
		want   auth.Reason
		token  string
	}{
		{0, "", tok}, // default 30s
		{-1, auth.ReasonExpired, tok},
		{5 * time.Second, auth.ReasonExpired, tok},
		{time.Minute, "", tok},
		{0, "", early},
		{-1, auth.ReasonNotYetValid, early},
	} {
		v := newVerifier(t, auth.Config{Secret: testSecret, Leeway: tc.leeway, Now: clock})
		_, err := v.Verify(context.Background(), tc.token)
		if auth.ReasonOf(err) != tc.want {
			t.Errorf("leeway %v: reason %q (%v); want %q", tc.leeway, auth.ReasonOf(err), err, tc.want)
		}
	}
}

// An HMAC token signed with the public key (PEM or DER, what an attacker
// can get) as its secret is refused for every public-key type.
func TestAlgorithmConfusion(t *testing.T) {
	k := keys()
	for name, priv := range map[string]crypto.Signer{"RSA": k.rsa, "ECDSA": k.ec256, "Ed25519": k.ed} {
		pemKey := pemOf(t, priv)
		block, _ := pem.Decode(pemKey)
		v := newVerifier(t, auth.Config{PublicKeyPEM: pemKey})
		for _, secret := range [][]byte{pemKey, block.Bytes, []byte(strings.TrimSpace(string(pemKey)))} {
			for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
				tok := sign(t, m, secret, claims())
				_, err := v.Verify(context.Background(), tok)
				checkRejected(t, err, auth.ReasonWrongAlgorithm, tok)
			}
		}
		_ = name
	}
}

// Algorithms restricts what a key accepts.
func TestAlgorithmsRestriction(t *testing.T) {
	k := keys()
	hs := newVerifier(t, auth.Config{Secret: testSecret, Algorithms: []string{"HS512"}})
	if _, err := hs.Verify(context.Background(), sign(t, jwt.SigningMethodHS512, testSecret, claims())); err != nil {
		t.Error(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, testSecret, claims())
	_, err := hs.Verify(context.Background(), tok)
	checkRejected(t, err, auth.ReasonWrongAlgorithm, tok)

	rs := newVerifier(t, auth.Config{PublicKeyPEM: pemOf(t, k.rsa), Algorithms: []string{"PS256"}})
	tok = sign(t, jwt.SigningMethodRS256, k.rsa, claims())
	_, err = rs.Verify(context.Background(), tok)
	checkRejected(t, err, auth.ReasonWrongAlgorithm, tok)
}

func TestAudienceAndIssuer(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret, Audience: "herald", Issuer: "https://idp.example"})
	good := claims("aud", "herald", "iss", "https://idp.example")
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		want   auth.Reason
	}{
		{"both right", good, ""},
		{"audience in a list", claims("aud", []string{"other", "herald"}, "iss", "https://idp.example"), ""},
		{"wrong audience", claims("aud", "other", "iss", "https://idp.example"), auth.ReasonWrongAudience},
		{"no audience", claims("iss", "https://idp.example"), auth.ReasonWrongAudience},
		{"wrong issuer", claims("aud", "herald", "iss", "https://evil.example"), auth.ReasonWrongIssuer},
		{"no issuer", claims("aud", "herald"), auth.ReasonWrongIssuer},
	} {
		tok := sign(t, jwt.SigningMethodHS256, testSecret, tc.claims)
		_, err := v.Verify(context.Background(), tok)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		checkRejected(t, err, tc.want, tok)
	}
	// Without expectations, aud and iss are not checked.
	free := newVerifier(t, auth.Config{Secret: testSecret})
	if _, err := free.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret, claims("aud", "other", "iss", "x"))); err != nil {
		t.Error(err)
	}
}

// The herald claim: selectors parsed, malformed ones make the token invalid
// with a reason naming the member, no claim means no rights.
func TestRightsClaim(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret})
	for _, tc := range []struct {
		name   string
		herald any
		want   string // "" = valid; else a part of the description
	}{
		{"all", map[string]any{"publish": []string{"*"}, "subscribe": []string{"*"}}, ""},
		{"absent", nil, ""},
		{"null lists", map[string]any{"publish": nil}, ""},
		{"unknown member ignored", map[string]any{"admin": true, "subscribe": []string{"a"}}, ""},
		{"empty selector", map[string]any{"publish": []string{"news", ""}}, "herald.publish[1]"},
		{"control character", map[string]any{"subscribe": []string{"a\x00b"}}, "herald.subscribe[0]"},
		{"too long", map[string]any{"subscribe": []string{strings.Repeat("x", herald.MaxTopicLength+1)}}, "herald.subscribe[0]"},
		{"not a list", map[string]any{"publish": "news"}, "herald.publish must be an array"},
		{"null selector", map[string]any{"publish": []any{nil}}, "herald.publish[0] must be a string"},
		{"number selector", map[string]any{"subscribe": []any{1}}, "herald.subscribe must be an array"},
		{"claim not an object", "publish", `claim "herald" must be an object`},
		{"claim a list", []string{"news"}, `claim "herald" must be an object`},
	} {
		c := claims("herald", tc.herald)
		if tc.herald == nil {
			delete(c, "herald")
		}
		tok := sign(t, jwt.SigningMethodHS256, testSecret, c)
		id, err := v.Verify(context.Background(), tok)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		checkRejected(t, err, auth.ReasonInvalidClaims, tok)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q does not say %q", tc.name, err, tc.want)
		}
		if id != nil {
			t.Errorf("%s: identity with the error", tc.name)
		}
	}

	none, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret, claims("herald", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if none.CanPublish([]string{"news"}) || none.CanSubscribe(herald.Topic("news")) || none.CanSee([]string{"news"}) {
		t.Error("a token without a herald claim has rights")
	}
	all, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, testSecret,
		claims("herald", map[string]any{"publish": []string{"*"}, "subscribe": []string{"*"}})))
	if err != nil {
		t.Fatal(err)
	}
	if !all.CanPublish([]string{"a", "b"}) || !all.CanSubscribe(herald.All{}) || !all.CanSee([]string{"z"}) {
		t.Error(`"*" rights do not grant everything`)
	}
}

// Signatures by the right family but the wrong key fail for every key type.
func TestWrongKeyPerFamily(t *testing.T) {
	k := keys()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(k.ec256.Curve, rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		method jwt.SigningMethod
		signer any
		cfg    auth.Config
	}{
		{jwt.SigningMethodPS256, other, auth.Config{PublicKeyPEM: pemOf(t, k.rsa)}},
		{jwt.SigningMethodES256, otherEC, auth.Config{PublicKeyPEM: pemOf(t, k.ec256)}},
		{jwt.SigningMethodEdDSA, otherEd, auth.Config{PublicKeyPEM: pemOf(t, k.ed)}},
	} {
		tok := sign(t, tc.method, tc.signer, claims())
		_, err := newVerifier(t, tc.cfg).Verify(context.Background(), tok)
		checkRejected(t, err, auth.ReasonBadSignature, tok)
	}
}
