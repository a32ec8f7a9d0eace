package gateway

import (
	"context"
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// OutboxAdmin is the view of durable messages (objects/messages.go) the
// outbox routes serve; the runtime is one, and in a cluster the router,
// whose Outbox asks the object's owner. The dead letters are this node's
// snapshot's.
type OutboxAdmin interface {
	// Outbox lists an object's pending messages and dead letters.
	Outbox(ctx context.Context, ref objects.Ref) ([]objects.OutboxEntry, error)
	// AllDeadLetters lists at most n dead letters of every object.
	AllDeadLetters(ctx context.Context, n int) ([]objects.OutboxEntry, error)
	// RetryAllDead puts every dead letter back in its sender's outbox.
	RetryAllDead(ctx context.Context) (int, error)
}

type outboxEntryView struct {
	Sender   string `json:"sender"`
	Class    string `json:"class"`
	Version  uint64 `json:"version"`
	Turn     int    `json:"turn"`
	Index    int    `json:"index"`
	Target   string `json:"target"`
	Method   string `json:"method"`
	Reply    string `json:"reply,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	LastErr  string `json:"last_error,omitempty"`
	Dead     bool   `json:"dead"`
}

func outboxEntries(es []objects.OutboxEntry) []outboxEntryView {
	out := make([]outboxEntryView, len(es))
	for i, e := range es {
		out[i] = outboxEntryView{Sender: e.Sender.ID.String(), Class: e.Sender.Class, Version: e.Version, Turn: e.Turn, Index: e.Index,
			Target: e.Target.String(), Method: e.Method, Reply: e.Reply, Attempts: e.Attempts, LastErr: e.LastErr, Dead: e.Dead}
	}
	return out
}

// outbox serves GET /v1/objects/{class}/{name}/outbox: the object's
// pending messages and dead letters.
func (g *Gateway) outbox(w http.ResponseWriter, r *http.Request, rt route) {
	switch {
	case rt.rest != "":
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "want …/outbox"})
		return
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", "GET")
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "outbox takes GET"})
		return
	case g.cfg.Outbox == nil:
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "this node serves no outbox"})
		return
	}
	es, err := g.cfg.Outbox.Outbox(r.Context(), rt.ref)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": outboxEntries(es)})
}

// outboxDeadMax bounds the dead letters GET /v1/outbox/dead lists.
const outboxDeadMax = 10000

// Operator routes, served when Config.Outbox is set:
//
//	GET  /v1/outbox/dead          dead letters (at most 10,000)
//	POST /v1/outbox/dead/retry    put every dead letter back in its sender's outbox
func (g *Gateway) outboxAdminRoutes() {
	o := g.cfg.Outbox
	g.handle("GET /v1/outbox/dead", func(w http.ResponseWriter, r *http.Request) {
		es, err := o.AllDeadLetters(r.Context(), outboxDeadMax)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"messages": outboxEntries(es)})
	})
	g.handle("POST /v1/outbox/dead/retry", func(w http.ResponseWriter, r *http.Request) {
		if err := g.health(); err != nil {
			writeError(w, r, &routeError{http.StatusServiceUnavailable, "unhealthy", "this node refuses writes: " + err.Error()})
			return
		}
		n, err := o.RetryAllDead(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"retried": n})
	})
}
