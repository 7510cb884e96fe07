package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-sse/herald"
)

// MintHS256 returns a token signed with secret (HS256) for id's Subject,
// Publish and Subscribe rights, valid from now for ttl (id.Expires is
// ignored), with aud and iss claims when they are not empty. It is meant
// for development and tests: production tokens come from the
// application or an identity provider.
func MintHS256(secret []byte, id herald.Identity, ttl time.Duration, aud, iss string) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("auth: the secret is %d bytes; use at least %d random bytes", len(secret), MinSecretBytes)
	}
	if ttl <= 0 {
		return "", errors.New("auth: the token's lifetime must be positive")
	}
	publish, err := selectorStrings(id.Publish, "publish")
	if err != nil {
		return "", fmt.Errorf("auth: %v", err)
	}
	subscribe, err := selectorStrings(id.Subscribe, "subscribe")
	if err != nil {
		return "", fmt.Errorf("auth: %v", err)
	}
	now := time.Now()
	claims := mintClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   id.Subject,
			Issuer:    iss,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	if aud != "" {
		claims.Audience = jwt.ClaimStrings{aud}
	}
	if len(publish) > 0 || len(subscribe) > 0 {
		claims.Herald = &rightsClaim{Publish: publish, Subscribe: subscribe}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

type mintClaims struct {
	jwt.RegisteredClaims
	Herald *rightsClaim `json:"herald,omitempty"`
}
