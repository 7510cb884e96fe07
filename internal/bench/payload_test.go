package bench

import (
	"net/url"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	tag := runTag(0xdeadbeef)
	if string(tag[:]) != "deadbeef" {
		t.Fatalf("tag %q", tag)
	}
	for _, size := range []int{0, 10, DefaultSize, 1000} {
		p := appendPayload(nil, &tag, 123456789, 1700000000123456789, size)
		if len(p) < size {
			t.Errorf("size %d: payload of %d bytes", size, len(p))
		}
		if url.QueryEscape(string(p)) != string(p) {
			t.Errorf("payload %q needs escaping in a form", p)
		}
		seq, ts, ok := parsePayload(p, &tag)
		if !ok || seq != 123456789 || ts != 1700000000123456789 {
			t.Errorf("size %d: parsed %d %d %v from %q", size, seq, ts, ok, p)
		}
	}
	other := runTag(1)
	p := appendPayload(nil, &tag, 1, 2, 0)
	for _, bad := range []string{
		"", "hello", "hbdeadbeef", "hbdeadbeef.", "hbdeadbeef.1", "hbdeadbeef.1.", "hbdeadbeef..2.",
		"hbdeadbeef.0.2.", "hbdeadbeef.1.x.", "hbdeadbeef.99999999999999999999.2.",
		"hbdeadbeef.1.99999999999999999999.", "Hbdeadbeef.1.2.",
	} {
		if _, _, ok := parsePayload([]byte(bad), &tag); ok {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, _, ok := parsePayload(p, &other); ok {
		t.Error("accepted another run's payload")
	}
}
