package redis

import (
	"math"
	"testing"
)

func TestPosition(t *testing.T) {
	for _, c := range []struct {
		id  string
		pos uint64
	}{
		{"0-0", 0},
		{"0-1", 1},
		{"1-0", 1 << 22},
		{"1795256343556-0", 1795256343556 << 22},
		{"1795256343556-4194303", 1795256343556<<22 | 4194303},
		{"4398046511103-4194303", math.MaxUint64},
	} {
		p, err := position(c.id)
		if err != nil || p != c.pos {
			t.Errorf("position(%q) = %d, %v; want %d", c.id, p, err, c.pos)
		}
		if id := streamID(c.pos); id != c.id {
			t.Errorf("streamID(%d) = %q, want %q", c.pos, id, c.id)
		}
	}
	for _, id := range []string{"", "1", "1-", "-1", "a-1", "1-a", "1-2-3", "4398046511104-0", "1-4194304", "18446744073709551616-0"} {
		if p, err := position(id); err == nil {
			t.Errorf("position(%q) = %d, want an error", id, p)
		}
	}
	// Order is kept: a later ID is a larger position.
	a, _ := position("1000-4194303")
	b, _ := position("1001-0")
	if a >= b {
		t.Errorf("positions %d, %d out of order", a, b)
	}
}
