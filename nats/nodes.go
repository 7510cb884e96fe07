package nats

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-sse/herald"
)

// Announce implements [herald.Broker]: the status is the value of the
// node's key in the <stream>_nodes bucket, which JetStream drops
// [herald.NodeTTL] after it was last written.
func (b *Broker) Announce(ctx context.Context, st herald.NodeStatus) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	err = b.withBucket(ctx, &b.nodes, func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Put(ctx, nodeKey(st.Node), data)
		return err
	})
	if err != nil {
		return b.fail(ctx, "announce", err)
	}
	return nil
}

// nodeKey is a node's key: node names are free text, keys are not.
func nodeKey(node string) string {
	if node == "" {
		return "_" // no base64 of anything
	}
	return base64.RawURLEncoding.EncodeToString([]byte(node))
}

// Nodes implements [herald.Broker].
func (b *Broker) Nodes(ctx context.Context) ([]herald.NodeStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var nodes []herald.NodeStatus
	err := b.withBucket(ctx, &b.nodes, func(ctx context.Context, kv jetstream.KeyValue) error {
		nodes = nodes[:0]
		// A watch reads every key's value at once, where listing the keys
		// and getting each would cost a round trip per node.
		w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
		if err != nil {
			return err
		}
		defer w.Stop()
		cutoff := time.Now().Add(-herald.NodeTTL)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("watch ended")
				}
				if e == nil {
					return nil // every current value was sent
				}
				var st herald.NodeStatus
				if err := json.Unmarshal(e.Value(), &st); err != nil {
					b.log.Debug("nats: ignoring an unreadable node status", "key", e.Key(), "err", err)
					continue
				}
				if !st.Time.Before(cutoff) {
					nodes = append(nodes, st)
				}
			}
		}
	})
	if err != nil {
		return nil, b.fail(ctx, "list nodes", err)
	}
	slices.SortFunc(nodes, func(x, y herald.NodeStatus) int { return cmp.Compare(x.Node, y.Node) })
	return nodes, nil
}
