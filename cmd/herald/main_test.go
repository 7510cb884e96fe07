package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald/sse"
)

// lineWriter passes each line written from the serve goroutine to a channel.
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		w.lines <- sc.Text()
	}
	return len(p), nil
}

// The README quickstart: serve, subscribe, publish with a form body, receive
// hello with the stream headers; then a signal (context cancel) ends the
// stream cleanly and serve returns.
func TestServeQuickstart(t *testing.T) {
	t.Setenv("HERALD_HEARTBEAT", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := lineWriter{make(chan string, 16)}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--log-level", "error"}, out, io.Discard)
	}()

	var base string
	select {
	case line := <-out.lines:
		_, base, _ = strings.Cut(line, "herald serving on ")
	case code := <-exit:
		t.Fatalf("serve exited with %d before listening", code)
	}
	if base == "" {
		t.Fatal("serve did not print its address")
	}
	// Started without a key: publishing needs the token it prints.
	var token string
	select {
	case line := <-out.lines:
		_, token, _ = strings.Cut(line, "publish token (this run only; set --jwt-secret or --jwt-key-file to choose the key): ")
	case code := <-exit:
		t.Fatalf("serve exited with %d", code)
	}
	if token == "" {
		t.Fatal("serve printed no publish token")
	}
	// And a link to the page that carries it, out of the server's sight.
	select {
	case line := <-out.lines:
		if want := "page that publishes with it: " + base + "/#token=" + token; line != want {
			t.Errorf("serve printed %q, want %q", line, want)
		}
	case code := <-exit:
		t.Fatalf("serve exited with %d", code)
	}

	resp, err := http.Get(base + "/events?topic=news")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	form := url.Values{"topic": {"news"}, "data": {"hello"}}.Encode()
	if pub, err := http.Post(base+"/publish", "application/x-www-form-urlencoded", strings.NewReader(form)); err != nil || pub.StatusCode != http.StatusUnauthorized {
		t.Fatalf("publish without the token: %v, %v; want 401", pub, err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/publish", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	pub, err := http.DefaultClient.Do(req)
	if err != nil || pub.StatusCode != http.StatusOK {
		t.Fatalf("publish with the token: %v, %v", pub, err)
	}
	pub.Body.Close()
	dec := streamDecoder(t, resp.Body)
	if m, err := dec.Next(); err != nil || m.Data != "hello" {
		t.Fatalf("received %+v, %v; want hello", m, err)
	}

	cancel()
	if _, err := dec.Next(); err != io.EOF {
		t.Errorf("stream after shutdown: %v, want a clean end", err)
	}
	if code := <-exit; code != 0 {
		t.Errorf("serve exited with %d", code)
	}
}

func TestHelpListsEveryFlagAndItsEnv(t *testing.T) {
	var top bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &top, io.Discard); code != 0 || !strings.Contains(top.String(), "serve") {
		t.Errorf("herald --help: exit %d, output %q", code, top.String())
	}

	var help bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--help"}, &help, io.Discard); code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, name := range []string{"addr", "heartbeat", "max-connections", "queue-bytes", "max-body", "write-timeout"} {
		if !strings.Contains(help.String(), "--"+name+" ") || !strings.Contains(help.String(), envName(name)) {
			t.Errorf("serve --help does not list --%s with %s", name, envName(name))
		}
	}
}

func TestBadFlagsAndEnv(t *testing.T) {
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--bogus"}, io.Discard, &errOut); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	t.Setenv("HERALD_HEARTBEAT", "soon")
	errOut.Reset()
	if code := run(context.Background(), []string{"serve"}, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), "HERALD_HEARTBEAT") {
		t.Errorf("bad env: exit %d, %q", code, errOut.String())
	}
	if code := run(context.Background(), []string{"nope"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code := run(context.Background(), nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("no command: exit %d", code)
	}
}

func TestInvalidValuesExit2(t *testing.T) {
	for _, args := range [][]string{
		{"--addr", ""},
		{"--heartbeat", "1ns"},
		{"--max-connections", "-1"},
		{"--queue-bytes", "0"},
		{"--max-body", "-5"},
		{"--write-timeout", "-1s"},
		{"--shutdown-timeout", "-1s"},
		{"--retry", "1us"},
		{"--cors-origins", "example.com"},
		{"--cors-origins", "https://ok.example,https://bad.example/"},
		{"--tls-cert", "cert.pem"},
		{"--trusted-proxies", "10.0.0.0/8,proxy.example"},
		{"--max-connections-per-ip", "-1"},
		{"--publish-rate", "-2"},
		{"--jwt-secret", "short"},
		{"--jwt-secret", "0123456789abcdef0123456789abcdef", "--jwt-key-file", "key.pem"},
		{"--anonymous"},
		{"--reset-event", "a\nb"},
		{"--reset-event", ""},
		{"--expired-event", "a\nb"},
		{"--expired-event", ""},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
		{"extra"},
	} {
		var errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"serve"}, args...), io.Discard, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("serve %q: exit %d, stderr %q; want 2 and an explanation", args, code, errOut.String())
		}
	}
}

// A flag on the command line wins over its environment variable; the
// environment wins over the default.
func TestFlagOverridesEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "")
	beat := fs.Duration("heartbeat", time.Second, "")
	t.Setenv("HERALD_ADDR", ":9000")
	t.Setenv("HERALD_HEARTBEAT", "3s")
	if err := parseFlags(fs, []string{"--addr", ":7000"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if *addr != ":7000" || *beat != 3*time.Second {
		t.Errorf("addr %q heartbeat %v; want the flag's :7000 and the env's 3s", *addr, *beat)
	}
}

// streamDecoder reads a herald serve stream past its first event, the
// herald.connected announcement (checked), so the test sees what was
// published.
func streamDecoder(t *testing.T, body io.Reader) *sse.Decoder {
	t.Helper()
	dec := sse.NewDecoder(body)
	m, err := dec.Next()
	if err != nil || m.Type != "herald.connected" || !strings.Contains(m.Data, `"connection":`) {
		t.Fatalf("first event %+v, %v; want herald.connected", m, err)
	}
	return dec
}
