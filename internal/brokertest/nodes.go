package brokertest

import (
	"slices"
	"testing"
	"time"

	"github.com/herald-sse/herald"
)

func (s *suite) nodes(t *testing.T) {
	b, another := s.openBroker(t, herald.Retention{})
	o := another()
	now := time.Now().Round(time.Millisecond)
	sa := herald.NodeStatus{Node: "node-a", Connections: 3, Epoch: "e", Applied: 7, Head: 9, Time: now}
	sb := herald.NodeStatus{Node: "node-b", Connections: 5, Epoch: "e", Applied: 9, Head: 9, Time: now}
	if err := b.Announce(ctxT(t), sa); err != nil {
		t.Fatal(err)
	}
	if err := o.Announce(ctxT(t), sb); err != nil {
		t.Fatal(err)
	}
	sa.Connections = 4
	if err := b.Announce(ctxT(t), sa); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []herald.Broker{b, o} {
		got, err := cl.Nodes(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y herald.NodeStatus) int { return int(x.Connections - y.Connections) })
		if len(got) != 2 || got[0].Node != "node-a" || got[0].Connections != 4 || got[0].Applied != 7 || got[1].Node != "node-b" || !got[1].Time.Equal(now) {
			t.Errorf("Nodes = %+v, want node-a (4 connections, applied 7) and node-b", got)
		}
	}
}
