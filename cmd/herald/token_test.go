package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
)

const tokenSecret = "herald-token-test-secret-0123456"

// herald token prints a token that a Verifier with the same secret
// accepts, with the rights asked for (repeated and comma-separated).
func TestTokenMintsAVerifiableToken(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"token", "--secret", tokenSecret, "--sub", "alice",
		"--publish", "news,alerts", "--publish", "sport", "--subscribe", "*",
		"--ttl", "10m", "--audience", "herald", "--issuer", "dev"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	token := strings.TrimSuffix(out.String(), "\n")
	if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \n") {
		t.Fatalf("output %q is not one token line", out.String())
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: []byte(tokenSecret), Audience: "herald", Issuer: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice" || fmt.Sprint(id.Publish) != "[news alerts sport]" || fmt.Sprint(id.Subscribe) != "[*]" {
		t.Errorf("identity %+v", id)
	}
	if left := time.Until(id.Expires); left < 9*time.Minute || left > 10*time.Minute {
		t.Errorf("expires in %v; want 10m", left)
	}
	if !id.CanSubscribe(herald.All{}) || id.CanPublish([]string{"other"}) {
		t.Error("rights")
	}
}

// The secret and the rights come from HERALD_* variables too; the default
// ttl is an hour.
func TestTokenFromEnv(t *testing.T) {
	t.Setenv("HERALD_SECRET", tokenSecret)
	t.Setenv("HERALD_SUBSCRIBE", "a,b")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"token"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: []byte(tokenSecret)})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(context.Background(), strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(id.Subscribe) != "[a b]" || len(id.Publish) != 0 || id.Subject != "" {
		t.Errorf("identity %+v", id)
	}
	if left := time.Until(id.Expires); left < 59*time.Minute || left > time.Hour {
		t.Errorf("expires in %v; want 1h", left)
	}
}

func TestTokenUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "HERALD_SECRET"},
		{[]string{"--secret", "short"}, "at least 32 bytes"},
		{[]string{"--secret", tokenSecret, "--ttl", "0"}, "--ttl"},
		{[]string{"--secret", tokenSecret, "--ttl", "-1m"}, "--ttl"},
		{[]string{"--secret", tokenSecret, "--publish", "news,"}, "empty topic"},
		{[]string{"--secret", tokenSecret, "--subscribe", "a\x01"}, "control character"},
		{[]string{"--secret", tokenSecret, "extra"}, "unexpected arguments"},
		{[]string{"--bogus"}, "bogus"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"token"}, tc.args...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), tc.want) || out.Len() != 0 {
			t.Errorf("token %q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out.String(), errOut.String(), tc.want)
		}
		if strings.Contains(errOut.String(), tokenSecret) {
			t.Errorf("token %q: stderr shows the secret", tc.args)
		}
	}
}

// --help goes to stdout and lists every flag with its variable, without
// the secret set in the environment.
func TestTokenHelp(t *testing.T) {
	t.Setenv("HERALD_SECRET", tokenSecret)
	var out bytes.Buffer
	if code := run(context.Background(), []string{"token", "--help"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"sub", "publish", "subscribe", "ttl", "secret", "audience", "issuer"} {
		if !strings.Contains(out.String(), "--"+name+" ") || !strings.Contains(out.String(), envName(name)) {
			t.Errorf("help does not list --%s with %s", name, envName(name))
		}
	}
	if strings.Contains(out.String(), tokenSecret) {
		t.Error("help shows the secret")
	}
	var top bytes.Buffer
	run(context.Background(), []string{"--help"}, &top, io.Discard)
	if !strings.Contains(top.String(), "token") {
		t.Error("herald --help does not list token")
	}
}
