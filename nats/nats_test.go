package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokertest"
	"github.com/herald-sse/herald/internal/servicetest"
	"github.com/herald-sse/herald/nats"
)

// wait bounds each wait of these tests: generous, as CI machines are
// slow, and only reached when a test fails.
const wait = 20 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// uniqueStream names a stream of the test's own on a shared server.
func uniqueStream(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "HERALD_TEST_" + hex.EncodeToString(b[:])
}

// open opens a broker that the test closes.
func open(t testing.TB, opts nats.Options) *nats.Broker {
	t.Helper()
	b, err := nats.Open(ctxT(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// jsClient is a JetStream client of the test's, to do what an operator
// would.
// openShared opens a broker on a stream of its own on the shared server,
// removed after the test.
func openShared(t testing.TB) (*nats.Broker, string, nats.Options) {
	t.Helper()
	url := servicetest.NATSURL(t)
	opts := nats.Options{URL: url, Stream: uniqueStream(t)}
	removeOnCleanup(t, url, opts.Stream)
	return open(t, opts), url, opts
}

func jsClient(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// removeOnCleanup deletes a stream and its buckets when the test ends.
func removeOnCleanup(t testing.TB, url, stream string) {
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		for _, s := range []string{stream, "KV_" + stream + "_nodes", "KV_" + stream + "_ids"} {
			if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("cleanup: delete stream %s: %v", s, err)
			}
		}
	})
}

func TestConformance(t *testing.T) {
	url := servicetest.NATSURL(t)
	brokertest.Run(t, func(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
		opts := nats.Options{URL: url, Stream: uniqueStream(t), Retention: r}
		removeOnCleanup(t, url, opts.Stream)
		b, err := nats.Open(ctxT(t), opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return unreadableAppender{b, jsClient(t, url)}, func() herald.Broker {
			o, err := nats.Open(ctxT(t), opts)
			if err != nil {
				t.Fatalf("Open another: %v", err)
			}
			return o
		}
	})
}

// unreadableAppender is a broker that can also publish, behind its back,
// a message it cannot read (as a newer version of Herald might), for
// brokertest.
type unreadableAppender struct {
	*nats.Broker
	js jetstream.JetStream
}

var _ brokertest.UnreadableAppender = unreadableAppender{}

func (u unreadableAppender) AppendUnreadable(ctx context.Context) (uint64, error) {
	ack, err := u.js.Publish(ctx, u.Subject("x"), []byte(`{"v":99}`))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func rec(data string) herald.Record {
	return herald.Record{Topics: []string{"a.b >"}, Data: data, Time: time.Now()}
}

// follower runs Follow in the background, and hands out its batches.
type follower struct {
	batches chan herald.Batch
	done    chan struct{} // closed when Follow returned err
	err     error
	cancel  context.CancelFunc
}

func follow(t testing.TB, b herald.Broker, epoch string, after uint64) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{batches: make(chan herald.Batch, 1000), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		f.err = b.Follow(ctx, epoch, after, func(bt herald.Batch) error {
			bt.Records = slices.Clone(bt.Records)
			f.batches <- bt
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(wait):
			t.Error("Follow did not return after its context was cancelled")
		}
	})
	return f
}

// next returns the next n records, and the batches' epoch and whether
// one reported a loss.
func (f *follower) next(t testing.TB, n int) (string, []herald.Record, bool) {
	t.Helper()
	var recs []herald.Record
	var epoch string
	var lost bool
	timeout := time.After(wait)
	for len(recs) < n {
		select {
		case bt := <-f.batches:
			if epoch != "" && bt.Epoch != epoch {
				t.Fatalf("epoch changed from %q to %q within one read", epoch, bt.Epoch)
			}
			epoch, lost, recs = bt.Epoch, lost || bt.Lost, append(recs, bt.Records...)
		case <-f.done:
			t.Fatalf("Follow returned %v after %d of %d records", f.err, len(recs), n)
		case <-timeout:
			t.Fatalf("%d of %d records followed", len(recs), n)
		}
	}
	return epoch, recs, lost
}

func positions(recs []herald.Record) []uint64 {
	p := make([]uint64, len(recs))
	for i, r := range recs {
		p[i] = r.Position
	}
	return p
}

// The server is killed and restarted with its data: publishes fail fast
// while it is down, a running Follow reports it, and afterwards the log
// carries on, same epoch, no gap.
func TestOutage(t *testing.T) {
	srv := servicetest.StartNATS(t)
	b := open(t, nats.Options{URL: srv.URL, Stream: "OUTAGE", Timeout: 2 * time.Second})
	epoch, err := b.Append(ctxT(t), []herald.Record{rec("1"), rec("2"), rec("3")})
	if err != nil {
		t.Fatal(err)
	}
	f := follow(t, b, epoch, 0)
	_, got, _ := f.next(t, 3)
	last := got[2].Position

	srv.Stop()
	start := time.Now()
	_, err = b.Append(ctxT(t), []herald.Record{rec("during")})
	if !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Fatalf("Append while the server is down = %v, want ErrBrokerUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Append while the server is down took %v", d)
	}
	t.Logf("Append while the server is down: %v after %v", err, time.Since(start))
	select {
	case <-f.done:
		if !errors.Is(f.err, herald.ErrBrokerUnavailable) {
			t.Errorf("Follow while the server is down = %v, want ErrBrokerUnavailable", f.err)
		}
		t.Logf("Follow while the server is down: %v after %v", f.err, time.Since(start))
	case <-time.After(wait):
		t.Fatal("Follow did not return while the server was down")
	}
	if _, _, err := b.Head(ctxT(t)); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Head while the server is down = %v, want ErrBrokerUnavailable", err)
	}

	srv.Start()
	// The client reconnects on its own schedule: until it has, calls fail
	// at once.
	deadline := time.Now().Add(wait)
	for {
		_, _, err := b.Head(ctxT(t))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Head after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e2, err := b.Append(ctxT(t), []herald.Record{rec("after")})
	if err != nil {
		t.Fatalf("Append after the restart: %v", err)
	}
	if e2 != epoch {
		t.Errorf("epoch %q after a restart with the same data, was %q", e2, epoch)
	}
	f = follow(t, b, epoch, last)
	var recs []herald.Record
	for len(recs) == 0 || recs[len(recs)-1].Data != "after" {
		e, got, lost := f.next(t, 1)
		if e != epoch || lost {
			t.Fatalf("following after the restart: epoch %q lost %v, want %q false", e, lost, epoch)
		}
		recs = append(recs, got...)
	}
	for i, r := range recs {
		if r.Position != last+1+uint64(i) {
			t.Fatalf("after the restart, positions %v follow %d: want consecutive", positions(recs), last)
		}
	}
}

// Deleting the stream loses the log: a new one starts with a new epoch,
// and a node that followed the old one reads the new one from its start.
func TestStreamRecreated(t *testing.T) {
	b, url, opts := openShared(t)
	e1, err := b.Append(ctxT(t), []herald.Record{rec("1"), rec("2"), rec("3")})
	if err != nil {
		t.Fatal(err)
	}
	f := follow(t, b, "", 0)
	if e, got, _ := f.next(t, 3); e != e1 || got[2].Data != "3" {
		t.Fatalf("followed %q %v, want %q and 3 records", e, got, e1)
	}
	// The follower stops before the deletion: nats-server 2.9 breaks a
	// stream recreated while it still removes the old one's files (see
	// the package doc), and a running follower would recreate it at once.
	f.cancel()
	<-f.done
	if err := jsClient(t, url).DeleteStream(ctxT(t), opts.Stream); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the server's background removal: nothing to wait on
	e2, err := b.Append(ctxT(t), []herald.Record{rec("new")})
	if err != nil {
		t.Fatalf("Append after the stream was deleted: %v", err)
	}
	if e2 == e1 {
		t.Fatalf("epoch %q unchanged by the stream's deletion", e2)
	}
	if e, head, err := b.Head(ctxT(t)); err != nil || e != e2 || head != 1 {
		t.Errorf("Head = %q, %d, %v; want %q, 1", e, head, err, e2)
	}
	// A node that followed the old stream carries on with the epoch and
	// position it had: it reads the new stream from its start.
	e, got, lost := follow(t, b, e1, 3).next(t, 1)
	if e != e2 || got[0].Position != 1 || got[0].Data != "new" || lost {
		t.Errorf("after the stream was replaced, Follow read %q %+v lost %v; want %q, position 1, %q, not lost", e, got[0], lost, e2, "new")
	}
}

// Close ends a running Follow, and every call after it fails.
func TestClose(t *testing.T) {
	b, _, _ := openShared(t)
	f := follow(t, b, "", 0)
	if _, err := b.Append(ctxT(t), []herald.Record{rec("1")}); err != nil {
		t.Fatal(err)
	}
	f.next(t, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.done:
		if !errors.Is(f.err, herald.ErrBrokerUnavailable) {
			t.Errorf("Follow after Close = %v, want ErrBrokerUnavailable", f.err)
		}
	case <-time.After(wait):
		t.Fatal("Follow did not return after Close")
	}
	if _, err := b.Append(ctxT(t), []herald.Record{rec("2")}); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Append after Close = %v, want ErrBrokerUnavailable", err)
	}
	if _, _, err := b.Head(ctxT(t)); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Head after Close = %v, want ErrBrokerUnavailable", err)
	}
	if err := b.Announce(ctxT(t), herald.NodeStatus{Node: "n", Time: time.Now()}); !errors.Is(err, herald.ErrBrokerUnavailable) {
		t.Errorf("Announce after Close = %v, want ErrBrokerUnavailable", err)
	}
}

