// Package auth authenticates Herald's publishers and subscribers with JSON
// Web Tokens.
//
// A [Verifier] checks tokens against one key: an HMAC secret, an RSA, ECDSA
// or Ed25519 public key (PEM), or a JWKS URL whose keys are cached and
// refreshed. A hub that gives publishers and subscribers different keys
// holds one Verifier per role, each built from its own [Config].
//
// [Verifier.Authenticate] finds the token of an HTTP request (the
// Authorization: Bearer header, then a cookie, then the access_token query
// parameter, which EventSource clients need since they cannot set
// headers), verifies it and returns the caller's [herald.Identity]: its
// subject, its expiry and the topics it may publish to and subscribe to,
// from the token's herald claim:
//
//	{"sub": "alice", "exp": 1767225600,
//	 "herald": {"publish": ["news"], "subscribe": ["news", "alerts"]}}
//
// ("*" grants every topic). Every failure is an [*Error] whose [Reason] is
// machine-readable and which gives the HTTP status (401) and
// WWW-Authenticate challenge to answer with (RFC 6750). Deciding what an
// authenticated identity may do (403 when it may not) is the caller's, with
// [herald.Identity.CanPublish], [herald.Identity.CanSubscribe] and
// [herald.Identity.CanSee].
//
// A Verifier is an [httpapi.Authenticator] and its errors are
// [httpapi.AuthError]s: set it as the Handler's PublishAuth or
// SubscribeAuth. This package imports httpapi for that contract, not the
// other way round, so a program serving Herald without JWTs links no JWT
// library.
//
// Signature algorithms are pinned to the type of the key: a token is
// accepted only if its alg is one the configured key can verify (HS256,
// HS384, HS512 for a secret; RS256-512 and PS256-512 for RSA; the ES
// algorithm of the key's curve for ECDSA; EdDSA for Ed25519). So alg "none"
// and algorithm confusion (a token HMAC-signed with the public key as the
// secret) are rejected before any signature is computed. Tokens must carry
// exp; exp and nbf are checked with a leeway for clock skew. Claims are
// strict JSON: read by exact name, a name given twice (at the top or
// inside the herald claim) refused, and exp, nbf and iat numbers.
//
// [MintHS256] makes development tokens (the herald token command).
package auth
