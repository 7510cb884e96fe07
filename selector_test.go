package herald

import (
	"errors"
	"strings"
	"testing"
)

// Selectors that look like patterns are refused, not taken as topic
// names that would never match what the subscriber meant; topic names
// cannot contain those characters either, so the patterns stay free.
func TestPatternLikeSelectorsRefused(t *testing.T) {
	for _, s := range []string{"a*", "*a", "news/*", "**", "{id}", "books/{id}", "a}", "{"} {
		_, err := ParseSelector(s)
		if !errors.Is(err, ErrInvalidSelector) || !strings.Contains(err.Error(), `"*" alone`) {
			t.Errorf("ParseSelector(%q) = %v, want ErrInvalidSelector naming what is supported", s, err)
		}
		if err := ValidateTopic(s); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("ValidateTopic(%q) = %v, want ErrInvalidEvent", s, err)
		}
	}
	for _, s := range []string{"news", "books/1", "a-b_c.d:e", "https://example.com/books/1?x=y#z"} {
		if sel, err := ParseSelector(s); err != nil || sel != Topic(s) {
			t.Errorf("ParseSelector(%q) = %v, %v", s, sel, err)
		}
	}
}