// A consumer deleted under a Follow (by an operator, or a server that
// restarted) is replaced where it stood: nothing lost, nothing repeated.
func TestConsumerDeleted(t *testing.T) {
	b, url, opts := openShared(t)
	f := follow(t, b, "", 0)
	if _, err := b.Append(ctxT(t), []herald.Record{rec("1")}); err != nil {
		t.Fatal(err)
	}
	f.next(t, 1)
	s, err := jsClient(t, url).Stream(ctxT(t), opts.Stream)
	if err != nil {
		t.Fatal(err)
	}
	names := s.ConsumerNames(ctxT(t))
	n := 0
	for name := range names.Name() {
		if err := s.DeleteConsumer(ctxT(t), name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if names.Err() != nil || n != 1 {
		t.Fatalf("deleted %d consumers (%v), want Follow's one", n, names.Err())
	}
	if _, err := b.Append(ctxT(t), []herald.Record{rec("2"), rec("3")}); err != nil {
		t.Fatal(err)
	}
	_, got, lost := f.next(t, 2)
	if lost || !slices.Equal(positions(got), []uint64{2, 3}) {
		t.Errorf("after its consumer was deleted, Follow read %v lost %v; want [2 3] false", positions(got), lost)
	}
}

// Records land on per-topic subjects, so NATS tools can filter by topic.
func TestSubjects(t *testing.T) {
	b, url, opts := openShared(t)
	long := string(make([]byte, 300))
	topics := []string{"orders", "a.b", "*", ">", "with space", "é", long}
	for _, topic := range topics {
		if _, err := b.Append(ctxT(t), []herald.Record{{Topics: []string{topic, "other"}, Data: topic, Time: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := jsClient(t, url).Stream(ctxT(t), opts.Stream)
	if err != nil {
		t.Fatal(err)
	}
	for i, topic := range topics {
		m, err := s.GetLastMsgForSubject(ctxT(t), b.Subject(topic))
		if err != nil {
			t.Fatalf("topic %q: last message on %s: %v", topic, b.Subject(topic), err)
		}
		if m.Sequence != uint64(i+1) {
			t.Errorf("topic %q: last message on %s is %d, want %d", topic, b.Subject(topic), m.Sequence, i+1)
		}
	}
}

// An undecodable message is skipped and reported as lost, not hidden.
func TestUndecodable(t *testing.T) {
	b, url, _ := openShared(t)
	epoch, err := b.Append(ctxT(t), []herald.Record{rec("1")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsClient(t, url).Publish(ctxT(t), b.Subject("x"), []byte(`{"v":99}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctxT(t), []herald.Record{rec("3")}); err != nil {
		t.Fatal(err)
	}
	f := follow(t, b, epoch, 1)
	_, got, lost := f.next(t, 1)
	if !lost || got[0].Position != 3 || got[0].Data != "3" {
		t.Errorf("after an undecodable message: lost %v, %+v; want true, record 3", lost, got[0])
	}
}

// A record too large for the server even gzipped is refused as an
// invalid event, which retrying cannot change, and nothing is appended.
func TestTooLarge(t *testing.T) {
	b, url, _ := openShared(t)
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	maxPayload := int(nc.MaxPayload())
	nc.Close()
	// Random bytes in base64: gzip cannot shrink them by much.
	raw := make([]byte, max(2<<20, 2*maxPayload))
	rand.Read(raw)
	big := base64.StdEncoding.EncodeToString(raw)
	for _, recs := range [][]herald.Record{
		{rec(big)},
		{rec("small"), rec(big)},
	} {
		_, err := b.Append(ctxT(t), recs)
		if !errors.Is(err, herald.ErrInvalidEvent) || errors.Is(err, herald.ErrBrokerUnavailable) {
			t.Errorf("Append of %d records, the last of %d bytes, with max_payload %d = %v; want ErrInvalidEvent only", len(recs), len(big), maxPayload, err)
		}
	}
	if _, head, err := b.Head(ctxT(t)); err != nil || head != 0 {
		t.Errorf("Head after refused appends = %d, %v; want 0: nothing appended", head, err)
	}
	// A large record that gzip brings under max_payload is taken.
	compressible := strings.Repeat("0123456789", max(2<<20, 2*maxPayload)/10)
	if _, err := b.Append(ctxT(t), []herald.Record{rec(compressible)}); err != nil {
		t.Fatalf("Append of a compressible record of %d bytes: %v", len(compressible), err)
	}
	_, got, _ := follow(t, b, "", 0).next(t, 1)
	if got[0].Data != compressible {
		t.Errorf("compressible record read back with %d bytes of data, want %d", len(got[0].Data), len(compressible))
	}
}

// A stream emptied by retention or by an operator's purge has a head of 0:
// a node starting then is in sync at once. A follower that had read less
// is told, by a batch reaching the old last sequence, that the rest is
// gone, and carries on with what is appended next.
func TestHeadOfEmptiedLog(t *testing.T) {
	url := servicetest.NATSURL(t)
	for _, c := range []struct {
		name  string
		age   time.Duration
		purge bool
	}{
		{"AgedOut", time.Second, false},
		{"Purged", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := nats.Options{URL: url, Stream: uniqueStream(t), Retention: herald.Retention{MaxAge: c.age}}
			removeOnCleanup(t, url, opts.Stream)
			b := open(t, opts)
			epoch, err := b.Append(ctxT(t), []herald.Record{rec("1"), rec("2"), rec("3")})
			if err != nil {
				t.Fatal(err)
			}
			if c.purge {
				s, err := jsClient(t, url).Stream(ctxT(t), opts.Stream)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Purge(ctxT(t)); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(wait)
			for {
				e, head, err := b.Head(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				if e != epoch {
					t.Fatalf("Head's epoch %q, was %q", e, epoch)
				}
				if head == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Head = %d %v after the stream's messages went", head, wait)
				}
				time.Sleep(50 * time.Millisecond)
			}
			f := follow(t, b, epoch, 1)
			select {
			case bt := <-f.batches:
				if bt.Epoch != epoch || len(bt.Records) != 0 || !bt.Lost || bt.Through != 3 {
					t.Errorf("Follow after 1 of an emptied stream read %+v; want no record, lost, through 3", bt)
				}
			case <-time.After(wait):
				t.Fatal("Follow after 1 of an emptied stream said nothing")
			}
			if _, err := b.Append(ctxT(t), []herald.Record{rec("4")}); err != nil {
				t.Fatal(err)
			}
			if _, got, lost := f.next(t, 1); lost || got[0].Position != 4 {
				t.Errorf("then Follow read %v lost %v; want [4], not lost again", positions(got), lost)
			}
			if _, head, err := b.Head(ctxT(t)); err != nil || head != 4 {
				t.Errorf("Head = %d, %v; want 4", head, err)
			}
		})
	}
}

// The newest message removed while older ones stay: Head still names it,
// and a Follow reaches it (with the loss said), so a node can get in sync.
func TestNewestMessageDeleted(t *testing.T) {
	b, url, opts := openShared(t)
	epoch, err := b.Append(ctxT(t), []herald.Record{rec("1"), rec("2"), rec("3")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsClient(t, url).Stream(ctxT(t), opts.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctxT(t), 3); err != nil {
		t.Fatal(err)
	}
	_, head, err := b.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	f := follow(t, b, epoch, 0)
	var read uint64
	timeout := time.After(wait)
	for read < head {
		select {
		case bt := <-f.batches:
			for _, r := range bt.Records {
				read = max(read, r.Position)
			}
			if bt.Through > 0 {
				if !bt.Lost {
					t.Errorf("a batch through deleted message %d does not say it is lost", bt.Through)
				}
				read = max(read, bt.Through)
			}
		case <-timeout:
			t.Fatalf("Follow from 0 read up to %d, never reaching Head's %d", read, head)
		}
	}
}

// A duplicate in the middle of a batch stops it there: the records after
// it are not appended.
func TestDuplicateMidBatchStopsThere(t *testing.T) {
	b, url, opts := openShared(t)
	if _, err := b.Append(ctxT(t), []herald.Record{{ID: "x", Topics: []string{"t"}, Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	// Forget x's entry in the ID index, as a connection lost between an
	// acknowledgement and its index write would: only the server's
	// duplicate window knows it now.
	kv, err := jsClient(t, url).KeyValue(ctxT(t), opts.Stream+"_ids")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctxT(t))
	if err != nil || len(keys) != 1 {
		t.Fatalf("ID index keys %v, %v; want x's only", keys, err)
	}
	if err := kv.Purge(ctxT(t), keys[0]); err != nil {
		t.Fatal(err)
	}
	batch := []herald.Record{rec("y"), {ID: "x", Topics: []string{"t"}, Time: time.Now()}, rec("z")}
	if _, err := b.Append(ctxT(t), batch); !errors.Is(err, herald.ErrDuplicateID) {
		t.Fatalf("batch with a duplicate in the middle = %v, want ErrDuplicateID", err)
	}
	// The log as it stands: z is not in it, wherever the duplicate was
	// caught (by the ID index before anything, or by the server after y).
	_, head, err := b.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	f := follow(t, b, "", 0)
	var got []herald.Record
	for len(got) == 0 || got[len(got)-1].Position < head {
		_, recs, _ := f.next(t, 1)
		got = append(got, recs...)
	}
	for _, r := range got {
		if r.Data == "z" {
			t.Errorf("record z, after the refused duplicate, was appended: log %v", positions(got))
		}
	}
}

// One record appended, then waited for until a Follow delivers it: the
// latency of a publish through the broker.
//
//	HERALD_TEST_NATS_URL=nats://127.0.0.1:4222 go test -run '^$' -bench BenchmarkAppendFollow ./nats/
func BenchmarkAppendFollow(b *testing.B) {
	br, _, _ := openShared(b)
	brokertest.BenchAppendFollow(b, br)
}

func ExampleOpen() {
	b, err := nats.Open(context.Background(), nats.Options{
		URL:       "nats://127.0.0.1:4222",
		Retention: herald.Retention{MaxEvents: 1_000_000, MaxAge: 7 * 24 * time.Hour},
		Replicas:  3,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	hub := &herald.Hub{Broker: b}
	if err := hub.Open(); err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
}
