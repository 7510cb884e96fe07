package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

// runToken prints a development token: an HS256 JWT with the herald
// rights claim, for a hub whose verifier has the same secret.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "`subject` the token identifies (its sub claim)")
	var publish, subscribe selectorsFlag
	fs.Var(&publish, "publish", "`selector` the token may publish to: a topic, or * for all (repeatable, or a comma-separated list)")
	fs.Var(&subscribe, "subscribe", "`selector` the token may subscribe to: a topic, or * for all (repeatable, or a comma-separated list)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (its exp claim)")
	secret := fs.String("secret", "", fmt.Sprintf("HMAC `secret` the hub verifies tokens with, at least %d bytes (required; prefer the environment variable, which the process list does not show)", auth.MinSecretBytes))
	audience := fs.String("audience", "", "aud claim, when the hub expects one")
	issuer := fs.String("issuer", "", "iss claim, when the hub expects one")
	fs.Usage = flagUsage(fs, "Prints a development token (an HS256 JWT) on stdout, for the Authorization: Bearer\nheader, the herald_token cookie or the access_token query parameter.")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case *secret == "":
		return usageError(stderr, "--secret (or %s) is required", envName("secret"))
	case len(*secret) < auth.MinSecretBytes:
		return usageError(stderr, "--secret must be at least %d bytes (it is %d)", auth.MinSecretBytes, len(*secret))
	case *ttl <= 0:
		return usageError(stderr, "--ttl must be positive: tokens always expire")
	}
	token, err := auth.MintHS256([]byte(*secret), herald.Identity{
		Subject:   *sub,
		Publish:   publish,
		Subscribe: subscribe,
	}, *ttl, *audience, *issuer)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// selectorsFlag collects --publish and --subscribe selectors: the flag may
// be repeated and each value (the environment variable's too) may be a
// comma-separated list, so topics with ',' cannot be granted here.
type selectorsFlag []herald.Selector

func (s *selectorsFlag) String() string {
	if s == nil {
		return ""
	}
	var items []string
	for _, sel := range *s {
		items = append(items, sel.String())
	}
	return strings.Join(items, ",")
}

func (s *selectorsFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		sel, err := herald.ParseSelector(item)
		if err != nil {
			return fmt.Errorf("%q: %v", item, err)
		}
		*s = append(*s, sel)
	}
	return nil
}
