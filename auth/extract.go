package auth

import (
	"net/http"
	"strings"
)

// DefaultCookieName is the cookie a token is read from unless
// [Config.CookieName] says otherwise.
const DefaultCookieName = "herald_token"

// QueryParameter is the query parameter a token is read from, for
// EventSource clients, which cannot set headers (RFC 6750 section 2.3).
const QueryParameter = "access_token"

// A Source is a place a request's token is looked for; Sources combine
// with |.
type Source uint8

// The sources of a token, in the order they are looked at.
const (
	// FromHeader is the Authorization: Bearer header.
	FromHeader Source = 1 << iota
	// FromCookie is a cookie ([DefaultCookieName] by default).
	FromCookie
	// FromQuery is the access_token query parameter.
	FromQuery

	// AllSources is every source.
	AllSources = FromHeader | FromCookie | FromQuery
)

// String names the source: "header", "cookie" or "query" (joined with
// "+" for several, "" for none).
func (s Source) String() string {
	var names []string
	for _, n := range []struct {
		s    Source
		name string
	}{{FromHeader, "header"}, {FromCookie, "cookie"}, {FromQuery, "query"}} {
		if s&n.s != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, "+")
}

// ExtractToken returns the token of r and where it was found, looking in
// sources (0 means [AllSources]) in this order: the Authorization: Bearer
// header, the cookie cookieName ([DefaultCookieName] if empty), the
// access_token query parameter. The first source that holds a token wins,
// even if a later one holds another: a token that then fails to verify is
// an error, not a reason to try the next source.
//
// An Authorization header with another scheme (Basic, for a proxy) is not
// a token; an empty cookie or query parameter is none. The errors are
// [*Error]s: ReasonMissing when no source holds a token, ReasonMalformed
// for a Bearer header without a token, or several Bearer headers or
// access_token parameters.
func ExtractToken(r *http.Request, cookieName string, sources Source) (token string, from Source, err error) {
	if sources == 0 {
		sources = AllSources
	}
	if cookieName == "" {
		cookieName = DefaultCookieName
	}
	if sources&FromHeader != 0 {
		var found []string
		for _, v := range r.Header.Values("Authorization") {
			// The scheme ends at any whitespace: "Bearer\t<token>" must
			// not be skipped in favour of a cookie or query token.
			v = strings.TrimSpace(v)
			end := strings.IndexAny(v, " \t")
			if end < 0 {
				end = len(v)
			}
			scheme, rest := v[:end], v[end:]
			if strings.EqualFold(scheme, "Bearer") {
				found = append(found, strings.TrimSpace(rest))
			}
		}
		switch {
		case len(found) > 1:
			return "", FromHeader, sourced(ReasonMalformed, FromHeader, "several Authorization: Bearer headers")
		case len(found) == 1 && (found[0] == "" || strings.ContainsAny(found[0], " \t")):
			return "", FromHeader, sourced(ReasonMalformed, FromHeader, "the Authorization header must be Bearer and one token")
		case len(found) == 1:
			return found[0], FromHeader, nil
		}
	}
	if sources&FromCookie != 0 {
		var found []string
		for _, c := range r.CookiesNamed(cookieName) {
			if c.Value != "" {
				found = append(found, c.Value)
			}
		}
		switch len(found) {
		case 0:
		case 1:
			return found[0], FromCookie, nil
		default:
			// A sibling subdomain can plant a cookie of the same name
			// that browsers send first: refuse to guess.
			return "", FromCookie, sourced(ReasonMalformed, FromCookie, "several "+cookieName+" cookies")
		}
	}
	if sources&FromQuery != 0 && r.URL != nil {
		var found []string
		for _, v := range r.URL.Query()[QueryParameter] {
			if v != "" {
				found = append(found, v)
			}
		}
		switch len(found) {
		case 0:
		case 1:
			return found[0], FromQuery, nil
		default:
			return "", FromQuery, sourced(ReasonMalformed, FromQuery, "several "+QueryParameter+" query parameters")
		}
	}
	return "", 0, sourced(ReasonMissing, 0, "no token in "+sourceNames(sources, cookieName))
}

// sourceNames describes where tokens are looked for.
func sourceNames(sources Source, cookie string) string {
	var names []string
	if sources&FromHeader != 0 {
		names = append(names, "the Authorization: Bearer header")
	}
	if sources&FromCookie != 0 {
		names = append(names, "the "+cookie+" cookie")
	}
	if sources&FromQuery != 0 {
		names = append(names, "the "+QueryParameter+" query parameter")
	}
	if len(names) > 1 {
		names[len(names)-1] = "or " + names[len(names)-1]
	}
	if len(names) > 2 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names, " ")
}

func sourced(reason Reason, from Source, description string) *Error {
	return &Error{Reason: reason, Source: from, Description: description}
}
