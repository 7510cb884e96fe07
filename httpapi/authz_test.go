package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/httpapi"
	"github.com/herald-sse/herald/sse"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef")
	otherSecret = []byte("fedcba9876543210fedcba9876543210")
)

// mint signs a token for subject alice with the given rights
// (space-separated selectors), expiring after ttl (negative: expired).
func mint(t *testing.T, secret []byte, ttl time.Duration, publish, subscribe string) string {
	t.Helper()
	rights := map[string][]string{"publish": strings.Fields(publish), "subscribe": strings.Fields(subscribe)}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":    "alice",
		"exp":    time.Now().Add(ttl).Unix(),
		"herald": rights,
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startAuthHub serves a hub whose publishers and subscribers need tokens
// signed with testSecret.
func startAuthHub(t *testing.T, anonymous bool) *transportHub {
	t.Helper()
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	return startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.PublishAuth, h.SubscribeAuth, h.Anonymous = v, v, anonymous
	})
}

type authAnswer struct {
	status                int
	reason, challenge, to string
}

func (th *transportHub) do(t *testing.T, method, path, token, body string) authAnswer {
	t.Helper()
	req, _ := http.NewRequest(method, th.srv.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := th.client(false, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := authAnswer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate")}
	if resp.StatusCode != http.StatusOK {
		var b struct{ Error, Reason string }
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			t.Fatalf("%s %s: %d without a JSON body: %v", method, path, resp.StatusCode, err)
		}
		a.reason = b.Reason
	}
	return a
}

func TestPublishNeedsRights(t *testing.T) {
	th := startAuthHub(t, false)
	watcher := th.subscribe(t, mint(t, testSecret, time.Hour, "", "*"), "*")
	event := `{"topic":"news","data":"x"}`
	for _, tc := range []struct {
		name, token, body string
		status            int
		reason, challenge string
	}{
		{"no token", "", event, 401, "missing", `Bearer realm="herald"`},
		{"expired", mint(t, testSecret, -time.Hour, "*", ""), event, 401, "expired", `error="invalid_token"`},
		{"wrong key", mint(t, otherSecret, time.Hour, "*", ""), event, 401, "bad_signature", `error="invalid_token"`},
		{"garbage", "not.a.token", event, 401, "malformed", `error="invalid_token"`},
		{"no right", mint(t, testSecret, time.Hour, "sports", ""), event, 403, "insufficient_scope", `error="insufficient_scope"`},
		{"batch with one forbidden topic", mint(t, testSecret, time.Hour, "news", ""), `[{"topic":"news","data":"x"},{"topic":"sports","data":"y"}]`, 403, "insufficient_scope", "insufficient_scope"},
	} {
		got := th.do(t, http.MethodPost, "/publish", tc.token, tc.body)
		if got.status != tc.status || got.reason != tc.reason || !strings.Contains(got.challenge, tc.challenge) {
			t.Errorf("%s: %+v, want %d %s with a challenge containing %s", tc.name, got, tc.status, tc.reason, tc.challenge)
		}
		if n := th.logs.take("request rejected"); n != 1 {
			t.Errorf("%s: logged %d times", tc.name, n)
		}
	}
	// A right for the topic publishes; nothing refused above reached anyone.
	if got := th.do(t, http.MethodPost, "/publish", mint(t, testSecret, time.Hour, "news", ""), `{"topic":"news","data":"allowed"}`); got.status != 200 {
		t.Fatalf("publish with the right: %+v", got)
	}
	if m := watcher.next(t); m.Data != "allowed" {
		t.Fatalf("first event seen: %q, want the allowed one", m.Data)
	}
}

func TestSubscribeNeedsRights(t *testing.T) {
	for _, anonymous := range []bool{false, true} {
		th := startAuthHub(t, anonymous)
		news := mint(t, testSecret, time.Hour, "", "news")
		// With anonymous access, public topics are open to everyone, so
		// a token's rights no longer bound what it may ask for.
		want := map[string]int{"no token": 401, "all without *": 403, "other topic": 403}
		if anonymous {
			want = map[string]int{"no token": 200, "all without *": 200, "other topic": 200}
		}
		for name, tc := range map[string]struct {
			token, query string
			status       int
		}{
			"no token":         {"", "topic=news", want["no token"]},
			"invalid token":    {mint(t, otherSecret, time.Hour, "", "*"), "topic=news", 401},
			"right":            {news, "topic=news", 200},
			"all without *":    {news, "topic=*", want["all without *"]},
			"other topic":      {news, "topic=news&topic=sports", want["other topic"]},
			"all with *":       {mint(t, testSecret, time.Hour, "", "*"), "topic=*", 200},
			"expired":          {mint(t, testSecret, -time.Minute, "", "*"), "topic=news", 401},
			"token in a query": {"", "topic=news&access_token=" + url.QueryEscape(news), 200},
		} {
			got := th.do(t, http.MethodGet, "/events?"+tc.query, tc.token, "")
			if got.status != tc.status {
				t.Errorf("anonymous %v, %s: status %d (reason %s), want %d", anonymous, name, got.status, got.reason, tc.status)
			}
			if got.status == 401 && !strings.HasPrefix(got.challenge, "Bearer") {
				t.Errorf("anonymous %v, %s: 401 without a Bearer challenge", anonymous, name)
			}
		}
	}
}

// subscribe opens a stream with a token and waits for its headers.
func (th *transportHub) subscribe(t *testing.T, token string, topics ...string) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/events?"+url.Values{"topic": topics}.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := th.client(false, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe: status %d", resp.StatusCode)
	}
	s := &stream{resp: resp, dec: sse.NewDecoder(resp.Body)}
	t.Cleanup(s.close)
	return s
}

