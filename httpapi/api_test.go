package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

func TestStreamHeadersAndHello(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "news")
	for name, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := s.resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	status, ans := th.post(t, "application/x-www-form-urlencoded", "topic=news&data=hello")
	if status != http.StatusOK {
		t.Fatalf("form publish: %d %v", status, ans)
	}
	m := s.next(t)
	if m.Data != "hello" || m.Type != "message" || m.LastEventID != ans["id"] {
		t.Errorf("got %+v, want hello with id %v", m, ans["id"])
	}
}

func TestPublishJSON(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "a", "b")

	cases := []struct {
		body     string
		wantData string
		wantType string
	}{
		{`{"topic":"a","data":"plain text"}`, "plain text", "message"},
		{`{"topic":"a","data":"two\nlines"}`, "two\nlines", "message"},
		{`{"topic":"a","data":{"x": 1, "y": [true, null]}}`, `{"x":1,"y":[true,null]}`, "message"},
		{`{"topic":"a","data":42}`, "42", "message"},
		{`{"topic":"a","data":null}`, "", "message"},
		{`{"topic":"a"}`, "", "message"},
		{`{"topics":["a","b"],"data":"once","event":"greeting"}`, "once", "greeting"},
		{`{"topic":"b","topics":["a"],"data":"merged"}`, "merged", "message"},
	}
	for _, c := range cases {
		status, ans := th.post(t, "application/json; charset=utf-8", c.body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %v", c.body, status, ans)
		}
		m := s.next(t)
		if m.Data != c.wantData || m.Type != c.wantType || m.LastEventID != ans["id"] {
			t.Errorf("%s: got %+v, want data %q type %q id %v", c.body, m, c.wantData, c.wantType, ans["id"])
		}
	}

	status, ans := th.post(t, "application/json", `{"topic":"a","data":"r","id":"custom-1","retry":2500}`)
	if status != http.StatusOK || ans["id"] != "custom-1" {
		t.Fatalf("custom id: %d %v", status, ans)
	}
	if m := s.next(t); m.LastEventID != "custom-1" || s.dec.Retry() != 2500*time.Millisecond {
		t.Errorf("got %+v retry %v, want id custom-1 retry 2.5s", m, s.dec.Retry())
	}
}

func TestPublishBatch(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "*")
	status, ans := th.post(t, "application/json", `[{"topic":"a","data":"1"},{"topic":"b","data":"2","id":"two"},{"topic":"c","data":"3"}]`)
	if status != http.StatusOK {
		t.Fatalf("batch: %d %v", status, ans)
	}
	ids, _ := ans["ids"].([]any)
	if len(ids) != 3 || ids[1] != "two" {
		t.Fatalf("ids = %v", ans["ids"])
	}
	for i, want := range []string{"1", "2", "3"} {
		if m := s.next(t); m.Data != want || m.LastEventID != ids[i] {
			t.Errorf("event %d = %+v, want %s with id %v", i, m, want, ids[i])
		}
	}
}

func TestFormPublishFields(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "x", "y")
	status, ans := th.post(t, "application/x-www-form-urlencoded",
		"topic=x&topic=y&data=line1%0Aline2&event=update&id=f-1&retry=100")
	if status != http.StatusOK || ans["id"] != "f-1" {
		t.Fatalf("form publish: %d %v", status, ans)
	}
	m := s.next(t)
	if m.Data != "line1\nline2" || m.Type != "update" || m.LastEventID != "f-1" || s.dec.Retry() != 100*time.Millisecond {
		t.Errorf("got %+v retry %v", m, s.dec.Retry())
	}
}

