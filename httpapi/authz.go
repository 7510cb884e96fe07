package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/herald-sse/herald"
)

// An Authenticator finds and checks the credentials of a request for a
// [Handler] (PublishAuth, SubscribeAuth). Where they come from (a header,
// a cookie, a query parameter) and what they are (a JWT, a Mercure token)
// is the Authenticator's business: the handler only needs the identity,
// whose rights it checks against what the request asks for (403 when
// they fall short) and whose expiry ends the stream. Package auth
// implements it with JWTs; httpapi itself imports no token library.
type Authenticator interface {
	// Authenticate returns who r speaks for, or why it is refused. An
	// error is answered 401 as [AuthError] describes; one whose
	// AuthReason is [ReasonNoCredentials] says that r carries no
	// credentials at all, which [Handler.Anonymous] lets subscribe. Any
	// other error, and a nil identity without one, is answered 401 with
	// reason "malformed" and no more detail, since its text was not
	// written for clients.
	Authenticate(r *http.Request) (*herald.Identity, error)
}

// An AuthError is an [Authenticator]'s refusal, as the handler answers it:
// 401 Unauthorized, with the WWW-Authenticate header Challenge and the
// JSON body {"error": "unauthorized: " + Error(), "reason": AuthReason()}.
// Its text reaches the client, so it must not contain credentials.
type AuthError interface {
	error
	// AuthReason says in a word why, for programs: "expired",
	// "bad_signature", ..., or ReasonNoCredentials.
	AuthReason() string
	// Challenge is the WWW-Authenticate header value (RFC 7235: a 401
	// must carry one), naming the scheme the credentials are expected in.
	Challenge() string
}

// ReasonNoCredentials is the AuthReason of a request that carries no
// credentials: the one refusal that Handler.Anonymous overrides, since a
// request without credentials claims nothing, while one with invalid
// credentials claims something false.
const ReasonNoCredentials = "missing"

// Realm names the hub in the challenges of [BearerChallenge].
const Realm = "herald"

// authenticate verifies r with a, answering 401 itself when that fails.
// A missing token is allowed (nil identity) when anonymous is true; a
// token that is present but invalid never is.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, a Authenticator, anonymous bool) (*herald.Identity, bool) {
	id, err := a.Authenticate(r)
	if err == nil && id != nil {
		return id, true
	}
	var ae AuthError
	if err == nil || !errors.As(err, &ae) {
		// Refused: a nil identity would pass where only anonymous
		// streams may.
		ae = uncheckedCredentials{}
	}
	if anonymous && ae.AuthReason() == ReasonNoCredentials {
		return nil, true
	}
	w.Header().Set("WWW-Authenticate", ae.Challenge())
	h.failWithReason(w, r, http.StatusUnauthorized, "unauthorized: "+ae.Error(), ae.AuthReason())
	return nil, false
}

// uncheckedCredentials stands for an Authenticator error that is not an
// AuthError (or a nil identity without an error): its text may say
// anything (a key server's address), so the client is only told that its
// credentials could not be checked.
type uncheckedCredentials struct{}

const uncheckedMessage = "the credentials could not be checked"

func (uncheckedCredentials) Error() string      { return uncheckedMessage }
func (uncheckedCredentials) AuthReason() string { return "malformed" }
func (uncheckedCredentials) Challenge() string {
	return BearerChallenge("invalid_token", uncheckedMessage)
}

// forbid answers 403 for a valid token that lacks a right. The challenge
// is the handler's own: the refusal is about rights, not credentials, and
// every credential a hub accepts is a bearer token (RFC 6750).
func (h *Handler) forbid(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", BearerChallenge("insufficient_scope", msg))
	h.failWithReason(w, r, http.StatusForbidden, msg, "insufficient_scope")
}

// BearerChallenge is the RFC 6750 (section 3) WWW-Authenticate value the
// handler writes: Bearer realm="herald", then, when code is not empty,
// the error code and description (its characters that a quoted
// error_description may not hold replaced). An [AuthError] for bearer
// tokens can return it as its Challenge.
func BearerChallenge(code, description string) string {
	if code == "" {
		return `Bearer realm="` + Realm + `"`
	}
	return `Bearer realm="` + Realm + `", error="` + code + `", error_description="` + quotable(description) + `"`
}

// quotable keeps the characters RFC 6750 allows in error_description
// (printable ASCII but '"' and '\'), replacing the others.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"' || r == '\\':
			return '\''
		case r < 0x20 || r > 0x7e:
			return '?'
		}
		return r
	}, s)
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
