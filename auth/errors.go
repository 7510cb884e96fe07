package auth

import (
	"errors"
	"net/http"

	"github.com/herald-sse/herald/httpapi"
)

// Realm is the realm of the WWW-Authenticate challenges.
const Realm = httpapi.Realm

// A Reason says in a word why a request was not authenticated. It is
// stable, meant for programs (logs, metrics, client logic).
type Reason string

// The reasons of an [*Error].
const (
	// ReasonMissing: the request carries no token. It is the
	// [httpapi.ReasonNoCredentials] that Handler.Anonymous lets through.
	ReasonMissing Reason = httpapi.ReasonNoCredentials
	// ReasonMalformed: the token is not a well-formed JWT (or was given
	// ambiguously, like two Authorization: Bearer headers).
	ReasonMalformed Reason = "malformed"
	// ReasonExpired: the token's exp has passed (beyond the leeway).
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: the token's nbf is in the future (beyond the
	// leeway).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonBadSignature: the signature does not verify with the key.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonWrongAlgorithm: the token's alg is not one the key may verify
	// ("none", an HMAC alg against a public key, another curve, ...).
	ReasonWrongAlgorithm Reason = "wrong_algorithm"
	// ReasonWrongAudience: the token's aud lacks the expected audience.
	ReasonWrongAudience Reason = "wrong_audience"
	// ReasonWrongIssuer: the token's iss is not the expected issuer.
	ReasonWrongIssuer Reason = "wrong_issuer"
	// ReasonUnknownKey: no key of the JWKS matches the token's kid (or
	// none is usable for signatures).
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonInvalidClaims: the signature is good but the claims are not
	// usable: no exp, exp, nbf or iat not a number, or a herald claim
	// that is not well-formed (a member twice included).
	ReasonInvalidClaims Reason = "invalid_claims"
)

// Error is why a request or token was not authenticated. Its text never
// contains the token or key material, nor values read from a token whose
// signature was not verified.
type Error struct {
	// Reason says why, for programs.
	Reason Reason
	// Source is where the token was found; 0 when there was none.
	Source Source
	// Description says why, for people (it is also the error's text and
	// the challenge's error_description).
	Description string
}

// Error returns the Description.
func (e *Error) Error() string { return e.Description }

// AuthReason returns the Reason as a string, for [httpapi.AuthError]: the
// "reason" of the handler's JSON answer.
func (e *Error) AuthReason() string { return string(e.Reason) }

// StatusCode is the HTTP status to answer with: always 401 Unauthorized,
// the token being missing or invalid. (A valid token that lacks a right
// is the caller's 403, see [InsufficientScope].)
func (e *Error) StatusCode() int { return http.StatusUnauthorized }

// Challenge is the WWW-Authenticate header value to send with the 401
// (RFC 6750 section 3): Bearer realm="herald" when no token was given,
// else with error="invalid_token" and an error_description.
func (e *Error) Challenge() string {
	if e.Reason == ReasonMissing {
		return httpapi.BearerChallenge("", "")
	}
	return httpapi.BearerChallenge("invalid_token", e.Description)
}

// InsufficientScope is the WWW-Authenticate header value for a 403
// answered to a valid token that lacks the right asked for (RFC 6750
// section 3.1), with description as error_description.
func InsufficientScope(description string) string {
	return httpapi.BearerChallenge("insufficient_scope", description)
}

// ReasonOf returns the reason of an [*Error] in err's chain, or "" if
// there is none.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func newError(reason Reason, description string) *Error {
	return &Error{Reason: reason, Description: description}
}