// Every bad request gets its status and a JSON error, and publishes
// nothing: a subscriber to everything sees only the event sent after them.
func TestBadInput(t *testing.T) {
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) {
		h.MaxBodyBytes = 1024
		h.MaxSelectors = 3
		h.Page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	})
	watcher := th.subscribe(t, "*")
	manyTopics := `{"topics":[` + strings.Repeat(`"t",`, herald.MaxEventTopics) + `"last"]}`

	const form = "application/x-www-form-urlencoded"
	const js = "application/json"
	cases := []struct {
		name, method, path, contentType, body string
		status                                int
		errContains                           string
	}{
		{"malformed JSON", "POST", "/publish", js, `{"topic":"a",`, 400, "malformed JSON"},
		{"JSON syntax error", "POST", "/publish", js, `{"topic" "a"}`, 400, "malformed JSON at byte"},
		{"JSON not an object", "POST", "/publish", js, `"hello"`, 400, "JSON object"},
		{"JSON trailing data", "POST", "/publish", js, `{"topic":"a"} {"topic":"b"}`, 400, "after the body"},
		{"JSON wrong field type", "POST", "/publish", js, `{"topic":5}`, 400, `field "topic"`},
		{"JSON unknown field", "POST", "/publish", js, `{"topic":"a","dta":"x"}`, 400, `unknown field "dta"`},
		{"empty body", "POST", "/publish", js, ``, 400, "empty body"},
		{"empty batch", "POST", "/publish", js, `[]`, 400, "empty batch"},
		{"missing topic JSON", "POST", "/publish", js, `{"data":"x"}`, 400, `missing "topic"`},
		{"missing topic in batch", "POST", "/publish", js, `[{"topic":"a"},{"data":"x"}]`, 400, `event 1: missing "topic"`},
		{"missing topic form", "POST", "/publish", form, `data=x`, 400, `missing "topic"`},
		{"empty topic", "POST", "/publish", js, `{"topics":["a",""]}`, 400, "empty topic"},
		{"id earliest", "POST", "/publish", js, `{"topic":"a","id":"earliest"}`, 400, "reserved"},
		{"id with control character", "POST", "/publish", js, `{"topic":"a","id":"a\u0001b"}`, 400, "control character"},
		{"id with surrounding space", "POST", "/publish", form, `topic=a&id=+x`, 400, "space"},
		{"id shaped like the hub's", "POST", "/publish", js, `{"topic":"a","id":"abcdefghijkl-5"}`, 400, "hub-generated"},
		{"id twice in a batch", "POST", "/publish", js, `[{"topic":"a","id":"twice"},{"topic":"a","id":"twice"}]`, 409, "already used"},
		{"reserved topic", "POST", "/publish", js, `{"topic":"*"}`, 400, "reserved"},
		{"id with LF", "POST", "/publish", js, `{"topic":"a","id":"a\nb"}`, 400, "id must not contain"},
		{"id with CR", "POST", "/publish", form, `topic=a&id=a%0Db`, 400, "id must not contain"},
		{"id with NUL", "POST", "/publish", js, `{"topic":"a","id":"a\u0000b"}`, 400, "id must not contain"},
		{"event with LF", "POST", "/publish", js, `{"topic":"a","event":"x\ny"}`, 400, "event type must not contain"},
		{"event with CR", "POST", "/publish", form, `topic=a&event=x%0Dy`, 400, "event type must not contain"},
		{"negative retry", "POST", "/publish", js, `{"topic":"a","retry":-1}`, 400, `"retry"`},
		{"fractional retry", "POST", "/publish", js, `{"topic":"a","retry":1.5}`, 400, `field "retry"`},
		{"non-digit retry form", "POST", "/publish", form, `topic=a&retry=soon`, 400, `"retry"`},
		{"invalid UTF-8 form data", "POST", "/publish", form, `topic=a&data=%FF`, 400, "UTF-8"},
		{"unknown form field", "POST", "/publish", form, `topic=a&colour=red`, 400, `unknown field "colour"`},
		{"repeated form field", "POST", "/publish", form, `topic=a&data=1&data=2`, 400, `"data" given 2 times`},
		{"malformed form", "POST", "/publish", form, `topic=%zz`, 400, "malformed form"},
		{"body too large", "POST", "/publish", js, `{"topic":"a","data":"` + strings.Repeat("x", 2000) + `"}`, 413, "larger than 1024 bytes"},
		{"no content type", "POST", "/publish", "", `{"topic":"a"}`, 415, "Content-Type"},
		{"text content type", "POST", "/publish", "text/plain", `hello`, 415, "Content-Type"},
		{"GET publish", "GET", "/publish", "", ``, 405, "not allowed"},
		{"PUT publish", "PUT", "/publish", js, `{"topic":"a"}`, 405, "not allowed"},
		{"POST events", "POST", "/events?topic=a", js, `{}`, 405, "not allowed"},
		{"DELETE healthz", "DELETE", "/healthz", "", ``, 405, "not allowed"},
		{"stream without topic", "GET", "/events", "", ``, 400, `missing "topic"`},
		{"stream with empty topic", "GET", "/events?topic=", "", ``, 400, "empty topic"},
		{"stream with control char", "GET", "/events?topic=a%00", "", ``, 400, "control character"},
		{"unknown path", "GET", "/nope", "", ``, 404, "not found"},
		{"invalid UTF-8 JSON", "POST", "/publish", js, "{\"topic\":\"a\",\"data\":\"\xff\"}", 400, "not valid UTF-8"},
		{"too many topics", "POST", "/publish", js, manyTopics, 400, "at most 100"},
		{"too many selectors", "GET", "/events?topic=a&topic=b&topic=c&topic=d", "", ``, 400, "too many topic selectors"},
		{"duplicate selectors count once", "GET", "/events?topic=a&topic=a&topic=a&topic=a&topic=", "", ``, 400, "empty topic"},
		{"malformed query", "GET", "/events?topic=a;b", "", ``, 400, "malformed query"},
		{"stream with a body", "GET", "/events?topic=a", js, `{}`, 400, "must not have a body"},
		{"POST page", "POST", "/", form, `x=1`, 405, "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, th.srv.URL+c.path, strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			resp, err := th.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d", resp.StatusCode, c.status)
			}
			if c.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
			ans := decodeJSONBody(t, resp)
			if msg, _ := ans["error"].(string); !strings.Contains(msg, c.errContains) {
				t.Errorf("error %q does not contain %q", msg, c.errContains)
			}
			if n := th.logs.take("request rejected"); n != 1 {
				t.Errorf("logged %d times, want once", n)
			}
		})
	}

	th.publishJSON(t, map[string]any{"topic": "after", "data": "sentinel"})
	if m := watcher.next(t); m.Data != "sentinel" {
		t.Errorf("a rejected request published %+v", m)
	}
	if st := th.hub.Stats(); st.Published != 1 {
		t.Errorf("published %d events, want only the sentinel", st.Published)
	}
}

