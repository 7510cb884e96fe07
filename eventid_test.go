package herald

import (
	"math"
	"strings"
	"testing"
)

func TestGeneratedIDRoundTrip(t *testing.T) {
	epoch := NewEpoch()
	for _, pos := range []uint64{0, 1, 35, 36, 1 << 40, math.MaxUint64} {
		id := generatedID{epoch, pos}
		s := id.String()
		if !hasGeneratedShape(s) {
			t.Fatalf("%q does not have the generated shape", s)
		}
		got, ok := parseGeneratedID(s)
		if !ok || got != id {
			t.Fatalf("parseGeneratedID(%q) = %v, %v; want %v", s, got, ok, id)
		}
	}
}

func TestGeneratedIDShape(t *testing.T) {
	epoch := "abcdefGHIJ_9"
	overflow := epoch + "-" + strings.Repeat("z", 14) // past MaxUint64 in base 36
	for _, c := range []struct {
		id            string
		shape, parses bool
	}{
		{epoch + "-0", true, true},
		{epoch + "-1a", true, true},
		{overflow, true, false}, // no publisher may use it, and it names no position
		{epoch + "-1A", false, false},
		{epoch + "-", false, false},
		{epoch + "-+1", false, false},
		{epoch + "1", false, false},
		{"abcdefGHIJ_-1", false, false}, // epoch one short
		{"abcdefGHIJ-9-1", false, false},
		{"order-42", false, false},
		{"", false, false},
	} {
		if got := hasGeneratedShape(c.id); got != c.shape {
			t.Errorf("hasGeneratedShape(%q) = %v, want %v", c.id, got, c.shape)
		}
		if _, got := parseGeneratedID(c.id); got != c.parses {
			t.Errorf("parseGeneratedID(%q) ok = %v, want %v", c.id, got, c.parses)
		}
	}
}
