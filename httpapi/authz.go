package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// Authenticator finds and verifies the credentials of a request.
// [*auth.Verifier] is one.
type Authenticator interface {
	Authenticate(r *http.Request) (*herald.Identity, error)
}

// authenticate verifies r with a, answering 401 itself when that fails.
// A missing token is allowed (nil identity) when anonymous is true; a
// token that is present but invalid never is.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, a Authenticator, anonymous bool) (*herald.Identity, bool) {
	id, err := a.Authenticate(r)
	if err == nil {
		return id, true
	}
	if anonymous && auth.ReasonOf(err) == auth.ReasonMissing {
		return nil, true
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		ae = &auth.Error{Reason: auth.ReasonMalformed, Description: "the credentials could not be checked"}
	}
	w.Header().Set("WWW-Authenticate", ae.Challenge())
	h.failWithReason(w, r, http.StatusUnauthorized, "unauthorized: "+ae.Description, string(ae.Reason))
	return nil, false
}

// forbid answers 403 for a valid token that lacks a right.
func (h *Handler) forbid(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", auth.InsufficientScope(msg))
	h.failWithReason(w, r, http.StatusForbidden, msg, "insufficient_scope")
}

// authorizeOperator checks that r may read GET /connections or
// GET /cluster, which name users and their addresses: operators only,
// that is a publisher token with the right to publish to every topic
// ("*"), or anyone when publishing is open. It answers the refusal
// itself.
func (h *Handler) authorizeOperator(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case h.PublishAuth != nil:
		id, ok := h.authenticate(w, r, h.PublishAuth, false)
		if !ok {
			return false
		}
		if !publishesEverything(id) {
			h.forbid(w, r, r.URL.Path+` needs a publisher token with the publish right "*"`)
			return false
		}
		return true
	case h.OpenPublish:
		return true
	}
	h.failWithReason(w, r, http.StatusForbidden, r.URL.Path+" is for publishers, and "+errNoPublishChoice, "publishing_disabled")
	return false
}

// publishesEverything reports whether id has the publish right "*".
func publishesEverything(id *herald.Identity) bool {
	if id == nil {
		return false
	}
	for _, right := range id.Publish {
		if _, all := right.(herald.All); all {
			return true
		}
	}
	return false
}

// authorizePublish checks that id may publish every event.
func authorizePublish(id *herald.Identity, events []herald.Event) (string, bool) {
	for i := range events {
		if !id.CanPublish(events[i].Topics) {
			return "the token may not publish to " + strings.Join(events[i].Topics, ", "), false
		}
	}
	return "", true
}

// authorizeSubscribe checks that id (nil: anonymous) may subscribe with
// every selector. Where anonymous subscribing is allowed, anyone may ask
// for anything, since what is public is open to all: a token's rights
// then only decide which private events it sees. Otherwise the rights
// bound the selectors.
func authorizeSubscribe(id *herald.Identity, selectors []herald.Selector, anonymous bool) (string, bool) {
	if id == nil || anonymous {
		return "", true
	}
	for _, sel := range selectors {
		if !id.CanSubscribe(sel) {
			return "the token may not subscribe to " + sel.String(), false
		}
	}
	return "", true
}
