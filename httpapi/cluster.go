package httpapi

import (
	"context"
	"errors"
	"net/http"
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

// serveCluster lists the cluster's nodes, for publishers (operators).
func (h *Handler) serveCluster(w http.ResponseWriter, r *http.Request) {
	if h.PublishAuth != nil {
		if _, ok := h.authenticate(w, r, h.PublishAuth, false); !ok {
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	nodes, err := h.Hub.Nodes(ctx)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		h.fail(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	body := struct {
		Node  string            `json:"node"`
		Ready bool              `json:"ready"`
		Nodes []herald.NodeInfo `json:"nodes"`
	}{Node: h.Hub.Node(), Ready: h.Hub.Ready() == nil, Nodes: nodes}
	writeJSON(w, http.StatusOK, body)
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
