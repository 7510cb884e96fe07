package herald_test

import (
	"testing"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/internal/historytest"
)

// MemoryHistory keeps every promise of the History interface.
func TestMemoryHistoryConformance(t *testing.T) {
	historytest.Run(t, func(t *testing.T, r herald.Retention) herald.History {
		return herald.NewMemoryHistory(r)
	})
}
