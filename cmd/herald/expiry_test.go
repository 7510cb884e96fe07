package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A stream ends when its token expires, with the event type that
// HERALD_EXPIRED_EVENT (--expired-event) names.
func TestServeEndsStreamAtTokenExpiry(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	t.Setenv("HERALD_EXPIRED_EVENT", "session.over")
	const secret = "0123456789abcdef0123456789abcdef"
	var tok, errOut bytes.Buffer
	if code := run(context.Background(), []string{"token", "--secret", secret, "--sub", "alice", "--subscribe", "news", "--ttl", "2s"}, &tok, &errOut); code != 0 {
		t.Fatalf("herald token: %d: %s", code, errOut.String())
	}
	s := startServe(t, "--addr", "127.0.0.1:0", "--jwt-secret", secret)
	req, _ := http.NewRequest(http.MethodGet, s.base+"/events?topic=news", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	dec := streamDecoder(t, resp.Body)
	m, err := dec.Next()
	if err != nil || m.Type != "session.over" || m.Data != `{"reason":"token_expired"}` {
		t.Fatalf("at expiry: %+v, %v; want a session.over event", m, err)
	}
	if _, err := dec.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the expired event: %v, want a clean end", err)
	}
}
