package herald_test

import (
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/brokertest"
)

func TestMemoryBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, r herald.Retention) (herald.Broker, func() herald.Broker) {
		b := &herald.MemoryBroker{MaxEvents: r.MaxEvents}
		// Clients of one in-process log are the broker itself; closing
		// one would close them all, so the others are left open.
		return b, func() herald.Broker { return nopClose{b} }
	})
}

type nopClose struct{ *herald.MemoryBroker }

func (nopClose) Close() error { return nil }
