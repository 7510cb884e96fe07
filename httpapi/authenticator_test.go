package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// queryAuth is an Authenticator that is not package auth's: it reads the
// authorization query parameter (as Mercure clients send it), and each
// value stands for one kind of answer.
type queryAuth struct{}

type queryAuthError struct{ reason, msg string }

func (e queryAuthError) Error() string      { return e.msg }
func (e queryAuthError) AuthReason() string { return e.reason }
func (e queryAuthError) Challenge() string  { return `Bearer realm="test", error="` + e.reason + `"` }

func (queryAuth) Authenticate(r *http.Request) (*herald.Identity, error) {
	switch r.URL.Query().Get("authorization") {
	case "":
		return nil, queryAuthError{httpapi.ReasonNoCredentials, "no authorization parameter"}
	case "good":
		return &herald.Identity{Subject: "bob", Publish: []herald.Selector{herald.Topic("news")}, Subscribe: []herald.Selector{herald.Topic("news")}}, nil
	case "revoked":
		return nil, queryAuthError{"revoked", "the token was revoked"}
	case "wrapped":
		return nil, fmt.Errorf("checking: %w", queryAuthError{"revoked", "the token was revoked"})
	case "opaque":
		return nil, errors.New("dial tcp 10.9.8.7:443: connection refused")
	}
	return nil, nil
}

// The handler answers any Authenticator's refusals from the AuthError
// methods alone, hides the text of other errors, and keeps its own
// authorization (403) and anonymous rules.
func TestAuthenticatorSeam(t *testing.T) {
	for _, anonymous := range []bool{false, true} {
		th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
			h.PublishAuth, h.SubscribeAuth, h.Anonymous = queryAuth{}, queryAuth{}, anonymous
		})
		type answer struct {
			status               int
			error, reason, chall string
		}
		do := func(method, query, body string) answer {
			t.Helper()
			path := "/events?topic=news&"
			if method == http.MethodPost {
				path = "/publish?"
			}
			req, _ := http.NewRequest(method, th.srv.URL+path+query, strings.NewReader(body))
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := th.client(false, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			a := answer{status: resp.StatusCode, chall: resp.Header.Get("WWW-Authenticate")}
			if resp.StatusCode != http.StatusOK {
				raw, _ := io.ReadAll(resp.Body)
				var b struct{ Error, Reason string }
				if err := json.Unmarshal(raw, &b); err != nil {
					t.Fatalf("%s %s: %d %q is not JSON", method, query, resp.StatusCode, raw)
				}
				a.error, a.reason = b.Error, b.Reason
			}
			return a
		}
		unchecked := answer{401, "unauthorized: the credentials could not be checked", "malformed",
			`Bearer realm="herald", error="invalid_token", error_description="the credentials could not be checked"`}
		revoked := answer{401, "unauthorized: the token was revoked", "revoked", `Bearer realm="test", error="revoked"`}
		missing := answer{401, "unauthorized: no authorization parameter", httpapi.ReasonNoCredentials, `Bearer realm="test", error="missing"`}
		streamMissing := missing
		if anonymous {
			streamMissing = answer{status: 200}
		}
		for _, tc := range []struct {
			method, query, body string
			want                answer
		}{
			{"GET", "authorization=good", "", answer{status: 200}},
			{"GET", "authorization=revoked", "", revoked},
			{"GET", "authorization=wrapped", "", revoked},
			{"GET", "authorization=opaque", "", unchecked},
			{"GET", "authorization=nil", "", unchecked}, // a nil identity is not anonymous
			{"GET", "", "", streamMissing},
			{"POST", "", `{"topic":"news","data":"x"}`, missing}, // publishers are never anonymous
			{"POST", "authorization=opaque", `{"topic":"news","data":"x"}`, unchecked},
			{"POST", "authorization=good", `{"topic":"news","data":"x"}`, answer{status: 200}},
			{"POST", "authorization=good", `{"topic":"sports","data":"x"}`, answer{403, "the token may not publish to sports", "insufficient_scope",
				`Bearer realm="herald", error="insufficient_scope", error_description="the token may not publish to sports"`}},
		} {
			if got := do(tc.method, tc.query, tc.body); got != tc.want {
				t.Errorf("anonymous %v, %s %q: %+v, want %+v", anonymous, tc.method, tc.query, got, tc.want)
			}
		}
	}
}
