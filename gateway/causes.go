package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// Tracer is what GET …/trace needs of the backend: the causal trace
// through one event (history/trace.go).
type Tracer interface {
	Trace(ctx context.Context, ref objects.Ref, version uint64, lim objects.TraceLimits) (*objects.Trace, error)
}

// traceLine is one NDJSON line of GET …/trace: one turn of the tree, in
// depth-first order (a node after its parent).
type traceLine struct {
	Index  int    `json:"index"`
	Parent int    `json:"parent"` // -1 for a root
	Depth  int    `json:"depth"`
	Link   string `json:"link,omitempty"` // call, message or reply: how the parent caused it
	Class  string `json:"class"`
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Method string `json:"method,omitempty"`
	Asked  bool   `json:"asked,omitempty"` // holds the event the trace was asked for
	// Events are the events holding the turn (several when it wrote
	// before a call), each with its cause and changes as history shows them.
	Events  []traceEvent `json:"events"`
	Missing string       `json:"missing,omitempty"`
}

type traceEvent struct {
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
	Turn    int       `json:"turn"`
	historyTurn
}

// traceNote is the last line when the trace was cut short or a link was
// not found.
type traceNote struct {
	Notes []string `json:"notes"`
}

// trace answers GET …/trace?version=N with the causal trace through the
// object's event N, as NDJSON.
func (g *Gateway) trace(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) {
	tracer, ok := g.cfg.Backend.(Tracer)
	if !ok {
		writeError(w, r, &routeError{http.StatusNotImplemented, "not_implemented", "this backend keeps no history"})
		return
	}
	version, err := uintParam(r, "version")
	if err == nil && version == 0 {
		err = fmt.Errorf("%w: trace takes version=N, from 1", objects.ErrBadInput)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	tr, err := tracer.Trace(ctx, rt.ref, version, objects.TraceLimits{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, n := range tr.Nodes {
		line := traceLine{Index: n.Index, Parent: n.Parent, Depth: n.Depth, Link: n.Link, Class: n.Class, ID: n.ID.String(),
			Name: n.Name, Method: n.Method, Asked: n.Asked, Events: []traceEvent{}, Missing: n.Missing}
		for _, p := range n.Parts {
			line.Events = append(line.Events, traceEvent{Version: p.Version, Time: p.Time, Turn: p.Turn, historyTurn: historyTurnOf(p.Record)})
		}
		if err := enc.Encode(line); err != nil {
			return
		}
	}
	if len(tr.Notes) > 0 {
		enc.Encode(traceNote{Notes: tr.Notes})
	}
}

// callerKind names how another object caused a turn, as history shows it.
func callerKind(k log.CallerKind) string {
	switch k {
	case log.CallerMessage:
		return "message"
	case log.CallerReply:
		return "reply"
	}
	return ""
}
