package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// A hub with one key per role holds two Verifiers. Publishers here send
// their token in the Authorization header only (a cookie or URL can be
// sent by other sites); subscribers' tokens come from an identity
// provider's JWKS and may also come in a cookie or the access_token query
// parameter, for EventSource.
func ExampleNewVerifier() {
	ctx := context.Background()
	publishers, err := auth.NewVerifier(ctx, auth.Config{
		Secret:  []byte("publisher secret of at least 32 bytes"),
		Sources: auth.FromHeader,
	})
	if err != nil {
		panic(err)
	}
	subscribers, err := auth.NewVerifier(ctx, auth.Config{
		JWKSURL:  "https://idp.example/.well-known/jwks.json",
		Audience: "herald",
		Issuer:   "https://idp.example/",
	})
	if err != nil {
		panic(err)
	}
	defer subscribers.Close()
	_ = publishers
}

// Authenticate finds the token of a request (here in the access_token
// query parameter, as an EventSource sends it) and returns its identity.
func ExampleVerifier_Authenticate() {
	secret := []byte("an example secret of 32+ bytes..")
	token, err := auth.MintHS256(secret, herald.Identity{
		Subject:   "alice",
		Subscribe: []herald.Selector{herald.Topic("news")},
	}, time.Hour, "", "")
	if err != nil {
		panic(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}

	r := httptest.NewRequest(http.MethodGet, "/events?topic=news&access_token="+token, nil)
	id, err := v.Authenticate(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.Subject, id.CanSubscribe(herald.Topic("news")), id.CanSubscribe(herald.All{}))
	// Output: alice true false
}

// How an HTTP handler answers: 401 with the challenge for a missing or
// invalid token, 403 for a valid one lacking the right.
func ExampleError() {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: []byte("an example secret of 32+ bytes..")})
	if err != nil {
		panic(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Authenticate(r)
		var e *auth.Error
		if errors.As(err, &e) {
			w.Header().Set("WWW-Authenticate", e.Challenge())
			http.Error(w, e.Error(), e.StatusCode())
			return
		}
		if !id.CanPublish(r.Form["topic"]) {
			w.Header().Set("WWW-Authenticate", auth.InsufficientScope("may not publish to these topics"))
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
	})

	for _, authorization := range []string{"", "Bearer not-a-jwt"} {
		r := httptest.NewRequest(http.MethodPost, "/publish", nil)
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	}
	// Output:
	// 401 Bearer realm="herald"
	// 401 Bearer realm="herald", error="invalid_token", error_description="the token is not a well-formed JWT"
}

// MintHS256 makes development and test tokens.
func ExampleMintHS256() {
	secret := []byte("an example secret of 32+ bytes..")
	token, err := auth.MintHS256(secret, herald.Identity{
		Subject: "dev",
		Publish: []herald.Selector{herald.All{}},
	}, 10*time.Minute, "herald", "")
	if err != nil {
		panic(err)
	}
	v, _ := auth.NewVerifier(context.Background(), auth.Config{Secret: secret, Audience: "herald"})
	id, err := v.Verify(context.Background(), token)
	fmt.Println(id.Subject, id.CanPublish([]string{"any", "topic"}), err)
	// Output: dev true <nil>
}
