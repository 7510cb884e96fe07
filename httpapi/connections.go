package httpapi

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"sync"
	"time"
)

// connectedEvent is the type of the event that tells a stream its
// connection ID, when Handler.AnnounceConnections is set. Unlike the reset
// and expired events it is not configurable: it carries no application
// meaning to be renamed into an application's vocabulary, it is part of
// how a client learns the address publishers reach it by, and the
// clients and documentation that look for it by this name would all have
// to follow a renaming.
const connectedEvent = "herald.connected"

// connection is an open stream, as GET /connections lists it.
type connection struct {
	ID      string    `json:"id"`
	Subject string    `json:"subject,omitempty"`
	Topics  []string  `json:"topics"`
	Remote  string    `json:"remote"`
	Since   time.Time `json:"since"`
	AgeSecs float64   `json:"age_seconds"`
}

// connectionRegistry knows the open streams of a Handler that announces
// connections.
type connectionRegistry struct {
	mu sync.Mutex
	m  map[string]*connection
}

func (c *connectionRegistry) add(x *connection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*connection)
	}
	c.m[x.ID] = x
}

func (c *connectionRegistry) remove(id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *connectionRegistry) list(now time.Time) []connection {
	c.mu.Lock()
	out := make([]connection, 0, len(c.m))
	for _, x := range c.m {
		y := *x
		y.AgeSecs = now.Sub(x.Since).Seconds()
		out = append(out, y)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b connection) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// newConnectionID returns a random, URL-safe connection ID: unguessable,
// since it lets a publisher address the stream.
func newConnectionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// serveConnections lists the open streams, for operators: the list
// names users and addresses (see authorizeOperator).
func (h *Handler) serveConnections(w http.ResponseWriter, r *http.Request) {
	if !h.authorizeOperator(w, r) {
		return
	}
	if !h.AnnounceConnections {
		h.fail(w, r, http.StatusNotFound, "connections are not tracked (AnnounceConnections is off)")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"connections": h.conns.list(time.Now())})
}
