package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/strata-objects/strata/objects"
)

// Tailer is what GET /v1/tail needs of the backend.
type Tailer interface {
	// Tail calls fn for every event acknowledged after it called ready.
	Tail(ctx context.Context, class string, ready func(), fn func(objects.Record) error) error
}

type tailLine struct {
	Class   string     `json:"class"`
	ID      string     `json:"id"`
	Name    string     `json:"name,omitempty"`
	Version uint64     `json:"version"`
	Seq     uint64     `json:"seq"`
	Time    time.Time  `json:"time"`
	Turns   []tailTurn `json:"turns"`
}

type tailTurn struct {
	RequestID string      `json:"request_id,omitempty"`
	Principal string      `json:"principal,omitempty"`
	TraceID   string      `json:"trace_id,omitempty"`
	Method    string      `json:"method,omitempty"`
	Via       string      `json:"via"`
	Writes    []tailWrite `json:"writes"`
}

type tailWrite struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
}

// tail streams GET /v1/tail?class= as NDJSON, one line per committed
// event, flushed as it comes, until the client goes away.
func (g *Gateway) tail(w http.ResponseWriter, r *http.Request) {
	t, ok := g.cfg.Backend.(Tailer)
	if !ok {
		writeError(w, r, &routeError{http.StatusNotImplemented, "not_implemented", "this backend cannot tail"})
		return
	}
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
	// The headers go out once the tail is subscribed (ready), so a client
	// that has them sees every write acknowledged after; a bad class is
	// refused before.
	class := r.URL.Query().Get("class")
	if class != "" {
		if err := validClassForTail(g, class); err != nil {
			writeError(w, r, err)
			return
		}
	}
	release, err := g.holdStream()
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()
	// A tail never ends by itself: it ends with the client, or when the
	// gateway closes its streams at shutdown.
	ctx, stop := g.streamContext(r.Context(), r)
	defer stop()
	err = t.Tail(ctx, class, start, func(rec objects.Record) error {
		ev := rec.Event
		line := tailLine{Class: ev.Class, ID: ev.ID.String(), Name: ev.Name, Version: ev.Version, Seq: rec.Seq, Time: time.Unix(0, ev.Time).UTC()}
		for _, tu := range ev.Turns {
			tt := tailTurn{RequestID: tu.Cause.RequestID, Principal: tu.Cause.Principal, TraceID: tu.Cause.TraceID, Method: tu.Cause.Method, Via: tu.Cause.Via.String(), Writes: []tailWrite{}}
			for _, wr := range tu.Writes {
				tt.Writes = append(tt.Writes, tailWrite{Op: wr.Op.String(), Key: wr.Key})
			}
			line.Turns = append(line.Turns, tt)
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if endRevoked(ctx, enc) {
		return
	}
	if err != nil && !started {
		writeError(w, r, err) // the tail never started: a plain error answer
		return
	}
	if err != nil && ctx.Err() == nil {
		var body errorBody
		body.Error.Code, body.Error.Message = "internal", err.Error()
		enc.Encode(body)
	}
}

func validClassForTail(g *Gateway, class string) error {
	_, err := g.cfg.Backend.RefByName(class, "tail")
	return err
}

// holdStream takes one of the gateway's StreamsMax places for a tail or a
// follow; the caller calls release when the stream ends.
func (g *Gateway) holdStream() (release func(), err error) {
	if g.liveStreams.Add(1) > int64(g.cfg.StreamsMax) {
		g.liveStreams.Add(-1)
		return nil, fmt.Errorf("%w: %d tails and follows are running, the most this node serves (--streams-max)", objects.ErrOverloaded, g.cfg.StreamsMax)
	}
	return func() { g.liveStreams.Add(-1) }, nil
}

// errTokenRevoked ends a stream whose token was revoked while it ran.
var errTokenRevoked = errors.New("the token this stream was opened with was revoked")

// revokeCheck is how often a live stream looks at its token.
const revokeCheck = time.Second

// streamContext is the context of a long-lived answer (a tail, a followed
// history) to r: it ends with parent (the client), when the gateway closes
// its streams, or, with errTokenRevoked as its cause, within revokeCheck of
// the revocation of the token r came with. The caller calls stop when the
// stream ends; the revocation watch ends with the context.
func (g *Gateway) streamContext(parent context.Context, r *http.Request) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	unhook := context.AfterFunc(g.streams, func() { cancel(nil) })
	if revoked := g.tokenRevoked(principal(r)); revoked != nil {
		go func() {
			t := time.NewTicker(revokeCheck)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if revoked() {
						cancel(errTokenRevoked)
						return
					}
				}
			}
		}()
	}
	return ctx, func() { unhook(); cancel(nil) }
}

// endRevoked writes the last line of a stream cut by its token's
// revocation, and reports whether ctx ended so.
func endRevoked(ctx context.Context, enc *json.Encoder) bool {
	if !errors.Is(context.Cause(ctx), errTokenRevoked) {
		return false
	}
	var body errorBody
	body.Error.Code, body.Error.Message = "token_revoked", errTokenRevoked.Error()
	enc.Encode(body)
	return true
}

// CloseStreams ends every live stream (tails), so that a graceful shutdown
// of the HTTP server does not wait for clients that never hang up.
func (g *Gateway) CloseStreams() { g.stopStreams() }