func TestHealthz(t *testing.T) {
	th := startHub(t, nil)
	resp, err := th.client.Get(th.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ans := decodeJSONBody(t, resp); resp.StatusCode != 200 || ans["status"] != "ok" {
		t.Errorf("healthz: %d %v", resp.StatusCode, ans)
	}
}

func TestPageServedAtRoot(t *testing.T) {
	th := startHub(t, func(_ *herald.Hub, h *httpapi.Handler) {
		h.Page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	})
	resp, err := th.client.Get(th.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "page" {
		t.Errorf("GET / = %q", body)
	}
}

func TestHubCloseEndsStreamsAfterQueuedEvents(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "t")
	if _, err := th.hub.Publish(herald.Event{Topics: []string{"t"}, Data: "before close"}); err != nil {
		t.Fatal(err)
	}
	th.hub.Close()
	if m := s.next(t); m.Data != "before close" {
		t.Errorf("got %+v", m)
	}
	if _, err := s.dec.Next(); err != io.EOF {
		t.Errorf("after hub close: %v, want a clean end of stream", err)
	}
	status, ans := th.post(t, "application/json", `{"topic":"t"}`)
	if status != http.StatusServiceUnavailable {
		t.Errorf("publish to a closed hub: %d %v", status, ans)
	}
}

func TestHeartbeatOnTheWire(t *testing.T) {
	th := startHub(t, func(hub *herald.Hub, _ *httpapi.Handler) { hub.Heartbeat = 5 * time.Millisecond })
	conn, br := rawStream(t, th.srv.Listener.Addr().String(), "quiet", nil)
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Chunked encoding: a size line, then the heartbeat comment itself.
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no heartbeat: %v", err)
		}
		if line == ":\n" {
			return
		}
	}
}

func TestClientDisconnectFreesSubscription(t *testing.T) {
	th := startHub(t, nil)
	s := th.subscribe(t, "t")
	if st := th.hub.Stats(); st.Subscribers != 1 {
		t.Fatalf("subscribers = %d", st.Subscribers)
	}
	s.close()
	waitFor(t, "the hub to forget the closed stream", func() bool {
		return th.hub.Stats().Subscribers == 0 && th.handler.ActiveStreams() == 0
	})
}

// Streams live for hours: the server must bound how long headers take
// (slowloris) but set no absolute read or write timeout, either of which
// would end every stream.
func TestNewServerTimeoutsSpareStreams(t *testing.T) {
	srv := httpapi.NewServer(":0", http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 {
		t.Error("no ReadHeaderTimeout")
	}
	if srv.WriteTimeout != 0 || srv.ReadTimeout != 0 {
		t.Errorf("WriteTimeout %v, ReadTimeout %v: both would cut streams", srv.WriteTimeout, srv.ReadTimeout)
	}
}
