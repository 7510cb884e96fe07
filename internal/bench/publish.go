package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// publisher sends numbered, timestamped events from one goroutine, one
// request at a time, so they arrive in order: each request is accepted
// before the next is sent, also when the requests go to different nodes
// of a cluster in turn (a clustered Herald orders events in its shared
// log, and every node delivers in that order). The send time in each
// event is this machine's clock, as is the receive time the streams
// compare it with, whichever node delivers the event.
type publisher struct {
	client    *http.Client
	urls      []string // taking requests in turn
	next      int      // index in urls of the next request
	json      bool
	topicForm string // topic, form-escaped
	topicJSON []byte // topic as a JSON string
	header    http.Header
	size      int
	tag       [runTagLen]byte
	batch     int

	seq      uint64        // events accepted so far (the last sequence number)
	sent     atomic.Uint64 // seq, for the progress line
	requests int64
	errors   int64
	rtt      Histogram
	body     []byte
}

func newPublisher(p *plan) *publisher {
	topicJSON, _ := json.Marshal(p.topic)
	return &publisher{
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1, DisableCompression: true},
		},
		urls:      p.publishURLs,
		json:      p.format == "json",
		topicForm: url.QueryEscape(p.topic),
		topicJSON: topicJSON,
		header:    p.cfg.PublishHeader,
		size:      p.cfg.Size,
		tag:       runTag(p.runID),
		batch:     p.cfg.Batch,
	}
}

// send publishes events seq+1 … seq+n in one request.
func (p *publisher) send(ctx context.Context, n int) error {
	ts := time.Now().UnixNano()
	b := p.body[:0]
	if p.json {
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"topics":[`...)
			b = append(b, p.topicJSON...)
			b = append(b, `],"data":"`...)
			b = appendPayload(b, &p.tag, p.seq+uint64(i)+1, ts, p.size)
			b = append(b, `"}`...)
		}
		b = append(b, ']')
	} else {
		b = append(b, "topic="...)
		b = append(b, p.topicForm...)
		b = append(b, "&data="...)
		b = appendPayload(b, &p.tag, p.seq+1, ts, p.size)
	}
	p.body = b
	u := p.urls[p.next]
	p.next = (p.next + 1) % len(p.urls)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	if p.json {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	p.requests++
	if err != nil {
		p.errors++
		return fmt.Errorf("publish: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		p.errors++
		return fmt.Errorf("publish: POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	p.rtt.Record(int64(time.Since(start)))
	p.seq += uint64(n)
	p.sent.Store(p.seq)
	return nil
}

// progress is what the publisher needs from the streams in the closed
// loop.
type progress interface {
	// minSeq is the highest sequence number every live stream has
	// received; math.MaxUint64 when no stream is live.
	minSeq() uint64
	// changed is signalled when minSeq may have risen.
	changed() <-chan struct{}
}

// run publishes until the duration or event count is reached, ctx is
// done, or a request fails.
func (p *publisher) run(ctx context.Context, cfg *Config, streams progress) error {
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	limit := uint64(math.MaxUint64)
	if cfg.Events > 0 {
		limit = uint64(cfg.Events)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// wait sleeps for d or until the streams progress (when notify), and
	// reports false when publishing must stop.
	wait := func(d time.Duration, notify <-chan struct{}) bool {
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-timer.C:
		case <-notify:
		}
		return true
	}
	start := time.Now()
	for p.seq < limit {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		default:
		}
		n := uint64(p.batch)
		if cfg.Rate > 0 {
			// Events due by now, the first at once.
			due := uint64(time.Since(start).Seconds()*cfg.Rate) + 1
			if due <= p.seq {
				next := start.Add(time.Duration(float64(p.seq) / cfg.Rate * float64(time.Second)))
				if !wait(time.Until(next), nil) {
					return nil
				}
				continue
			}
			n = min(n, due-p.seq)
		} else {
			m := streams.minSeq()
			if m == math.MaxUint64 {
				return fmt.Errorf("publish: no stream is left open")
			}
			window := uint64(cfg.Window)
			m = min(m, p.seq)
			if p.seq-m >= window {
				if !wait(10*time.Millisecond, streams.changed()) {
					return nil
				}
				continue
			}
			n = min(n, window-(p.seq-m))
		}
		n = min(n, limit-p.seq)
		if err := p.send(ctx, int(n)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}
