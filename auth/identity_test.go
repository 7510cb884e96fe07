package auth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// MintHS256 round-trips through a Verifier, and refuses what would make
// an unusable token.
func TestMintHS256(t *testing.T) {
	id := herald.Identity{
		Subject:   "svc",
		Publish:   []herald.Selector{herald.Topic("news")},
		Subscribe: []herald.Selector{herald.All{}},
	}
	tok, err := auth.MintHS256(testSecret, id, time.Minute, "herald", "dev")
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, auth.Config{Secret: testSecret, Audience: "herald", Issuer: "dev"})
	got, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "svc" || fmt.Sprint(got.Publish) != "[news]" || fmt.Sprint(got.Subscribe) != "[*]" ||
		got.Expires.Before(time.Now().Add(50*time.Second)) || got.Expires.After(time.Now().Add(time.Minute)) {
		t.Errorf("identity %+v", got)
	}
	// Past its ttl (and the leeway) it is expired.
	later := newVerifier(t, auth.Config{Secret: testSecret, Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	_, err = later.Verify(context.Background(), tok)
	checkRejected(t, err, auth.ReasonExpired, tok, testSecret)

	noRights, err := auth.MintHS256(testSecret, herald.Identity{}, time.Minute, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(context.Background(), noRights); auth.ReasonOf(err) != auth.ReasonWrongAudience || got != nil {
		t.Errorf("no audience: %v", err)
	}

	for name, bad := range map[string]func() (string, error){
		"short secret": func() (string, error) { return auth.MintHS256([]byte("short"), id, time.Minute, "", "") },
		"no ttl":       func() (string, error) { return auth.MintHS256(testSecret, id, 0, "", "") },
		"nil selector": func() (string, error) {
			return auth.MintHS256(testSecret, herald.Identity{Publish: []herald.Selector{nil}}, time.Minute, "", "")
		},
		"empty topic": func() (string, error) {
			return auth.MintHS256(testSecret, herald.Identity{Subscribe: []herald.Selector{herald.Topic("")}}, time.Minute, "", "")
		},
		"control in sub": func() (string, error) {
			return auth.MintHS256(testSecret, herald.Identity{Publish: []herald.Selector{herald.Topic("a\nb")}}, time.Minute, "", "")
		},
	} {
		if tok, err := bad(); err == nil {
			t.Errorf("%s: minted %s", name, tok)
		} else if strings.Contains(err.Error(), string(testSecret)) {
			t.Errorf("%s: error %q has the secret", name, err)
		}
	}
}

func TestChallenges(t *testing.T) {
	e := &auth.Error{Reason: auth.ReasonExpired, Description: "say \"hi\"\\ \x01 é"}
	if got, want := e.Challenge(), `Bearer realm="herald", error="invalid_token", error_description="say 'hi'' ? ?"`; got != want {
		t.Errorf("challenge %s; want %s", got, want)
	}
	if got, want := auth.InsufficientScope(`may not publish to "x"`), `Bearer realm="herald", error="insufficient_scope", error_description="may not publish to 'x'"`; got != want {
		t.Errorf("insufficient scope %s; want %s", got, want)
	}
	if auth.ReasonOf(fmt.Errorf("wrapped: %w", e)) != auth.ReasonExpired || auth.ReasonOf(fmt.Errorf("other")) != "" {
		t.Error("ReasonOf")
	}
}
