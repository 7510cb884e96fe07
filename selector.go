package herald

import (
	"errors"
	"fmt"
	"strings"
)

// AllTopics is the selector that matches every topic.
const AllTopics = "*"

// reservedTopicChars may not appear in a topic name: they are kept for
// pattern selectors, which would otherwise be ambiguous with topics.
const reservedTopicChars = "*{}"

// A Selector chooses the topics a subscriber receives.
//
// The hub indexes [Topic] selectors by name, so an exact subscription costs
// nothing when other topics are published; any other Selector is asked
// about each published topic. Future selector kinds (URI templates) only
// need to implement this interface.
type Selector interface {
	// Match reports whether an event published to topic is selected.
	Match(topic string) bool
	// String returns the selector as a subscriber wrote it.
	String() string
}

// Topic selects exactly one topic by name.
type Topic string

// Match reports whether topic is t.
func (t Topic) Match(topic string) bool { return string(t) == topic }

func (t Topic) String() string { return string(t) }

// All selects every topic.
type All struct{}

// Match reports true for every topic.
func (All) Match(string) bool { return true }

func (All) String() string { return AllTopics }

// ErrInvalidSelector is wrapped by errors from [ParseSelector].
var ErrInvalidSelector = errors.New("invalid topic selector")

// ParseSelector turns a selector as written by a subscriber into a Selector:
// "*" selects every topic, anything else one topic by name. Selectors
// with "*", "{" or "}" elsewhere (a*, books/{id}) are refused rather than
// taken as a topic name: those characters are kept for pattern selectors.
func ParseSelector(s string) (Selector, error) {
	if s == AllTopics {
		return All{}, nil
	}
	if strings.ContainsAny(s, reservedTopicChars) {
		return nil, fmt.Errorf(`%w: pattern selectors (with "*", "{" or "}") are not supported: a selector is a topic name, or "*" alone for every topic`, ErrInvalidSelector)
	}
	if reason := topicProblem(s); reason != "" {
		return nil, fmt.Errorf("%w: %s", ErrInvalidSelector, reason)
	}
	return Topic(s), nil
}
