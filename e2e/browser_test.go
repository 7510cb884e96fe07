// Package e2e holds browser tests: a real EventSource in Debian's Chromium,
// driven by playwright-core, against a hub served by httptest. They run only
// with HERALD_BROWSER=1, after scripts/install-test-deps.sh.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/web"
)

// endMarker is the data of the event eventsource.mjs publishes last.
const endMarker = "__herald_e2e_end__"

// payload is one publish of the matrix test; the exported fields are its
// JSON body (with "topic" added by the script).
type payload struct {
	Data  any    `json:"data,omitempty"` // nil: "data" left out
	Event string `json:"event,omitempty"`
	ID    string `json:"id,omitempty"`
	Retry int    `json:"retry,omitempty"`

	name string
	want string // data as EventSource delivers it; "" means normalised Data
}

// matrix is the payload matrix of shared/docs/sse-wire.md, and more.
func matrix() []payload {
	big := strings.Repeat("0123456789abcdef", 100<<10/16) // 100 KiB on one line
	return []payload{
		{name: "LF", Data: "a\nb"},
		{name: "CRLF", Data: "a\r\nb", Event: "greeting"},
		{name: "CR", Data: "a\rb"},
		{name: "trailing LF", Data: "trail\n"},
		{name: "leading LF", Data: "\nlead", Event: "greeting"},
		{name: "leading space", Data: " space"},
		{name: "CR field injection", Data: "x\revent: evil\rdata: injected"},
		{name: "LF field injection", Data: "x\n\nevent: evil\nid: forged\ndata: y", Event: "update"},
		{name: "empty", Data: ""},
		{name: "empty, named", Data: "", Event: "greeting"},
		{name: "data left out", Data: nil, want: ""},
		{name: "only CRLF", Data: "\r\n"},
		{name: "mixed line ends", Data: "a\r\r\nb\n\rc\r"},
		{name: "non-ASCII", Data: "héllo 🌍 ünïcödé", Event: "update"},
		{name: "Unicode line separators are not line ends", Data: "ls\u2028ps\u2029nel\u0085end"},
		{name: "BOM inside the stream", Data: "\ufeffbom"},
		{name: "NUL", Data: "a\x00b"},
		{name: "colons and tabs", Data: ":not a comment\n\tkey: value: more"},
		{name: "JSON-looking string", Data: `{"data":"x","id":"7"}`},
		{name: "JSON object", Data: map[string]any{"b": []int{1, 2}, "a": "x"}, want: `{"a":"x","b":[1,2]}`},
		{name: "JSON number", Data: 42, want: "42"},
		{name: "100 KiB", Data: big, Event: "update"},
		{name: "publisher-chosen id", Data: "chosen id", ID: "order-42"},
		{name: "non-ASCII id", Data: "id with é", ID: "évent-7", Event: "greeting"},
		{name: "after chosen ids", Data: "back to hub ids"},
		{name: "with retry", Data: "retry set", Retry: 2500},
	}
}

