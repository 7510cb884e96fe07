package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/bolt"
)

// publishForm publishes data to topic through s and returns the event ID.
func publishForm(t *testing.T, s *server, topic, data string) string {
	t.Helper()
	resp, err := freshConns.PostForm(s.base+"/publish", url.Values{"topic": {topic}, "data": {data}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK || ans.ID == "" {
		t.Fatalf("publish: %d, %+v, %v", resp.StatusCode, ans, err)
	}
	return ans.ID
}

// splitID returns the epoch and the position of an ID the hub generated.
func splitID(t *testing.T, id string) (string, uint64) {
	t.Helper()
	i := strings.LastIndexByte(id, '-')
	pos, err := strconv.ParseUint(id[i+1:], 36, 64)
	if i < 0 || err != nil {
		t.Fatalf("ID %q is not epoch-position", id)
	}
	return id[:i], pos
}

// replayed opens the store in dir as the next serve would and returns
// the data of what a subscriber of topic resuming after lastEventID gets
// replayed, or its reset reason.
func replayed(t *testing.T, dir string, opts bolt.Options, topic, lastEventID string) ([]string, string) {
	t.Helper()
	h, err := bolt.Open(filepath.Join(dir, "herald.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	hub := &herald.Hub{History: h, Heartbeat: -1}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	sub, err := hub.SubscribeWith(herald.SubscribeOptions{Selectors: []herald.Selector{herald.Topic(topic)}, LastEventID: lastEventID})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if r := sub.Reset(); r != nil {
		return nil, r.Reason
	}
	var data []string
	err = sub.Replay(func(frames [][]byte) error {
		for _, f := range frames {
			for line := range strings.Lines(string(f)) {
				if d, ok := strings.CutPrefix(line, "data: "); ok {
					data = append(data, strings.TrimSuffix(d, "\n"))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return data, ""
}

// Events published to a serve with --data-dir survive a restart: IDs keep
// their epoch, positions continue after the old ones, and a stream
// resuming with Last-Event-ID: <event 1> gets everything after it, then
// live events.
func TestServeDataDirSurvivesRestart(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	dir := filepath.Join(t.TempDir(), "new", "data") // created by serve
	s := startServe(t, "--addr", "127.0.0.1:0", "--data-dir", dir, "--fsync", "never")
	if !s.stderr.waitFor(func(log string) bool { return strings.Contains(log, "herald listening") }, s.exited) {
		t.Fatalf("no startup log: %q", s.stderr.String())
	}
	for _, want := range []string{"store=bolt", "path=" + filepath.Join(dir, "herald.db"), "fsync=never"} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("startup log lacks %s: %q", want, s.stderr.String())
		}
	}
	var ids []string
	for i := 1; i <= 3; i++ {
		ids = append(ids, publishForm(t, s, "news", "event "+strconv.Itoa(i)))
		publishForm(t, s, "other", "not selected")
	}
	if code := s.shutdown(); code != 0 {
		t.Fatalf("first serve exited with %d: %s", code, s.stderr.String())
	}

	s = startServe(t, "--addr", "127.0.0.1:0", "--data-dir", dir)
	ids = append(ids, publishForm(t, s, "news", "event 4"))
	epoch, last := splitID(t, ids[2])
	epoch4, pos4 := splitID(t, ids[3])
	if epoch4 != epoch || pos4 != last+2 {
		t.Errorf("ID after restart %s, want epoch %s and position %d (after %s and an event on other)", ids[3], epoch, last+2, ids[2])
	}

	req, _ := http.NewRequest("GET", s.base+"/events?topic=news", nil)
	req.Header.Set("Last-Event-ID", ids[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := streamDecoder(t, resp.Body)
	next := func(wantID, wantData string) {
		t.Helper()
		m, err := dec.Next()
		if err != nil || m.Data != wantData || m.LastEventID != wantID || m.Type != "message" {
			t.Fatalf("resumed stream: %+v, %v; want %s with id %s", m, err, wantData, wantID)
		}
	}
	next(ids[1], "event 2")
	next(ids[2], "event 3")
	next(ids[3], "event 4")
	id5 := publishForm(t, s, "news", "event 5")
	next(id5, "event 5")
	if code := s.shutdown(); code != 0 {
		t.Fatalf("second serve exited with %d: %s", code, s.stderr.String())
	}
}

func slicesEqual(a, b []string) bool {
	return len(a) == len(b) && strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// The retention flags reach the store; HERALD_* variables set them too.
func TestServeHistoryRetentionFlags(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	t.Setenv("HERALD_HISTORY_TOPIC_EVENTS", "news=2,a=b=1")
	dir := t.TempDir()
	s := startServe(t, "--addr", "127.0.0.1:0", "--data-dir", dir, "--history-events", "5")
	var news, other []string
	for i := 1; i <= 4; i++ {
		news = append(news, publishForm(t, s, "news", "n"+strconv.Itoa(i)))
	}
	for i := 1; i <= 4; i++ {
		other = append(other, publishForm(t, s, "other", "o"+strconv.Itoa(i)))
	}
	if code := s.shutdown(); code != 0 {
		t.Fatalf("serve exited with %d", code)
	}
	// The cap on news removed n1 and n2; then 6 events were over
	// --history-events 5, which removed n3.
	if _, reset := replayed(t, dir, bolt.Options{}, "news", news[0]); reset != herald.ResetExpired {
		t.Errorf("resuming news after n1: reset %q, want %q", reset, herald.ResetExpired)
	}
	if got, reset := replayed(t, dir, bolt.Options{}, "news", news[2]); reset != "" || !slicesEqual(got, []string{"n4"}) {
		t.Errorf("resuming news after n3: %q, reset %q; want n4", got, reset)
	}
	if got, reset := replayed(t, dir, bolt.Options{}, "other", news[2]); reset != "" || !slicesEqual(got, []string{"o1", "o2", "o3", "o4"}) {
		t.Errorf("resuming other after n3: %q, reset %q; want o1 to o4", got, reset)
	}
	if _, reset := replayed(t, dir, bolt.Options{}, "other", news[1]); reset != herald.ResetExpired {
		t.Errorf("resuming other after n2: reset %q, want %q (n3 went for --history-events)", reset, herald.ResetExpired)
	}
}

// Without --data-dir the history is in memory, and says so.
func TestServeMemoryStore(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	s := startServe(t, "--addr", "127.0.0.1:0", "--history-events", "10", "--history-topic-events", "x=1", "--history-age", "1m")
	if !s.stderr.waitFor(func(log string) bool { return strings.Contains(log, "herald listening") }, s.exited) ||
		!strings.Contains(s.stderr.String(), "store=memory") {
		t.Errorf("startup log: %q", s.stderr.String())
	}
}

func TestServeHistoryBadValuesExit2(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--fsync", "never"}, want: "--fsync needs --data-dir"},
		{env: map[string]string{"HERALD_FSYNC": "always"}, want: "--fsync needs --data-dir"},
		{args: []string{"--data-dir", dir, "--fsync", "sometimes"}, want: "--fsync must be always or never"},
		{args: []string{"--history-events", "0"}, want: "must be positive"},
		{args: []string{"--history-events", "-5"}, want: "must be positive"},
		{args: []string{"--history-bytes", "0"}, want: "must be positive"},
		{args: []string{"--history-age", "0s"}, want: "must be positive"},
		{args: []string{"--history-age", "soon"}, want: "history-age"},
		{args: []string{"--history-topic-events", "news"}, want: "not topic=N"},
		{args: []string{"--history-topic-events", "news=-1"}, want: "0 or more"},
		{args: []string{"--history-topic-events", "news=many"}, want: "whole number"},
		{args: []string{"--history-topic-events", "=3"}, want: "empty topic"},
		{args: []string{"--history-topic-events", "*=3"}, want: "reserved"},
		{args: []string{"--history-topic-events", "a=1", "--history-topic-events", "a=2"}, want: "capped twice"},
		{env: map[string]string{"HERALD_HISTORY_TOPIC_EVENTS": "a=1,b"}, want: "HERALD_HISTORY_TOPIC_EVENTS"},
		{env: map[string]string{"HERALD_HISTORY_EVENTS": "many"}, want: "HERALD_HISTORY_EVENTS"},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var errOut bytes.Buffer
		code := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0"}, c.args...), io.Discard, &errOut)
		for k := range c.env {
			os.Unsetenv(k)
		}
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("serve %q (env %v): exit %d, stderr %q; want 2 and %q", c.args, c.env, code, errOut.String(), c.want)
		}
	}
}

// A data directory that cannot be made, or a store another serve holds,
// is a runtime failure (exit 1) that says what is wrong.
func TestServeDataDirFailures(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(file, "sub")}, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "--data-dir") {
		t.Errorf("--data-dir under a file: exit %d, %q", code, errOut.String())
	}

	dir := t.TempDir()
	startServe(t, "--addr", "127.0.0.1:0", "--data-dir", dir)
	errOut.Reset()
	if code := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "locked") {
		t.Errorf("second serve on one --data-dir: exit %d, %q; want 1 and locked", code, errOut.String())
	}
}

func TestHelpListsHistoryFlags(t *testing.T) {
	var help strings.Builder
	if code := run(context.Background(), []string{"serve", "--help"}, &help, io.Discard); code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, name := range []string{"data-dir", "fsync", "history-events", "history-bytes", "history-age", "history-topic-events"} {
		if !strings.Contains(help.String(), "--"+name+" ") || !strings.Contains(help.String(), envName(name)) {
			t.Errorf("serve --help does not list --%s with %s", name, envName(name))
		}
	}
}
