package auth_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald/auth"
)

// Where tokens are found: header, then cookie, then query; the first
// source holding one wins, valid or not.
func TestAuthenticateSources(t *testing.T) {
	good := sign(t, jwt.SigningMethodHS256, testSecret, claims())
	bob := sign(t, jwt.SigningMethodHS256, testSecret, claims("sub", "bob"))
	carol := sign(t, jwt.SigningMethodHS256, testSecret, claims("sub", "carol"))
	bad := sign(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret-00"), claims())
	v := newVerifier(t, auth.Config{Secret: testSecret})

	type req struct {
		headers []string // Authorization values
		cookie  string
		query   []string // access_token values
	}
	for _, tc := range []struct {
		name    string
		r       req
		subject string      // when valid
		reason  auth.Reason // else
		source  auth.Source
	}{
		{"header", req{headers: []string{"Bearer " + good}}, "alice", "", auth.FromHeader},
		{"lower-case scheme", req{headers: []string{"bearer " + good}}, "alice", "", auth.FromHeader},
		{"cookie", req{cookie: good}, "alice", "", auth.FromCookie},
		{"query", req{query: []string{good}}, "alice", "", auth.FromQuery},
		{"header before cookie and query", req{headers: []string{"Bearer " + good}, cookie: bob, query: []string{carol}}, "alice", "", auth.FromHeader},
		{"cookie before query", req{cookie: bob, query: []string{carol}}, "bob", "", auth.FromCookie},
		{"invalid header wins over valid cookie", req{headers: []string{"Bearer " + bad}, cookie: good}, "", auth.ReasonBadSignature, auth.FromHeader},
		{"invalid cookie wins over valid query", req{cookie: bad, query: []string{good}}, "", auth.ReasonBadSignature, auth.FromCookie},
		{"malformed header wins", req{headers: []string{"Bearer x"}, query: []string{good}}, "", auth.ReasonMalformed, auth.FromHeader},
		{"invalid query", req{query: []string{bad}}, "", auth.ReasonBadSignature, auth.FromQuery},
		{"nothing", req{}, "", auth.ReasonMissing, 0},
		{"Basic is not a token", req{headers: []string{"Basic dXNlcjpwYXNz"}, query: []string{good}}, "alice", "", auth.FromQuery},
		{"Basic alone", req{headers: []string{"Basic dXNlcjpwYXNz"}}, "", auth.ReasonMissing, 0},
		{"Bearer without token", req{headers: []string{"Bearer"}, cookie: good}, "", auth.ReasonMalformed, auth.FromHeader},
		{"Bearer with two tokens", req{headers: []string{"Bearer " + good + " " + good}}, "", auth.ReasonMalformed, auth.FromHeader},
		{"two Bearer headers", req{headers: []string{"Bearer " + good, "Bearer " + bob}}, "", auth.ReasonMalformed, auth.FromHeader},
		{"empty cookie is none", req{cookie: "", query: []string{good}}, "alice", "", auth.FromQuery},
		{"two access_token parameters", req{query: []string{good, bob}}, "", auth.ReasonMalformed, auth.FromQuery},
		{"empty access_token is none", req{query: []string{""}}, "", auth.ReasonMissing, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := "/events?topic=news"
			for _, q := range tc.r.query {
				u += "&access_token=" + url.QueryEscape(q)
			}
			r := httptest.NewRequest(http.MethodGet, u, nil)
			for _, h := range tc.r.headers {
				r.Header.Add("Authorization", h)
			}
			if tc.r.cookie != "" {
				r.AddCookie(&http.Cookie{Name: auth.DefaultCookieName, Value: tc.r.cookie})
			}
			id, err := v.Authenticate(r)
			if tc.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if id.Subject != tc.subject {
					t.Errorf("subject %q; want %q", id.Subject, tc.subject)
				}
				_, from, _ := auth.ExtractToken(r, "", 0)
				if from != tc.source {
					t.Errorf("source %v; want %v", from, tc.source)
				}
				return
			}
			checkRejected(t, err, tc.reason, bad, testSecret)
			if e := err.(*auth.Error); e.Source != tc.source {
				t.Errorf("error source %v; want %v", e.Source, tc.source)
			}
		})
	}
}

// Sources and CookieName restrict and rename where tokens are read.
func TestSourcesConfig(t *testing.T) {
	good := sign(t, jwt.SigningMethodHS256, testSecret, claims())
	headerOnly := newVerifier(t, auth.Config{Secret: testSecret, Sources: auth.FromHeader})
	r := httptest.NewRequest(http.MethodPost, "/publish?access_token="+good, nil)
	r.AddCookie(&http.Cookie{Name: auth.DefaultCookieName, Value: good})
	_, err := headerOnly.Authenticate(r)
	checkRejected(t, err, auth.ReasonMissing, good)
	if want := "no token in the Authorization: Bearer header"; err.Error() != want {
		t.Errorf("description %q; want %q", err, want)
	}

	custom := newVerifier(t, auth.Config{Secret: testSecret, CookieName: "session", Sources: auth.FromCookie | auth.FromQuery})
	r = httptest.NewRequest(http.MethodGet, "/events", nil)
	r.Header.Set("Authorization", "Bearer "+good)
	r.AddCookie(&http.Cookie{Name: auth.DefaultCookieName, Value: good})
	_, err = custom.Authenticate(r)
	checkRejected(t, err, auth.ReasonMissing, good)
	if want := "no token in the session cookie or the access_token query parameter"; err.Error() != want {
		t.Errorf("description %q; want %q", err, want)
	}
	r.AddCookie(&http.Cookie{Name: "session", Value: good})
	if _, err := custom.Authenticate(r); err != nil {
		t.Error(err)
	}

	_, _, err = auth.ExtractToken(httptest.NewRequest(http.MethodGet, "/", nil), "", 0)
	if want := "no token in the Authorization: Bearer header, the herald_token cookie, or the access_token query parameter"; err.Error() != want {
		t.Errorf("description %q; want %q", err, want)
	}
	if s := (auth.FromHeader | auth.FromQuery).String(); s != "header+query" {
		t.Errorf("String %q", s)
	}
}