// 100 streams of mixed identities (anonymous; users with rights on some
// topics; an admin with every right) and a mix of public, private and
// user-targeted events: every stream gets exactly what it may see, live,
// and the same when it resumes from the start.
func TestPrivateAndTargetedOverHTTP(t *testing.T) {
	th := startAuthHub(t, true)
	topics := []string{"t0", "t1", "t2"}
	type client struct {
		token   string
		subject string
		rights  []string
		topics  []string
	}
	var clients []client
	for i := range 100 {
		c := client{topics: []string{topics[i%3], topics[(i+1)%3]}}
		switch i % 3 {
		case 1:
			c.subject, c.rights = "u"+strconv.Itoa(i%7), []string{topics[i%3]}
		case 2:
			c.subject, c.rights = "admin", []string{"*"}
		}
		if c.subject != "" {
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
				"sub": c.subject, "exp": time.Now().Add(time.Hour).Unix(),
				"herald": map[string][]string{"subscribe": c.rights},
			}).SignedString(testSecret)
			if err != nil {
				t.Fatal(err)
			}
			c.token = tok
		}
		clients = append(clients, c)
	}
	type ev struct {
		topic, data string
		private     bool
		to          []string
	}
	var events []ev
	for i := range 120 {
		e := ev{topic: topics[i%3], data: strconv.Itoa(i)}
		switch i % 4 {
		case 1:
			e.private = true
		case 2:
			e.to = []string{"u" + strconv.Itoa(i%7)}
		case 3:
			e.private, e.to = true, []string{"admin"}
		}
		events = append(events, e)
	}
	may := func(c client, e ev) bool {
		if !slices.Contains(c.topics, e.topic) {
			return false
		}
		if e.private && !slices.Contains(c.rights, "*") && !slices.Contains(c.rights, e.topic) {
			return false
		}
		return len(e.to) == 0 || slices.Contains(e.to, c.subject)
	}
	open := func(c client, lastID string) *sse.Decoder {
		q := url.Values{"topic": c.topics}
		if lastID != "" {
			q.Set("lastEventId", lastID)
		}
		req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/events?"+q.Encode(), nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := th.client(false, nil).Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return sse.NewDecoder(resp.Body)
	}
	decs := make([]*sse.Decoder, len(clients))
	for i, c := range clients {
		decs[i] = open(c, "")
	}
	admin := mint(t, testSecret, time.Hour, "*", "")
	for _, e := range events {
		body, _ := json.Marshal(map[string]any{"topic": e.topic, "data": e.data, "private": e.private, "to": map[string]any{"users": e.to}})
		if len(e.to) == 0 {
			body, _ = json.Marshal(map[string]any{"topic": e.topic, "data": e.data, "private": e.private})
		}
		if got := th.do(t, http.MethodPost, "/publish", admin, string(body)); got.status != 200 {
			t.Fatalf("publish %s: %+v", body, got)
		}
	}
	for _, tp := range topics { // a public end marker on every topic
		th.do(t, http.MethodPost, "/publish", admin, `{"topic":"`+tp+`","data":"END"}`)
	}
	read := func(dec *sse.Decoder) []string {
		var got []string
		for {
			m, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if m.Data == "END" {
				return got
			}
			got = append(got, m.Data)
		}
	}
	restricted := 0
	for i, c := range clients {
		var want []string
		for _, e := range events {
			if may(c, e) {
				want = append(want, e.data)
				if e.private || len(e.to) > 0 {
					restricted++
				}
			}
		}
		if got := read(decs[i]); !slices.Equal(got, want) {
			t.Fatalf("client %d (%q, rights %v) live: %v, want %v", i, c.subject, c.rights, got, want)
		}
		if got := read(open(c, herald.Earliest)); !slices.Equal(got, want) {
			t.Fatalf("client %d replay: %v, want %v", i, got, want)
		}
	}
	if restricted == 0 {
		t.Fatal("no restricted event was delivered to anyone: the test proves nothing")
	}
}

