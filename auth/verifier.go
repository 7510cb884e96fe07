package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// Defaults of [Config].
const (
	// DefaultLeeway is the clock skew allowed on exp and nbf.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Leeway accepted.
	MaxLeeway = 5 * time.Minute
	// DefaultJWKSRefresh is how often a JWKS is fetched again.
	DefaultJWKSRefresh = time.Hour
	// DefaultJWKSUnknownKIDRefresh is the least time between two fetches
	// of a JWKS caused by tokens whose kid is not in the cache.
	DefaultJWKSUnknownKIDRefresh = time.Minute
	// DefaultJWKSTimeout bounds one fetch of a JWKS.
	DefaultJWKSTimeout = 10 * time.Second
)

// MaxTokenBytes is the longest token verified; longer ones are malformed.
const MaxTokenBytes = 64 << 10

// Config says how a [Verifier] checks tokens. Exactly one of Secret,
// PublicKeyPEM and JWKSURL is set.
type Config struct {
	// Secret is an HMAC secret (HS256, HS384, HS512) of at least
	// MinSecretBytes bytes.
	Secret []byte
	// PublicKeyPEM is a PEM public key (PUBLIC KEY, RSA PUBLIC KEY) or
	// certificate: RSA (RS256-512, PS256-512; at least 2048 bits), ECDSA
	// (ES256 on P-256, ES384 on P-384, ES512 on P-521) or Ed25519 (EdDSA).
	PublicKeyPEM []byte
	// JWKSURL is the URL of a JSON Web Key Set (an identity provider's
	// jwks_uri). Its keys are cached, fetched again every JWKSRefresh and
	// when a token names a kid not in the cache (at most once per
	// JWKSUnknownKIDRefresh). Its RSA, ECDSA and Ed25519 keys are used;
	// a key's alg, when set, is the only algorithm it verifies, and keys
	// whose use is not "sig" are ignored. Use https outside a trusted
	// network: whoever can change the set can sign tokens.
	JWKSURL string

	// Algorithms, when set, restricts the algorithms accepted further
	// ("RS256", "ES256", ...); each must suit the key. By default every
	// algorithm the key can verify is accepted (never "none", and never an
	// HMAC algorithm with a public key or JWKS).
	Algorithms []string
	// Audience, when set, must be one of the token's aud.
	Audience string
	// Issuer, when set, must be the token's iss.
	Issuer string
	// Leeway is the clock skew allowed when checking exp and nbf:
	// DefaultLeeway when 0, none when negative.
	Leeway time.Duration

	// CookieName is the cookie [Verifier.Authenticate] reads a token from
	// (DefaultCookieName when empty).
	CookieName string
	// Sources are where [Verifier.Authenticate] looks for a token
	// (AllSources when 0). A cookie or query parameter can be sent by
	// other sites' pages (cross-site requests, leaked URLs), so a
	// publisher's Verifier should usually accept the header only.
	Sources Source

	// JWKSRefresh is how often the JWKS is fetched (DefaultJWKSRefresh
	// when 0).
	JWKSRefresh time.Duration
	// JWKSUnknownKIDRefresh is the least time between fetches caused by an
	// unknown kid (DefaultJWKSUnknownKIDRefresh when 0). A verification
	// that would have to wait longer than JWKSTimeout for its turn fails
	// with ReasonUnknownKey at once.
	JWKSUnknownKIDRefresh time.Duration
	// JWKSTimeout bounds one fetch of the JWKS (DefaultJWKSTimeout when 0).
	JWKSTimeout time.Duration
	// HTTPClient fetches the JWKS (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Logger receives failed JWKS fetches (slog.Default() when nil).
	Logger *slog.Logger

	// Now is the clock exp and nbf are checked against (time.Now when
	// nil); for tests.
	Now func() time.Time
}

// Verifier verifies tokens with one key (or key set). It is safe for
// concurrent use. A hub with distinct keys for publishers and subscribers
// holds two.
type Verifier struct {
	key      any            // static key: []byte or a public key
	jwks     jwkset.Storage // or the JWKS cache
	allowed  []string       // algorithms accepted
	parser   *jwt.Parser
	audience string
	issuer   string
	cookie   string
	sources  Source
	cancel   context.CancelFunc
	close    sync.Once
}

