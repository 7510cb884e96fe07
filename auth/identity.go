package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-sse/herald"
)

// ClaimName is the JWT claim that carries Herald rights:
//
//	"herald": {"publish": ["news", "alerts"], "subscribe": ["*"]}
//
// Each list holds selectors as [herald.ParseSelector] reads them: a topic
// name, or "*" for every topic. An absent claim or list grants nothing;
// unknown members are ignored; a member given twice makes the token
// invalid.
const ClaimName = "herald"

// Identity is who a verified token speaks for and what it may do.
type Identity struct {
	// Subject is the token's sub claim (may be empty).
	Subject string
	// Publish lists the selectors the identity may publish to.
	Publish []herald.Selector
	// Subscribe lists the selectors the identity may subscribe to (and so
	// see private events of).
	Subscribe []herald.Selector
	// Expires is the token's exp: a stream opened with it should not
	// outlive it.
	Expires time.Time
}

// CanPublish reports whether the identity may publish an event to topics:
// each topic must be matched by a publish right. It is false for no topics
// and for a nil Identity.
func (id *Identity) CanPublish(topics []string) bool {
	if id == nil || len(topics) == 0 {
		return false
	}
	for _, t := range topics {
		if !matchAny(id.Publish, t) {
			return false
		}
	}
	return true
}

// CanSubscribe reports whether the identity may subscribe with sel: a
// subscribe right must cover everything sel selects. A "*" right covers
// every selector; a topic right covers that topic only, so asking for "*"
// needs a "*" right. Other selector kinds are covered by "*" only. It is
// false for a nil Identity or selector.
func (id *Identity) CanSubscribe(sel herald.Selector) bool {
	if id == nil || sel == nil {
		return false
	}
	for _, right := range id.Subscribe {
		if _, all := right.(herald.All); all {
			return true
		}
		if t, ok := sel.(herald.Topic); ok && right.Match(string(t)) {
			return true
		}
	}
	return false
}

// CanSee reports whether the identity may receive a private event
// published to topics: one of them must be matched by a subscribe right.
// It is false for a nil Identity.
func (id *Identity) CanSee(topics []string) bool {
	if id == nil {
		return false
	}
	for _, t := range topics {
		if matchAny(id.Subscribe, t) {
			return true
		}
	}
	return false
}

func matchAny(rights []herald.Selector, topic string) bool {
	for _, r := range rights {
		if r.Match(topic) {
			return true
		}
	}
	return false
}

// parseRights reads the herald claim (raw JSON, absent or null for none).
// Its errors name the faulty member, never its value.
func parseRights(raw json.RawMessage) (publish, subscribe []herald.Selector, err error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil, nil
	}
	members, err := objectMembers(raw)
	if errors.Is(err, errDuplicateClaim) {
		// Which one counts would depend on the reader.
		return nil, nil, fmt.Errorf("claim %q has a member twice", ClaimName)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("claim %q must be an object", ClaimName)
	}
	if publish, err = parseSelectors(members["publish"], "publish"); err != nil {
		return nil, nil, err
	}
	if subscribe, err = parseSelectors(members["subscribe"], "subscribe"); err != nil {
		return nil, nil, err
	}
	return publish, subscribe, nil
}

func parseSelectors(raw json.RawMessage, name string) ([]herald.Selector, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var list []*string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s.%s must be an array of selectors (strings)", ClaimName, name)
	}
	sels := make([]herald.Selector, 0, len(list))
	for i, s := range list {
		if s == nil {
			return nil, fmt.Errorf("%s.%s[%d] must be a string", ClaimName, name, i)
		}
		sel, err := herald.ParseSelector(*s)
		if err != nil {
			// ParseSelector's reasons never quote the selector but "*".
			return nil, fmt.Errorf("%s.%s[%d]: %v", ClaimName, name, i, err)
		}
		sels = append(sels, sel)
	}
	return sels, nil
}

// rightsClaim is the herald claim as minted.
type rightsClaim struct {
	Publish   []string `json:"publish,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
}

// selectorStrings writes sels as the claim holds them, checking that each
// reads back as itself.
func selectorStrings(sels []herald.Selector, name string) ([]string, error) {
	var out []string
	for i, s := range sels {
		if s == nil {
			return nil, fmt.Errorf("%s selector %d is nil", name, i)
		}
		if _, err := herald.ParseSelector(s.String()); err != nil {
			return nil, fmt.Errorf("%s selector %d: %v", name, i, err)
		}
		out = append(out, s.String())
	}
	return out, nil
}
