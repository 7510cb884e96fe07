package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokertest"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/redis"
)

// timeout bounds each wait of these tests; only a failing test reaches it.
const timeout = 20 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// rawClient is a plain client of the Redis at url, for what a test does
// behind the broker's back.
func rawClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// newPrefix returns a prefix no other test uses, and deletes its keys
// when t ends: the shared Redis holds other logs.
func newPrefix(t testing.TB, url string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "herald-test-" + hex.EncodeToString(b[:])
	c := rawClient(t, url)
	t.Cleanup(func() { deleteKeys(t, c, prefix) })
	return prefix
}

// deleteKeys deletes every key of the log named prefix.
func deleteKeys(t testing.TB, c *goredis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "{"+prefix+"}:*").Result()
	if err != nil {
		t.Errorf("listing the test's keys: %v", err)
		return
	}
	if len(keys) > 0 {
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Errorf("deleting the test's keys: %v", err)
		}
	}
}

func open(t testing.TB, opts redis.Options) *redis.Broker {
	t.Helper()
	b, err := redis.Open(ctxT(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBroker(t *testing.T) {
	url := servicetest.RedisURL(t)
	brokertest.Run(t, func(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
		opts := redis.Options{URL: url, Prefix: newPrefix(t, url), Retention: r}
		b := unreadableAppender{open(t, opts), rawClient(t, url), opts.Prefix}
		return b, func() herald.Broker { return open(t, opts) }
	})
}

// unreadableAppender is a broker that can also write, behind its back,
// an entry it cannot read (as a newer version of Herald might), for
// brokertest.
type unreadableAppender struct {
	*redis.Broker
	raw    *goredis.Client
	prefix string
}

var _ brokertest.UnreadableAppender = unreadableAppender{}

func (u unreadableAppender) AppendUnreadable(ctx context.Context) (uint64, error) {
	if _, _, err := u.Head(ctx); err != nil { // makes the log if there is none
		return 0, err
	}
	log, epochKey := "{"+u.prefix+"}:log", "{"+u.prefix+"}:epoch"
	epoch, err := u.raw.Get(ctx, epochKey).Result()
	if err != nil {
		return 0, err
	}
	prev := "0-0"
	last, err := u.raw.XRevRangeN(ctx, log, "+", "-", 1).Result()
	if err != nil {
		return 0, err
	}
	if len(last) > 0 {
		prev = last[0].ID
	}
	// A well-formed entry of the log, whose record is of a version this
	// one does not read.
	id, err := u.raw.XAdd(ctx, &goredis.XAddArgs{Stream: log, Values: []any{"e", epoch, "p", prev, "r", `{"v":99}`}}).Result()
	if err != nil {
		return 0, err
	}
	return redis.Position(id)
}

func rec(data string) herald.Record {
	return herald.Record{Topics: []string{"t"}, Data: data, Time: time.Now()}
}

// follower runs Follow in the background and hands on copies of its
// batches.
type follower struct {
	batches chan herald.Batch
	done    chan error
	cancel  context.CancelFunc
}

func startFollow(t *testing.T, b herald.Broker, epoch string, after uint64) *follower {
	ctx, cancel := context.WithCancel(ctxT(t))
	f := &follower{batches: make(chan herald.Batch, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		f.done <- b.Follow(ctx, epoch, after, func(bt herald.Batch) error {
			bt.Records = slices.Clone(bt.Records)
			f.batches <- bt
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

func (f *follower) next(t *testing.T) herald.Batch {
	t.Helper()
	select {
	case bt := <-f.batches:
		return bt
	case err := <-f.done:
		t.Fatalf("Follow returned %v, want another batch", err)
	case <-time.After(timeout):
		t.Fatal("no batch")
	}
	return herald.Batch{}
}

// TestOutage stops a private Redis under a broker: publishing and
// following fail fast with ErrBrokerUnavailable, and once Redis is back
// (with its append-only file) the log goes on where it was.
func TestOutage(t *testing.T) {
	srv := servicetest.StartRedis(t)
	b := open(t, redis.Options{URL: srv.URL})
	before := []herald.Record{rec("before")}
	epoch, err := b.Append(ctxT(t), before)
	if err != nil {
		t.Fatal(err)
	}
	f := startFollow(t, b, epoch, 0)
	if bt := f.next(t); bt.Records[0].Data != "before" {
		t.Fatalf("followed %+v", bt)
	}

	srv.Stop()
	start := time.Now()
	if _, err := b.Append(ctxT(t), []herald.Record{rec("during")}); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Append while Redis is down = %v, want ErrBrokerUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Append while Redis is down took %v", d)
	}
	select {
	case err := <-f.done:
		if !errors.Is(err, herald.ErrBrokerUnavailable) {
			t.Errorf("Follow while Redis is down = %v, want ErrBrokerUnavailable", err)
		}
		f.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Error("Follow did not return while Redis was down")
	}
	if _, _, err := b.Head(ctxT(t)); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Head while Redis is down = %v, want ErrBrokerUnavailable", err)
	}

	srv.Start()
	after := []herald.Record{rec("after")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := b.Append(ctxT(t), after)
		if err == nil {
			if e != epoch {
				t.Errorf("epoch %q after the restart, was %q", e, epoch)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append after Redis restarted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("publishing worked again %v after the restart", d)
	}
	bt := startFollow(t, b, epoch, before[0].Position).next(t)
	if bt.Epoch != epoch || bt.Lost || len(bt.Records) != 1 || bt.Records[0].Position != after[0].Position || bt.Records[0].Data != "after" {
		t.Errorf("following on from before the outage: %+v; want epoch %q, not lost, the record at %d", bt, epoch, after[0].Position)
	}
}

// TestWipe deletes a log's keys under a follower: it goes on with the
// new log, from its start, under the new epoch.
func TestWipe(t *testing.T) {
	url := servicetest.RedisURL(t)
	for _, c := range []struct {
		name string
		keys []string // deleted; nil for all
	}{
		{"All", nil},
		{"StreamOnly", []string{"log"}},
		{"EpochOnly", []string{"epoch"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := newPrefix(t, url)
			b := open(t, redis.Options{URL: url, Prefix: prefix})
			other := open(t, redis.Options{URL: url, Prefix: prefix})
			old := []herald.Record{rec("old 1"), rec("old 2")}
			epoch, err := b.Append(ctxT(t), old)
			if err != nil {
				t.Fatal(err)
			}
			f := startFollow(t, b, epoch, 0)
			if bt := f.next(t); len(bt.Records) != 2 {
				t.Fatalf("followed %+v", bt)
			}
			raw := rawClient(t, url)
			if c.keys == nil {
				deleteKeys(t, raw, prefix)
			} else {
				for _, k := range c.keys {
					raw.Del(ctxT(t), "{"+prefix+"}:"+k)
				}
			}
			time.Sleep(1500 * time.Millisecond) // let the follower block on the wiped log
			fresh := []herald.Record{rec("new 1"), rec("new 2")}
			e2, err := other.Append(ctxT(t), fresh)
			if err != nil {
				t.Fatal(err)
			}
			if e2 == epoch {
				t.Fatalf("the wiped log kept its epoch %q", epoch)
			}
			var got []herald.Record
			for len(got) < 2 {
				bt := f.next(t)
				if bt.Epoch != e2 || bt.Lost {
					t.Fatalf("batch after the wipe: epoch %q lost %v, want %q false", bt.Epoch, bt.Lost, e2)
				}
				got = append(got, bt.Records...)
			}
			if got[0].Data != "new 1" || got[1].Data != "new 2" || got[0].Position != fresh[0].Position {
				t.Errorf("after the wipe followed %+v, want %+v", got, fresh)
			}
			if e, _, err := b.Head(ctxT(t)); err != nil || e != e2 {
				t.Errorf("Head = %q, %v; want %q", e, err, e2)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnreadableEntry writes an entry the broker cannot decode into the
// log: followers skip it, log it, and report the gap.
func TestUnreadableEntry(t *testing.T) {
	url := servicetest.RedisURL(t)
	prefix := newPrefix(t, url)
	var logs syncBuffer
	b := open(t, redis.Options{URL: url, Prefix: prefix, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	first := []herald.Record{rec("first")}
	epoch, err := b.Append(ctxT(t), first)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, url)
	firstID := ""
	if msgs, err := raw.XRange(ctxT(t), "{"+prefix+"}:log", "-", "+").Result(); err != nil || len(msgs) != 1 {
		t.Fatalf("XRANGE = %v, %v", msgs, err)
	} else {
		firstID = msgs[0].ID
	}
	badID, err := raw.XAdd(ctxT(t), &goredis.XAddArgs{Stream: "{" + prefix + "}:log",
		Values: []any{"e", epoch, "p", firstID, "r", `{"v":99,"data":"from the future"}`}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	last := []herald.Record{rec("last")}
	if _, err := b.Append(ctxT(t), last); err != nil {
		t.Fatal(err)
	}

	f := startFollow(t, b, epoch, 0)
	if bt := f.next(t); bt.Lost || len(bt.Records) != 1 || bt.Records[0].Data != "first" {
		t.Errorf("first batch %+v, want the first record, not lost", bt)
	}
	if bt := f.next(t); !bt.Lost || len(bt.Records) != 1 || bt.Records[0].Position != last[0].Position {
		t.Errorf("batch after the unreadable entry %+v, want the last record, lost", bt)
	}
	if !strings.Contains(logs.String(), badID) {
		t.Errorf("log %q does not name the skipped entry %s", logs.String(), badID)
	}
}

// TestFollowCancel checks a follower blocked on a quiet log returns soon
// after its context ends.
func TestFollowCancel(t *testing.T) {
	url := servicetest.RedisURL(t)
	b := open(t, redis.Options{URL: url, Prefix: newPrefix(t, url)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Follow(ctx, "", 0, func(herald.Batch) error { return nil }) }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Follow = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Follow took %v to return after cancel", d)
		}
	case <-time.After(timeout):
		t.Fatal("Follow did not return")
	}
}

func TestOpenErrors(t *testing.T) {
	for _, opts := range []redis.Options{
		{},
		{URL: "redis://127.0.0.1:1", Prefix: "a{b}"},
		{URL: "http://127.0.0.1:6379"},
		{URL: "redis://127.0.0.1:6379?cluster=maybe"},
		{URL: "redis://127.0.0.1:6379?no_such_option=1"},
	} {
		if b, err := redis.Open(context.Background(), opts); err == nil {
			b.Close()
			t.Errorf("Open(%+v) succeeded", opts)
		}
	}
	// Nothing listens on port 1: the error says the broker is unavailable.
	if _, err := redis.Open(context.Background(), redis.Options{URL: "redis://127.0.0.1:1"}); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Open with Redis down = %v, want ErrBrokerUnavailable", err)
	}
}

// TestCloseEndsFollow closes a broker under a follower blocked on a
// quiet log: Follow returns, and later calls fail.
func TestCloseEndsFollow(t *testing.T) {
	url := servicetest.RedisURL(t)
	b := open(t, redis.Options{URL: url, Prefix: newPrefix(t, url)})
	done := make(chan error, 1)
	go func() { done <- b.Follow(context.Background(), "", 0, func(herald.Batch) error { return nil }) }()
	time.Sleep(300 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, herald.ErrBrokerUnavailable) {
			t.Errorf("Follow after Close = %v, want ErrBrokerUnavailable", err)
		}
	case <-time.After(timeout):
		t.Fatal("Follow did not return after Close")
	}
	if _, err := b.Append(ctxT(t), []herald.Record{rec("late")}); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Append after Close = %v, want ErrBrokerUnavailable", err)
	}
}
