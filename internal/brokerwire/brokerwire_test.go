package brokerwire

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

func TestRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 123456789)
	for _, r := range []herald.Record{
		{Topics: []string{"a"}, Data: "", Time: now},
		{ID: "order-42", Topics: []string{"a", "https://example.com/b c"}, Type: "update", Data: "line1\nline2\r\n\x00é",
			Retry: 2500 * time.Millisecond, Time: now, Private: true, ToUsers: []string{"alice"}, ToConnections: []string{"c1", "c2"}},
	} {
		got, err := Decode(Encode(&r))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", r, err)
		}
		got.Time, r.Time = got.Time.UTC(), r.Time.UTC()
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"not json":        `{`,
		"unknown field":   `{"v":1,"topics":["a"],"data":"","time":0,"toGroups":["x"]}`,
		"other version":   `{"v":2,"topics":["a"],"data":"","time":0}`,
		"no topic":        `{"v":1,"topics":[],"data":"","time":0}`,
		"newline in id":   `{"v":1,"id":"a\nb","topics":["a"],"data":"","time":0}`,
		"negative retry":  `{"v":1,"topics":["a"],"data":"","time":0,"retryMs":-1}`,
		"trailing data":   `{"v":1,"topics":["a"],"data":"","time":0} {}`,
		"generated id":    `{"v":1,"id":"abcdefghijkl-1","topics":["a"],"data":"","time":0}`,
		"newline in type": `{"v":1,"type":"a\rb","topics":["a"],"data":"","time":0}`,
	} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode(%q) = %v, want ErrMalformed", name, in, err)
		}
	}
}

// FuzzDecode: whatever Decode accepts encodes back to something it reads
// the same, and can go onto an event stream.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"x","topics":["a","b"],"type":"t","data":"d\nd","retryMs":5,"time":1,"private":true,"toUsers":["u"],"toConnections":["c"]}`))
	f.Add([]byte(`{"v":1,"topics":["a"],"data":"","time":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		e := herald.Event{Topics: r.Topics, ID: r.ID, Type: r.Type, Data: r.Data, Retry: r.Retry, Private: r.Private, ToUsers: r.ToUsers, ToConnections: r.ToConnections}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid event: %v", err)
		}
		again, err := Decode(Encode(&r))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("re-decode differs:\n%+v\n%+v", again, r)
		}
	})
}