// normalise turns CRLF and CR into LF, as EventSource does.
func normalise(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// matrixResult is what eventsource.mjs prints.
type matrixResult struct {
	Published []struct {
		Status int    `json:"status"`
		ID     string `json:"id"`
		Error  string `json:"error"`
	} `json:"published"`
	Received []struct {
		Type        string `json:"type"`
		Data        string `json:"data"`
		LastEventID string `json:"lastEventId"`
	} `json:"received"`
	StreamErrors int            `json:"streamErrors"`
	TimedOut     bool           `json:"timedOut"`
	Failure      string         `json:"failure"`
	Timing       map[string]int `json:"timing"`
	Diagnostics  []string       `json:"diagnostics"`
}

func TestEventSourceReceivesPayloadMatrix(t *testing.T) {
	base := startHub(t)
	payloads := matrix()
	spec := map[string]any{"topic": "matrix", "payloads": payloads, "timeoutMs": 30000}
	var res matrixResult
	runNode(t, "eventsource.mjs", base, spec, &res)
	t.Logf("in the page: %v", res.Timing)

	for _, d := range res.Diagnostics {
		t.Errorf("page: %s", d)
	}
	if res.StreamErrors != 0 {
		t.Errorf("EventSource reported %d errors: the stream broke and reconnected", res.StreamErrors)
	}
	if len(res.Published) != len(payloads)+1 {
		t.Fatalf("%d publishes answered, want %d", len(res.Published), len(payloads)+1)
	}
	seen := map[string]string{}
	for i, p := range res.Published {
		name := "end marker"
		if i < len(payloads) {
			name = payloads[i].name
		}
		if p.Status != 200 || p.ID == "" {
			t.Fatalf("publish %d (%s): status %d, id %q, error %q", i, name, p.Status, p.ID, p.Error)
		}
		if i < len(payloads) && payloads[i].ID != "" && p.ID != payloads[i].ID {
			t.Errorf("publish %d (%s): id %q, want the publisher's %q", i, name, p.ID, payloads[i].ID)
		}
		if prev, dup := seen[p.ID]; dup {
			t.Errorf("publish %d (%s): id %q already given to %s", i, name, p.ID, prev)
		}
		seen[p.ID] = name
	}

	// One event per publish, in order, then the end marker: anything extra
	// or missing shows up as a shift.
	if len(res.Received) != len(payloads)+1 {
		t.Errorf("received %d events, want %d (one per payload, then the end marker)", len(res.Received), len(payloads)+1)
	}
	for i := 0; i < len(res.Received) && i <= len(payloads); i++ {
		got := res.Received[i]
		name, wantType, wantData := "end marker", "message", endMarker
		if i < len(payloads) {
			p := payloads[i]
			name, wantType, wantData = p.name, p.Event, p.want
			if wantType == "" {
				wantType = "message"
			}
			if s, ok := p.Data.(string); ok && p.want == "" {
				wantData = normalise(s)
			}
		}
		if got.Type != wantType {
			t.Errorf("event %d (%s): type %q, want %q", i, name, got.Type, wantType)
		}
		if got.Data != wantData {
			t.Errorf("event %d (%s): data %s, want %s", i, name, brief(got.Data), brief(wantData))
		}
		if got.LastEventID != res.Published[i].ID {
			t.Errorf("event %d (%s): lastEventId %q, want %q (returned by /publish)", i, name, got.LastEventID, res.Published[i].ID)
		}
	}
}

// pageResult is what page.mjs prints.
type pageResult struct {
	State   string `json:"state"`
	Results []struct {
		Text string `json:"text"`
		OK   bool   `json:"ok"`
	} `json:"results"`
	Events []struct {
		Type   string `json:"type"`
		ID     string `json:"id"`
		Data   string `json:"data"`
		Markup bool   `json:"markup"`
	} `json:"events"`
	After struct {
		State  string `json:"state"`
		Button string `json:"button"`
	} `json:"after"`
	Diagnostics []string `json:"diagnostics"`
}

// TestPageSubscribesAndPublishes uses the web page's forms (see page.mjs
// for the steps): it checks that the page works under its own
// Content-Security-Policy and shows event data as text.
func TestPageSubscribesAndPublishes(t *testing.T) {
	base := startHub(t)
	spec := map[string]any{"timeoutMs": 20000}
	if p := os.Getenv("HERALD_SCREENSHOT"); p != "" {
		spec["screenshot"] = p
	}
	var res pageResult
	runNode(t, "page.mjs", base, spec, &res)

	refused := 0 // the console reports the refused publish's 400
	for _, d := range res.Diagnostics {
		if strings.Contains(d, "Failed to load resource") && strings.Contains(d, "status of 400") {
			refused++
			continue
		}
		t.Errorf("page: %s", d)
	}
	if refused != 1 {
		t.Errorf("console reported %d failed requests, want 1 (the refused publish)", refused)
	}
	if res.State != "open" {
		t.Errorf("state after Subscribe %q, want open", res.State)
	}
	wantResults := []struct {
		ok   bool
		text string
	}{
		{true, "published, id "},
		{true, "published, id "},
		{true, `not listening for type "later"`},
		{true, "published, id "},
		{false, "reserved"},
		{true, "published, id "},
	}
	if len(res.Results) != len(wantResults) {
		t.Fatalf("publish results %+v, want %d", res.Results, len(wantResults))
	}
	var ids []string
	for i, w := range wantResults {
		r := res.Results[i]
		if r.OK != w.ok || !strings.Contains(r.Text, w.text) {
			t.Errorf("publish %d: shown %q (ok %v), want ok %v and %q", i, r.Text, r.OK, w.ok, w.text)
		}
		if r.OK {
			id, _, _ := strings.Cut(strings.TrimPrefix(r.Text, "published, id "), " ")
			ids = append(ids, id)
		}
	}
	if len(ids) != 5 {
		t.Fatalf("ids %q, want 5", ids)
	}

	want := []struct{ typ, id, data string }{
		{"message", ids[0], "<b>bold?</b> & <script>alert(1)</script>"},
		{"greeting", ids[1], "line 1\nline 2"},
		{"later", ids[3], "now listened for"},
		{"message", ids[4], "(empty)"},
	}
	if len(res.Events) != len(want) {
		t.Fatalf("page lists %d events %+v, want %d", len(res.Events), res.Events, len(want))
	}
	for i, w := range want {
		e := res.Events[i]
		if e.Type != w.typ || e.ID != "id "+w.id || e.Data != w.data || e.Markup {
			t.Errorf("event %d shown as %+v, want type %q, id %q, data %q as text", i, e, w.typ, w.id, w.data)
		}
	}
	if res.After.State != "not subscribed" || res.After.Button != "Subscribe" {
		t.Errorf("after Unsubscribe: %+v", res.After)
	}
}

// startHub serves a hub with the web page and returns its base URL. When
// HERALD_BROWSER is not 1 it skips the test; when it is, missing tools fail
// it.
func startHub(t *testing.T) string {
	t.Helper()
	requireBrowser(t)
	hub := &herald.Hub{}
	if err := hub.Open(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(&httpapi.Handler{Hub: hub, OpenPublish: true, Page: web.Handler()})
	// As herald serve does: plain HTTP/1.1 streams go through the engine
	// (hijacked connections), the path most browsers get.
	srv.Config.ConnContext = httpapi.ConnContext
	srv.Start()
	t.Cleanup(func() {
		// Close the hub first: it ends the streams, which Server.Close
		// would otherwise wait for.
		_ = hub.Close()
		srv.Close()
	})
	return srv.URL
}

// requireBrowser skips the test unless HERALD_BROWSER is 1; when it is,
// missing tools fail it.
func requireBrowser(t *testing.T) {
	t.Helper()
	if os.Getenv("HERALD_BROWSER") != "1" {
		t.Skip("browser test: set HERALD_BROWSER=1 after running scripts/install-test-deps.sh (scripts/test does both)")
	}
	chromium := os.Getenv("HERALD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("HERALD_BROWSER=1 but Chromium is missing (%v): run scripts/install-test-deps.sh", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("HERALD_BROWSER=1 but node is missing (%v): run scripts/install-test-deps.sh", err)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("HERALD_BROWSER=1 but e2e/node_modules lacks playwright-core (%v): run scripts/install-test-deps.sh", err)
	}
}

// runNode runs a script of this directory with the hub's URL and spec on
// stdin, and decodes the JSON it prints into out.
func runNode(t *testing.T, script, base string, spec any, out any) {
	t.Helper()
	checkNode(t, script, startNode(t, script, base, spec), out)
}

// nodeRun is a finished run of a browser script.
type nodeRun struct {
	stdout, stderr bytes.Buffer
	err            error
	took           time.Duration
}

// startNode runs a script in the background; the returned channel yields
// its run when it ends. It calls no testing.T method from its goroutine.
func startNode(t *testing.T, script, base string, spec any) <-chan *nodeRun {
	t.Helper()
	in, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	cmd := exec.CommandContext(ctx, "node", script, base, "-")
	// On timeout, let the script close Chromium before it is killed.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdin = bytes.NewReader(in)
	run := &nodeRun{}
	cmd.Stdout, cmd.Stderr = &run.stdout, &run.stderr
	done := make(chan *nodeRun, 1)
	go func() {
		defer cancel()
		start := time.Now()
		run.err = cmd.Run()
		run.took = time.Since(start)
		if ctx.Err() != nil {
			run.err = fmt.Errorf("%w (%v)", run.err, ctx.Err())
		}
		done <- run
	}()
	return done
}

// checkNode waits for a script's run and decodes the JSON it printed into
// out, failing the test if it did not complete.
func checkNode(t *testing.T, script string, done <-chan *nodeRun, out any) {
	t.Helper()
	run := <-done
	t.Logf("node %s: %v", script, run.took.Round(time.Millisecond))
	var exitErr *exec.ExitError
	if run.err != nil && !errors.As(run.err, &exitErr) {
		t.Fatalf("node %s: %v\nstderr:\n%s", script, run.err, run.stderr.String())
	}
	if jerr := json.Unmarshal(run.stdout.Bytes(), out); jerr != nil {
		t.Fatalf("node %s: %v; no JSON result (%v)\nstderr:\n%s\nstdout:\n%s", script, run.err, jerr, run.stderr.String(), brief(run.stdout.String()))
	}
	if run.err != nil {
		// The script printed what it saw before failing: check that too.
		t.Errorf("node %s: %v\nstderr:\n%s", script, run.err, run.stderr.String())
	}
}

// brief quotes s, shortened in the middle when long, so a 100 KiB payload
// does not flood the failure message.
func brief(s string) string {
	const keep = 120
	if len(s) <= 2*keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…(%d bytes)…%q", s[:keep], len(s), s[len(s)-keep:])
}
