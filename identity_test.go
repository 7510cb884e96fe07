package herald_test

import (
	"strings"
	"testing"

	"github.com/herald-sse/herald"
)

// uriTemplate stands for a future selector kind.
type uriTemplate string

func (u uriTemplate) Match(topic string) bool {
	return strings.HasPrefix(topic, strings.TrimSuffix(string(u), "{id}"))
}
func (u uriTemplate) String() string { return string(u) }

func TestCanPublish(t *testing.T) {
	id := &herald.Identity{Publish: []herald.Selector{herald.Topic("news"), herald.Topic("alerts")}}
	all := &herald.Identity{Publish: []herald.Selector{herald.All{}}}
	for _, tc := range []struct {
		id     *herald.Identity
		topics []string
		want   bool
	}{
		{id, []string{"news"}, true},
		{id, []string{"news", "alerts"}, true},
		{id, []string{"news", "sport"}, false}, // every topic must be allowed
		{id, []string{"sport"}, false},
		{id, nil, false},
		{all, []string{"anything", "else"}, true},
		{&herald.Identity{Subscribe: []herald.Selector{herald.All{}}}, []string{"news"}, false},
		{nil, []string{"news"}, false},
	} {
		if got := tc.id.CanPublish(tc.topics); got != tc.want {
			t.Errorf("%v CanPublish(%q) = %v", tc.id, tc.topics, got)
		}
	}
}

func TestCanSubscribe(t *testing.T) {
	topics := &herald.Identity{Subscribe: []herald.Selector{herald.Topic("news"), uriTemplate("books/{id}")}}
	all := &herald.Identity{Subscribe: []herald.Selector{herald.All{}}}
	for _, tc := range []struct {
		id   *herald.Identity
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
		{&herald.Identity{Publish: []herald.Selector{herald.All{}}}, herald.Topic("x"), false},
		{nil, herald.All{}, false},
	} {
		if got := tc.id.CanSubscribe(tc.sel); got != tc.want {
			t.Errorf("%v CanSubscribe(%v) = %v", tc.id, tc.sel, got)
		}
	}
}

func TestCanSee(t *testing.T) {
	id := &herald.Identity{Subscribe: []herald.Selector{herald.Topic("team/1")}}
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
	if (*herald.Identity)(nil).CanSee([]string{"x"}) {
		t.Error("nil identity sees")
	}
}