// At most MaxConnectionsPerSubject streams per user, whatever address
// they come from.
func TestMaxConnectionsPerSubject(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.SubscribeAuth, h.MaxConnectionsPerSubject = v, 2
	})
	alice := mint(t, testSecret, time.Hour, "", "*")
	first := th.subscribe(t, alice, "a")
	th.subscribe(t, alice, "b")
	if got := th.do(t, http.MethodGet, "/events?topic=c", alice, ""); got.status != http.StatusTooManyRequests {
		t.Fatalf("third stream of one user: %+v, want 429", got)
	}
	first.close()
	waitFor(t, "the slot to be released", func() bool { return th.handler.ActiveStreams() == 1 })
	th.subscribe(t, alice, "c")
}

// Each publisher gets PublishRate events per second with bursts of
// PublishBurst; beyond, 429 with Retry-After. Publishers do not share a
// bucket.
func TestPublishRateLimit(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	th := startTransport(t, "engine", func(_ *herald.Hub, h *httpapi.Handler) {
		h.PublishAuth, h.PublishRate, h.PublishBurst = v, 0.5, 3 // a slow refill: the test never waits for it
	})
	sign := func(sub string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "herald": map[string][]string{"publish": {"*"}},
		}).SignedString(testSecret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob := sign("alice"), sign("bob")
	if got := th.do(t, http.MethodPost, "/publish", alice, `[{"topic":"a"},{"topic":"a"}]`); got.status != 200 {
		t.Fatalf("a batch within the burst: %+v", got)
	}
	if got := th.do(t, http.MethodPost, "/publish", alice, `{"topic":"a"}`); got.status != 200 {
		t.Fatalf("the burst's last event: %+v", got)
	}
	req, _ := http.NewRequest(http.MethodPost, th.srv.URL+"/publish", strings.NewReader(`{"topic":"a"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := th.client(false, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := th.do(t, http.MethodPost, "/publish", bob, `{"topic":"a"}`); got.status != 200 {
		t.Fatalf("another publisher: %+v", got)
	}
	if got := th.do(t, http.MethodPost, "/publish", bob, `[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]`); got.status != http.StatusTooManyRequests {
		t.Fatalf("a batch over the burst: %+v", got)
	}
}

// With AnnounceConnections, each stream first learns its connection ID;
// an event sent to that ID reaches that stream only; GET /connections
// (publishers only) lists the open streams.
func TestConnectionsAnnouncedTargetedListed(t *testing.T) {
	for _, mode := range []string{"engine", "goroutine"} {
		t.Run(mode, func(t *testing.T) {
			v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: testSecret})
			if err != nil {
				t.Fatal(err)
			}
			th := startTransport(t, mode, func(_ *herald.Hub, h *httpapi.Handler) {
				h.PublishAuth, h.SubscribeAuth, h.Anonymous, h.AnnounceConnections = v, v, true, true
			})
			connected := func(s *stream) string {
				t.Helper()
				m := s.next(t)
				var d struct{ Connection string }
				if m.Type != "herald.connected" || json.Unmarshal([]byte(m.Data), &d) != nil || d.Connection == "" || m.LastEventID != "" {
					t.Fatalf("first event %+v, want %s with a connection id and no event id", m, "herald.connected")
				}
				return d.Connection
			}
			a := th.subscribe(t, mint(t, testSecret, time.Hour, "", "news"), "news")
			b := th.subscribe(t, "", "news")
			idA, idB := connected(a), connected(b)
			if idA == idB {
				t.Fatal("two streams share a connection id")
			}
			admin := mint(t, testSecret, time.Hour, "*", "")
			if got := th.do(t, http.MethodPost, "/publish", admin, `{"topic":"news","data":"for a","to":{"connections":["`+idA+`"]}}`); got.status != 200 {
				t.Fatalf("targeted publish: %+v", got)
			}
			th.do(t, http.MethodPost, "/publish", admin, `{"topic":"news","data":"for all"}`)
			if m := a.next(t); m.Data != "for a" {
				t.Fatalf("a got %q first, want the event sent to it", m.Data)
			}
			if m := b.next(t); m.Data != "for all" {
				t.Fatalf("b got %q first: the event sent to a leaked", m.Data)
			}

			if got := th.do(t, http.MethodGet, "/connections", "", ""); got.status != http.StatusUnauthorized {
				t.Fatalf("/connections without a token: %+v", got)
			}
			req, _ := http.NewRequest(http.MethodGet, th.srv.URL+"/connections", nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			resp, err := th.client(false, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var list struct {
				Connections []struct {
					ID, Subject, Remote string
					Topics              []string
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				t.Fatal(err)
			}
			subjects := map[string]string{}
			for _, c := range list.Connections {
				subjects[c.ID] = c.Subject
				if c.Remote == "" || !slices.Equal(c.Topics, []string{"news"}) {
					t.Errorf("connection %+v lacks its remote address or topics", c)
				}
			}
			if len(subjects) != 2 || subjects[idA] != "alice" || subjects[idB] != "" {
				t.Fatalf("listed %+v, want %s (alice) and %s (anonymous)", list.Connections, idA, idB)
			}
			b.close()
			waitFor(t, "the closed stream to leave the list", func() bool { return th.handler.ActiveStreams() == 1 })
		})
	}
}
