package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/herald-sse/herald"
)

// serveReady answers whether this node should get traffic: a load
// balancer takes a node out while it cannot reach its cluster's broker,
// is still reading the shared log, or is shutting down. Liveness is
// /healthz: a node that is not ready is not broken, and restarting it
// would not help.
func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	if err := h.Hub.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// clusterTimeout bounds how long GET /cluster waits for the broker.
const clusterTimeout = 5 * time.Second

// serveCluster lists the cluster's nodes, for operators (see
// authorizeOperator).
func (h *Handler) serveCluster(w http.ResponseWriter, r *http.Request) {
	if !h.authorizeOperator(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	nodes, err := h.Hub.Nodes(ctx)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	self := h.Hub.Node()
	if self == "" {
		// A hub without a cluster or a NodeID: name it as serve would.
		self = localName(r)
		for i := range nodes {
			if nodes[i].Self && nodes[i].Node == "" {
				nodes[i].Node = self
			}
		}
	}
	body := struct {
		Node  string            `json:"node"`
		Ready bool              `json:"ready"`
		Nodes []herald.NodeInfo `json:"nodes"`
	}{Node: self, Ready: h.Hub.Ready() == nil, Nodes: nodes}
	writeJSON(w, http.StatusOK, body)
}

// localName is this machine's host name and the port r arrived on.
func localName(r *http.Request) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	port := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			port = p
		}
	}
	if port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

// subscribeFailed answers a stream request the hub refused.
func (h *Handler) subscribeFailed(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Retry-After", "5")
	if errors.Is(err, herald.ErrNotSynced) {
		h.fail(w, r, http.StatusServiceUnavailable, "this node is not yet in sync with its cluster: try another node or retry")
		return
	}
	h.fail(w, r, http.StatusServiceUnavailable, "hub is shutting down")
}
