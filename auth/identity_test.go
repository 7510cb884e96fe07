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

// uriTemplate stands for a future selector kind.
type uriTemplate string

func (u uriTemplate) Match(topic string) bool {
	return strings.HasPrefix(topic, strings.TrimSuffix(string(u), "{id}"))
}
func (u uriTemplate) String() string { return string(u) }

func TestCanPublish(t *testing.T) {
	id := &auth.Identity{Publish: []herald.Selector{herald.Topic("news"), herald.Topic("alerts")}}
	all := &auth.Identity{Publish: []herald.Selector{herald.All{}}}
	for _, tc := range []struct {
		id     *auth.Identity
		topics []string
		want   bool
	}{
		{id, []string{"news"}, true},
		{id, []string{"news", "alerts"}, true},
		{id, []string{"news", "sport"}, false}, // every topic must be allowed
		{id, []string{"sport"}, false},
		{id, nil, false},
		{all, []string{"anything", "else"}, true},
		{&auth.Identity{Subscribe: []herald.Selector{herald.All{}}}, []string{"news"}, false},
		{nil, []string{"news"}, false},
	} {
		if got := tc.id.CanPublish(tc.topics); got != tc.want {
			t.Errorf("%v CanPublish(%q) = %v", tc.id, tc.topics, got)
		}
	}
}

func TestCanSubscribe(t *testing.T) {
	topics := &auth.Identity{Subscribe: []herald.Selector{herald.Topic("news"), uriTemplate("books/{id}")}}
	all := &auth.Identity{Subscribe: []herald.Selector{herald.All{}}}
	for _, tc := range []struct {
		id   *auth.Identity
		sel  herald.Selector
		want bool
	}{
		{topics, herald.Topic("news"), true},
		{topics, herald.Topic("sport"), false},
		{topics, herald.Topic("books/1"), true}, // the template right matches the topic
		{topics, herald.All{}, false},           // "*" needs a "*" right
		{topics, uriTemplate("books/{id}"), false},
		{all, herald.All{}, true},
		{all, herald.Topic("x"), true},
		{all, uriTemplate("books/{id}"), true},
		{all, nil, false},
		{&auth.Identity{Publish: []herald.Selector{herald.All{}}}, herald.Topic("x"), false},
		{nil, herald.All{}, false},
	} {
		if got := tc.id.CanSubscribe(tc.sel); got != tc.want {
			t.Errorf("%v CanSubscribe(%v) = %v", tc.id, tc.sel, got)
		}
	}
}

func TestCanSee(t *testing.T) {
	id := &auth.Identity{Subscribe: []herald.Selector{herald.Topic("team/1")}}
	for _, tc := range []struct {
		topics []string
		want   bool
	}{
		{[]string{"team/1"}, true},
		{[]string{"public", "team/1"}, true}, // one matching topic is enough
		{[]string{"team/2"}, false},
		{nil, false},
	} {
		if got := id.CanSee(tc.topics); got != tc.want {
			t.Errorf("CanSee(%q) = %v", tc.topics, got)
		}
	}
	if (*auth.Identity)(nil).CanSee([]string{"x"}) {
		t.Error("nil identity sees")
	}
}

// MintHS256 round-trips through a Verifier, and refuses what would make
// an unusable token.
func TestMintHS256(t *testing.T) {
	id := auth.Identity{
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

	noRights, err := auth.MintHS256(testSecret, auth.Identity{}, time.Minute, "", "")
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
			return auth.MintHS256(testSecret, auth.Identity{Publish: []herald.Selector{nil}}, time.Minute, "", "")
		},
		"empty topic": func() (string, error) {
			return auth.MintHS256(testSecret, auth.Identity{Subscribe: []herald.Selector{herald.Topic("")}}, time.Minute, "", "")
		},
		"control in sub": func() (string, error) {
			return auth.MintHS256(testSecret, auth.Identity{Publish: []herald.Selector{herald.Topic("a\nb")}}, time.Minute, "", "")
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