// NewVerifier checks c and returns its Verifier. With a JWKS URL it
// fetches the set once (waiting up to JWKSTimeout; a failure is logged, not
// returned, so a hub can start before its identity provider), then in the
// background until ctx is done or Close is called.
func NewVerifier(ctx context.Context, c Config) (*Verifier, error) {
	set := 0
	for _, isSet := range []bool{len(c.Secret) > 0, len(c.PublicKeyPEM) > 0, c.JWKSURL != ""} {
		if isSet {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("auth: configure exactly one of a secret, a public key and a JWKS URL")
	}
	leeway := c.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	case leeway > MaxLeeway:
		return nil, fmt.Errorf("auth: leeway %v is over %v: clocks that far apart make exp meaningless", leeway, MaxLeeway)
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		audience: c.Audience,
		issuer:   c.Issuer,
		cookie:   c.CookieName,
		sources:  c.Sources,
		parser: jwt.NewParser(
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(now),
			jwt.WithStrictDecoding(),
		),
	}
	if v.cookie == "" {
		v.cookie = DefaultCookieName
	}
	if v.sources == 0 {
		v.sources = AllSources
	}

	var possible []string
	switch {
	case len(c.Secret) > 0:
		if len(c.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("auth: the secret is %d bytes; use at least %d random bytes", len(c.Secret), MinSecretBytes)
		}
		v.key = slices.Clone(c.Secret)
		possible = hmacAlgs
	case len(c.PublicKeyPEM) > 0:
		key, err := parsePublicKeyPEM(c.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: %v", err)
		}
		v.key = key
		possible = keyAlgs(key)
	default:
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, errors.New("auth: the JWKS URL must be an absolute http or https URL")
		}
		possible = asymAlgs
	}
	if len(c.Algorithms) == 0 {
		v.allowed = possible
	} else {
		for _, a := range c.Algorithms {
			switch {
			case !slices.Contains(knownAlgs, a):
				return nil, fmt.Errorf("auth: unknown algorithm %q (known: %s)", a, strings.Join(knownAlgs, ", "))
			case !slices.Contains(possible, a):
				return nil, fmt.Errorf("auth: algorithm %s does not suit the key (it can verify %s)", a, strings.Join(possible, ", "))
			}
		}
		v.allowed = slices.Clone(c.Algorithms)
	}

	if c.JWKSURL != "" {
		ctx, v.cancel = context.WithCancel(ctx)
		kf, err := newJWKS(ctx, c)
		if err != nil {
			v.cancel()
			return nil, err
		}
		v.jwks = kf.Storage()
	}
	return v, nil
}

func newJWKS(ctx context.Context, c Config) (keyfunc.Keyfunc, error) {
	every := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	timeout := every(c.JWKSTimeout, DefaultJWKSTimeout)
	logger := c.Logger
	if logger == nil {
		logger = slog.Default()
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
		Client:      c.HTTPClient,
		HTTPTimeout: timeout,
		// Bounds the wait for a refresh turn and that refresh's fetch.
		RateLimitWaitMax:  timeout,
		RefreshInterval:   every(c.JWKSRefresh, DefaultJWKSRefresh),
		RefreshUnknownKID: rate.NewLimiter(rate.Every(every(c.JWKSUnknownKIDRefresh, DefaultJWKSUnknownKIDRefresh)), 1),
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(fetchCtx context.Context, err error) {
				if ctx.Err() == nil { // not stopped by Close
					// net/http's errors quote the URL, query included
					// (it may hold a key), inside messages already
					// formatted by the time they get here.
					logger.WarnContext(fetchCtx, "cannot fetch the JWKS", "url", redacted(c.JWKSURL), "error", scrubURL(err.Error(), c.JWKSURL))
				}
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS: %v", err)
	}
	return kf, nil
}

// scrubURL removes from msg the query and password of raw, wherever they
// appear.
func scrubURL(msg, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	if u.RawQuery != "" {
		msg = strings.ReplaceAll(msg, u.RawQuery, "…")
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// redacted hides the password of a URL (and any query, which may hold a
// key) for logs.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.Redacted()
}

// Close stops the background fetching of a JWKS. It is safe to call more
// than once, and needed only for a Verifier built from a JWKSURL whose
// context outlives it.
func (v *Verifier) Close() {
	if v.cancel != nil {
		v.close.Do(v.cancel)
	}
}

// A Verifier is the JWT authenticator of [httpapi.Handler]'s PublishAuth
// and SubscribeAuth, and its errors are what the handler answers with.
var (
	_ httpapi.Authenticator = (*Verifier)(nil)
	_ httpapi.AuthError     = (*Error)(nil)
)

// Authenticate finds r's token as [ExtractToken] does (with the Config's
// cookie name and sources) and verifies it. Errors are [*Error]s whose
// Source says where the token was found.
func (v *Verifier) Authenticate(r *http.Request) (*herald.Identity, error) {
	token, from, err := ExtractToken(r, v.cookie, v.sources)
	if err != nil {
		return nil, err
	}
	id, err := v.Verify(r.Context(), token)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Source = from
		}
		return nil, err
	}
	return id, nil
}

