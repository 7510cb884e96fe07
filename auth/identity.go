package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

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
