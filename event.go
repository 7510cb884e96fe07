package herald

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-sse/herald/sse"
)

// Limits on what a published event may carry. They keep one event from
// costing every subscriber's queue more than the event is worth and keep
// topic names usable as map keys and URL parameters.
const (
	// MaxTopicLength is the longest topic name, in bytes.
	MaxTopicLength = 1024
	// MaxIDLength is the longest publisher-supplied event ID, in bytes.
	MaxIDLength = 1024
	// MaxTypeLength is the longest event type, in bytes.
	MaxTypeLength = 256
	// MaxEventTopics is the most topics one event may be published to.
	MaxEventTopics = 100
)

// Event is a message published to one or more topics.
type Event struct {
	// Topics the event is published to; at least one. A subscriber whose
	// selectors match several of them still receives the event once.
	Topics []string
	// ID is the event ID sent to subscribers. When empty, the hub assigns
	// one. Clients send it back as Last-Event-ID when they reconnect.
	ID string
	// Type is the SSE event type; empty means "message".
	Type string
	// Data is the payload, UTF-8 text. Line breaks of any kind (CRLF, CR,
	// LF) arrive at an EventSource as LF.
	Data string
	// Retry, when at least one millisecond, tells clients how long to wait
	// before reconnecting.
	Retry time.Duration
	// Private events reach only subscribers whose rights
	// (SubscribeOptions.Rights) match one of their topics, live and on
	// replay.
	Private bool
	// ToUsers and ToConnections, when either is set, restrict the event
	// to subscribers of its topics that are one of the users
	// (SubscribeOptions.Subject) or one of the connections
	// (SubscribeOptions.ConnectionID). Nobody else sees it, through the
	// history neither.
	ToUsers, ToConnections []string
}

// MaxRecipients bounds ToUsers and ToConnections together.
const MaxRecipients = 1000

// Targeted reports whether the event is restricted to some users or
// connections.
func (e *Event) Targeted() bool { return len(e.ToUsers)+len(e.ToConnections) > 0 }

// ErrInvalidEvent is wrapped by every error that rejects an event because
// of what it contains, so callers can tell bad input from hub failures.
var ErrInvalidEvent = errors.New("invalid event")

// invalidEvent returns an error that wraps ErrInvalidEvent with a reason a
// publisher can act on.
func invalidEvent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEvent, fmt.Sprintf(format, args...))
}

// Validate reports why e cannot be published, or nil.
func (e *Event) Validate() error {
	if len(e.Topics) == 0 {
		return invalidEvent("missing topic")
	}
	if len(e.Topics) > MaxEventTopics {
		return invalidEvent("%d topics, at most %d", len(e.Topics), MaxEventTopics)
	}
	for _, t := range e.Topics {
		if err := ValidateTopic(t); err != nil {
			return err
		}
	}
	if len(e.ID) > MaxIDLength {
		return invalidEvent("id longer than %d bytes", MaxIDLength)
	}
	if err := sse.ValidateID(e.ID); err != nil {
		return invalidEvent("id must not contain CR, LF or NUL")
	}
	if !utf8.ValidString(e.ID) {
		return invalidEvent("id is not valid UTF-8")
	}
	if reason := idProblem(e.ID); reason != "" {
		return invalidEvent("%s", reason)
	}
	if len(e.Type) > MaxTypeLength {
		return invalidEvent("event type longer than %d bytes", MaxTypeLength)
	}
	if err := sse.ValidateType(e.Type); err != nil {
		return invalidEvent("event type must not contain CR or LF")
	}
	if !utf8.ValidString(e.Type) {
		return invalidEvent("event type is not valid UTF-8")
	}
	if !utf8.ValidString(e.Data) {
		return invalidEvent("data is not valid UTF-8")
	}
	if e.Retry < 0 {
		return invalidEvent("retry must not be negative")
	}
	if n := len(e.ToUsers) + len(e.ToConnections); n > MaxRecipients {
		return invalidEvent("%d recipients, at most %d", n, MaxRecipients)
	}
	for _, list := range [][]string{e.ToUsers, e.ToConnections} {
		for _, r := range list {
			if r == "" || len(r) > MaxIDLength || !utf8.ValidString(r) {
				return invalidEvent("a recipient must be 1 to %d bytes of UTF-8", MaxIDLength)
			}
		}
	}
	return nil
}

// idProblem returns why a publisher-supplied id could not be resumed
// after, or "". Clients send it back in a Last-Event-ID header, where
// control characters are refused by HTTP servers and surrounding spaces
// are trimmed; "earliest" means all history; and an id shaped like the
// hub's own would be read as a position.
func idProblem(id string) string {
	if id == "" {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return "id contains a control character"
		}
	}
	switch {
	case id[0] == ' ' || id[len(id)-1] == ' ':
		return "id starts or ends with a space"
	case id == Earliest:
		return fmt.Sprintf("id %q is reserved: it asks for all history", Earliest)
	case hasGeneratedShape(id):
		return "id has the form of hub-generated ids (12 letters, digits or _, '-', base-36 digits)"
	}
	return ""
}

// ValidateTopic reports why name cannot be a topic an event is published to.
// "*" is refused because, as a selector, it means every topic; "*", "{"
// and "}" anywhere in a name are kept for pattern selectors.
func ValidateTopic(name string) error {
	if reason := topicProblem(name); reason != "" {
		return invalidEvent("%s", reason)
	}
	return nil
}

// topicProblem returns why name is not a usable topic name, or "".
func topicProblem(name string) string {
	switch {
	case name == "":
		return "empty topic"
	case name == AllTopics:
		return fmt.Sprintf("topic %q is reserved: it selects every topic", AllTopics)
	case len(name) > MaxTopicLength:
		return fmt.Sprintf("topic longer than %d bytes", MaxTopicLength)
	case !utf8.ValidString(name):
		return "topic is not valid UTF-8"
	case strings.ContainsAny(name, reservedTopicChars):
		return `topic contains "*", "{" or "}": they are reserved for pattern selectors`
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] == 0x7f {
			return "topic contains a control character"
		}
	}
	return ""
}