// tokenClaims are the claims Herald reads.
type tokenClaims struct {
	jwt.RegisteredClaims
	Herald json.RawMessage `json:"herald"`
	// invalid says why claims that decoded are unusable anyway: the
	// token is refused with it once its signature is verified.
	invalid string
}

// registeredNames are the registered claims, read by their exact names.
var registeredNames = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// timeNames are the registered claims that are NumericDates: JSON
// numbers. jwt also reads a string of digits, which no issuer should
// send and a reader elsewhere may take differently (or not at all).
var timeNames = []string{"exp", "nbf", "iat"}

var (
	errDuplicateClaim = errors.New("a claim appears twice")
	errNotObject      = errors.New("not a JSON object")
)

// objectMembers reads the members of the JSON object b by their exact
// (unescaped) names, refusing a name given twice: encoding/json would let
// the last one win, so a token could say one thing to a reader that takes
// the first and another to Herald.
func objectMembers(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errNotObject
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if _, dup := members[name]; dup {
			return nil, errDuplicateClaim
		}
		members[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotObject // something after the object
	}
	return members, nil
}

// isNumber reports whether raw, one JSON value, is a number.
func isNumber(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9')
}

// UnmarshalJSON reads the claims by their exact names and refuses a name
// given twice. encoding/json alone would match "HERALD" or "ſub" (U+017F
// folds to s) to herald and sub, and let the last duplicate win: an
// issuer that lets users shape any claim name would let them write their
// own rights, subject or issuer.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	members, err := objectMembers(b)
	if err != nil {
		return err
	}
	registered := make(map[string]json.RawMessage, len(registeredNames))
	for _, name := range registeredNames {
		if raw, ok := members[name]; ok {
			registered[name] = raw
		}
	}
	for _, name := range timeNames {
		if raw, ok := registered[name]; ok && !isNumber(raw) {
			// Left out, so jwt neither reads nor checks it; Verify
			// refuses the token once it knows the signature is good.
			delete(registered, name)
			c.invalid = "the " + name + " claim is not a number (NumericDate: seconds since 1970)"
		}
	}
	// Only exact lower-case names are left, so the struct's
	// case-insensitive matching has nothing to confuse.
	only, err := json.Marshal(registered)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(only, &c.RegisteredClaims); err != nil {
		return err
	}
	c.Herald = members[ClaimName]
	return nil
}

// refreshKID is a kid no provider issues: reading it makes keyfunc
// refresh the set.
const refreshKID = "\x00herald: refresh"

// Keyfunc errors, told apart after jwt wraps them.
var (
	errWrongAlgorithm = errors.New("algorithm not accepted")
	errUnknownKey     = errors.New("no usable key")
	errBadKID         = errors.New("kid is not a string")
	errCritical       = errors.New("critical header parameters")
)

// Verify checks token (a compact JWS, without "Bearer ") and returns the
// identity it speaks for: its sub, the rights of its herald claim (see
// [ClaimName]) and its exp. Errors are [*Error]s. ctx bounds a JWKS fetch
// for an unknown kid.
func (v *Verifier) Verify(ctx context.Context, token string) (*herald.Identity, error) {
	if token == "" {
		return nil, newError(ReasonMissing, "no token")
	}
	if len(token) > MaxTokenBytes {
		return nil, newError(ReasonMalformed, fmt.Sprintf("the token is longer than %d bytes", MaxTokenBytes))
	}
	if !compact(token) {
		return nil, newError(ReasonMalformed, "the token is not a well-formed JWT")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var claims tokenClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		return v.keyFor(ctx, t)
	})
	if claims.invalid != "" && (err == nil || errors.Is(err, jwt.ErrTokenInvalidClaims)) {
		// Signed (jwt checks claims after the signature), with a claim
		// of the wrong type: say so, not what leaving it out caused (a
		// missing exp).
		return nil, newError(ReasonInvalidClaims, claims.invalid)
	}
	if err != nil {
		return nil, classify(err)
	}
	// Everything below was signed by the key's holder.
	if v.audience != "" && !slices.Contains(claims.Audience, v.audience) {
		return nil, newError(ReasonWrongAudience, "the token is not meant for this audience")
	}
	if v.issuer != "" && claims.Issuer != v.issuer {
		return nil, newError(ReasonWrongIssuer, "the token's issuer is not accepted")
	}
	publish, subscribe, err := parseRights(claims.Herald)
	if err != nil {
		return nil, newError(ReasonInvalidClaims, "invalid claims: "+err.Error())
	}
	return &herald.Identity{
		Subject:   claims.Subject,
		Publish:   publish,
		Subscribe: subscribe,
		Expires:   claims.ExpiresAt.Time,
	}, nil
}

