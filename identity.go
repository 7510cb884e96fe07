package herald

import "time"

// Identity is who an authenticated client is and what it may do on a
// hub: the subject that events sent to users (Event.ToUsers) reach, the
// topics it may publish to and subscribe to (and so see private events
// of), and when its credentials expire.
//
// It lives here rather than with a transport or a token format because
// it is the hub's own vocabulary: Subject, Subscribe and Expires are what
// a subscription takes ([SubscribeOptions] Subject, Rights and Expires),
// and nothing in it depends on how credentials travel (HTTP headers,
// cookies) or are encoded (JWT claims, Mercure claims). Token packages
// produce it, transports consume it, and neither needs the other.
type Identity struct {
	// Subject names the user (a token's sub); empty for a client whose
	// credentials name none.
	Subject string
	// Publish lists the selectors the identity may publish to.
	Publish []Selector
	// Subscribe lists the selectors the identity may subscribe to (and so
	// see private events of).
	Subscribe []Selector
	// Expires is when the credentials stop being valid: a stream opened
	// with them should not outlive it. Zero means never.
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
		if !Matches(id.Publish, []string{t}) {
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
func (id *Identity) CanSubscribe(sel Selector) bool {
	if id == nil || sel == nil {
		return false
	}
	for _, right := range id.Subscribe {
		if _, all := right.(All); all {
			return true
		}
		if t, ok := sel.(Topic); ok && right.Match(string(t)) {
			return true
		}
	}
	return false
}

// CanSee reports whether the identity may receive a private event
// published to topics: one of them must be matched by a subscribe right.
// It is false for a nil Identity. It is the rule a [Subscriber] applies
// to private events ([Matches] on SubscribeOptions.Rights), so what it
// answers is what a subscription with these rights receives.
func (id *Identity) CanSee(topics []string) bool {
	return id != nil && Matches(id.Subscribe, topics)
}
