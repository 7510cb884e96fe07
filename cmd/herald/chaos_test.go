package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/chaostest"
)

// The chaos test against herald serve with --data-dir, restarted half-way:
// subscribers dropping and resuming at random while events are published
// over HTTP lose nothing and see nothing twice, across the restart.
func TestChaosResumeAcrossRestart(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--max-connections", "0", "--log-level", "warn", "--retry", "0"}
	s := startServe(t, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	addr := strings.TrimPrefix(s.base, "http://")
	restarts := 0
	publishClient := &http.Client{Timeout: waitTimeout}
	chaostest.Run(t, *long, chaostest.Target{
		URL: s.base,
		Publish: func(events []herald.Event) error {
			body := make([]map[string]any, len(events))
			for i, e := range events {
				body[i] = map[string]any{"topics": e.Topics, "data": e.Data}
			}
			b, _ := json.Marshal(body)
			resp, err := publishClient.Post(s.base+"/publish", "application/json", bytes.NewReader(b))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("publish: status %d", resp.StatusCode)
			}
			return nil
		},
		Restart: func() {
			restarts++
			if code := s.shutdown(); code != 0 {
				t.Fatalf("serve exited with %d on shutdown: %s", code, s.stderr.String())
			}
			// The same port: subscribers reconnect to the same URL.
			s = startServe(t, append([]string{"--addr", addr}, args...)...)
		},
	})
	if restarts != 1 {
		t.Fatalf("%d restarts, want 1", restarts)
	}
	if code := s.shutdown(); code != 0 {
		t.Fatalf("serve exited with %d: %s", code, s.stderr.String())
	}
}
