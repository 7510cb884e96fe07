package followbatch

import (
	"errors"
	"slices"
	"testing"

	"github.com/herald-sse/herald"
)

// got is a batch as fn saw it: Records is reused after fn returns.
type got struct {
	epoch     string
	positions []uint64
	lost      bool
	through   uint64
}

func collect(out *[]got) func(herald.Batch) error {
	return func(b herald.Batch) error {
		g := got{epoch: b.Epoch, lost: b.Lost, through: b.Through}
		for _, r := range b.Records {
			g.positions = append(g.positions, r.Position)
		}
		*out = append(*out, g)
		return nil
	}
}

func equal(a, b []got) bool {
	return slices.EqualFunc(a, b, func(x, y got) bool {
		return x.epoch == y.epoch && slices.Equal(x.positions, y.positions) && x.lost == y.lost && x.through == y.through
	})
}

func TestBatches(t *testing.T) {
	var out []got
	b := New("e1", collect(&out))
	b.Add(herald.Record{Position: 1})
	b.Add(herald.Record{Position: 2})
	if b.Len() != 2 {
		t.Fatalf("Len = %d, want 2", b.Len())
	}
	if err := b.Lose(); err != nil { // 3 unreadable
		t.Fatal(err)
	}
	if err := b.Lose(); err != nil { // 4 too: still one loss
		t.Fatal(err)
	}
	b.Add(herald.Record{Position: 5})
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Through(5); err != nil { // nothing lost after 5
		t.Fatal(err)
	}
	if err := b.Lose(); err != nil { // 6 unreadable, nothing after it
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.Through(6); err != nil {
		t.Fatal(err)
	}
	if err := b.Through(6); err != nil { // reported once
		t.Fatal(err)
	}
	b.Add(herald.Record{Position: 7})
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []got{
		{epoch: "e1", positions: []uint64{1, 2}},
		{epoch: "e1", positions: []uint64{5}, lost: true},
		{epoch: "e1", lost: true, through: 6},
		{epoch: "e1", positions: []uint64{7}},
	}
	if !equal(out, want) {
		t.Errorf("batches %+v, want %+v", out, want)
	}
}

func TestRestartDropsTheOldLog(t *testing.T) {
	var out []got
	b := New("e1", collect(&out))
	if err := b.Lose(); err != nil {
		t.Fatal(err)
	}
	b.Restart("e2")
	if b.Epoch() != "e2" {
		t.Fatalf("Epoch = %q, want e2", b.Epoch())
	}
	if err := b.Through(3); err != nil {
		t.Fatal(err)
	}
	b.Add(herald.Record{Position: 1})
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []got{{epoch: "e2", positions: []uint64{1}}}
	if !equal(out, want) {
		t.Errorf("batches %+v, want %+v: the old log's loss must not reach the new one", out, want)
	}
}

func TestFnError(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	b := New("e", func(herald.Batch) error { calls++; return boom })
	b.Add(herald.Record{Position: 1})
	if err := b.Lose(); !errors.Is(err, boom) {
		t.Fatalf("Lose = %v, want fn's error", err)
	}
	if b.Len() != 0 || calls != 1 {
		t.Errorf("after a failed flush: Len %d, calls %d; want 0, 1", b.Len(), calls)
	}
	if err := b.Through(1); !errors.Is(err, boom) {
		t.Errorf("Through = %v, want fn's error", err)
	}
}