// compact reports whether token has only the characters of a JWS compact
// serialization (base64url and dots). Base64 decoders skip line breaks,
// which would let several strings carry one signature.
func compact(token string) bool {
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// keyFor returns the key to verify t with, after checking that its
// algorithm is accepted and suits the key.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if !slices.Contains(v.allowed, alg) {
		return nil, errWrongAlgorithm
	}
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 section 4.1.11: extensions not understood (Herald
		// understands none) must be refused.
		return nil, errCritical
	}
	if v.jwks == nil {
		return v.key, nil // v.allowed only holds algorithms the key suits
	}
	if kidValue, ok := t.Header["kid"]; ok {
		kid, ok := kidValue.(string)
		if !ok {
			return nil, errBadKID
		}
		// Not the request's context: a client that sends a random kid
		// and goes away must not cancel the (rate-limited) refresh that
		// a token from a freshly rotated key then needs. keyfunc bounds
		// the wait (RateLimitWaitMax).
		jwk, err := v.jwks.KeyRead(context.WithoutCancel(ctx), kid)
		if err != nil {
			return nil, errUnknownKey
		}
		return usableKey(jwk, alg)
	}
	// No kid: try each key that may verify alg.
	all, err := v.jwks.KeyReadAll(ctx)
	if err != nil {
		return nil, errUnknownKey
	}
	var set jwt.VerificationKeySet
	for _, jwk := range all {
		if key, err := usableKey(jwk, alg); err == nil {
			set.Keys = append(set.Keys, key)
		}
	}
	if len(set.Keys) == 0 {
		// Nothing usable (the provider was down at start, or rotated):
		// ask for a kid nobody has, which makes keyfunc refresh within
		// its unknown-kid rate limit, then look again.
		_, _ = v.jwks.KeyRead(context.WithoutCancel(ctx), refreshKID)
		if all, err = v.jwks.KeyReadAll(ctx); err != nil {
			return nil, errUnknownKey
		}
		for _, jwk := range all {
			if key, err := usableKey(jwk, alg); err == nil {
				set.Keys = append(set.Keys, key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, errUnknownKey
		}
	}
	return set, nil
}

// usableKey returns the public key of jwk if it may verify alg.
func usableKey(jwk jwkset.JWK, alg string) (any, error) {
	m := jwk.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, errUnknownKey
	}
	if m.ALG != "" && string(m.ALG) != alg {
		return nil, errWrongAlgorithm
	}
	key := publicKey(jwk.Key())
	if !keyAllows(key, alg) || checkKey(key) != nil {
		return nil, errWrongAlgorithm
	}
	return key, nil
}

// classify turns jwt's error into an *Error. Only fixed descriptions: the
// token's content is not trusted here.
func classify(err error) *Error {
	switch {
	case errors.Is(err, errWrongAlgorithm):
		return newError(ReasonWrongAlgorithm, "the token's signing algorithm is not accepted")
	case errors.Is(err, errUnknownKey):
		return newError(ReasonUnknownKey, "no known key matches the token")
	case errors.Is(err, errBadKID):
		return newError(ReasonMalformed, "the token's kid is not a string")
	case errors.Is(err, errCritical):
		return newError(ReasonMalformed, "the token has critical header parameters (crit), which Herald does not support")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return newError(ReasonMalformed, "the token is not a well-formed JWT")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// ParseUnverified: alg missing or not an algorithm jwt knows.
		return newError(ReasonWrongAlgorithm, "the token's signing algorithm is missing or unknown")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return newError(ReasonBadSignature, "the token's signature is invalid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return newError(ReasonExpired, "the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return newError(ReasonNotYetValid, "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return newError(ReasonInvalidClaims, "the token has no exp claim")
	}
	return newError(ReasonInvalidClaims, "the token's claims are invalid")
}
