package log

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Node-to-node requests over NATS request/reply: the bytes transport the
// cluster layer forwards requests on. The caller's deadline travels with
// the request as a remaining duration (not a wall-clock time, so clock skew
// between machines does not shorten or stretch it), and the serving side
// runs the handler under it. So does the caller's trace context, as W3C
// traceparent and tracestate headers (the OpenTelemetry span in ctx, if
// any): the serving side's spans are children of the caller's.

// ErrNoResponder: nobody serves the subject (the node is gone).
var ErrNoResponder = errors.New("log: no responder")

const (
	hdrTimeout = "Strata-Timeout" // remaining time of the caller, in nanoseconds
	// rpcHandlersMax bounds the handlers one Serve runs at once; past it
	// the subscription's own queue holds requests (and, when that is full,
	// NATS drops them and the caller times out: backpressure, not growth).
	rpcHandlersMax = 1024
	// rpcTimeoutDefault is the deadline of a request whose caller had
	// none.
	rpcTimeoutDefault = 30 * time.Second
	hdrTraceparent    = "Traceparent" // W3C trace context (canonical MIME form, as nats.Header keys are)
)

// w3c carries trace context in NATS headers as HTTP carries it.
var w3c = propagation.TraceContext{}

// NodeSubject is the subject a node serves forwarded requests on.
func NodeSubject(node string) string { return "strata.node." + node }

// Handler answers one request; ctx carries the caller's deadline.
type Handler func(ctx context.Context, req []byte) []byte

// Responder is a running Serve.
type Responder struct {
	sub    *nats.Subscription
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Serve answers requests on subject with h, each on its own goroutine.
func (l *Log) Serve(subject string, h Handler) (*Responder, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Responder{cancel: cancel}
	sem := make(chan struct{}, rpcHandlersMax)
	sub, err := l.nc.Subscribe(subject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		timeout := rpcTimeoutDefault
		if v, err := strconv.ParseInt(m.Header.Get(hdrTimeout), 10, 64); err == nil && v > 0 {
			timeout = time.Duration(v)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-sem }()
			hctx, hcancel := context.WithTimeout(ctx, timeout)
			defer hcancel()
			if m.Header.Get(hdrTraceparent) != "" {
				hctx = w3c.Extract(hctx, propagation.HeaderCarrier(m.Header))
			}
			if err := m.Respond(h(hctx, m.Data)); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				l.cfg.Logger.Warn("log: reply not sent", "subject", subject, "err", err)
			}
		}()
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("log: serve %s: %w", subject, err)
	}
	sub.SetPendingLimits(rpcHandlersMax*4, 256<<20)
	r.sub = sub
	// The server knows of the subscription once Flush returns; servers
	// across routes learn of it shortly after (which is why a node joins
	// the membership only after it serves).
	if err := l.nc.Flush(); err != nil {
		r.Stop(context.Background())
		return nil, fmt.Errorf("log: serve %s: %w", subject, err)
	}
	return r, nil
}

// Stop takes no more requests and waits for the handlers running (or for
// ctx, then cancels them).
func (r *Responder) Stop(ctx context.Context) error {
	r.sub.Unsubscribe()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-done
		return fmt.Errorf("log: stop serving: %w", ctx.Err())
	}
}

// Request sends data to subject and waits for the answer until ctx ends.
// ErrNoResponder means nobody serves the subject: nothing ran.
func (l *Log) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	m := nats.NewMsg(subject)
	m.Data = data
	w3c.Inject(ctx, propagation.HeaderCarrier(m.Header)) // nothing without a span in ctx
	if d, ok := ctx.Deadline(); ok {
		m.Header.Set(hdrTimeout, strconv.FormatInt(int64(time.Until(d)), 10))
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeoutDefault)
		defer cancel()
	}
	resp, err := l.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("log: request %s: %w", subject, ErrNoResponder)
	case err != nil:
		return nil, fmt.Errorf("log: request %s: %w", subject, err)
	}
	return resp.Data, nil
}

// Gather publishes data to subject and collects answers until want have
// arrived or ctx ends; it returns the answers received either way (every
// node serving subject answers once).
func (l *Log) Gather(ctx context.Context, subject string, data []byte, want int) ([][]byte, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	if want <= 0 {
		return nil, nil
	}
	inbox := l.nc.NewRespInbox()
	replies := make(chan *nats.Msg, want)
	sub, err := l.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, fmt.Errorf("log: gather %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	m := nats.NewMsg(subject)
	m.Data, m.Reply = data, inbox
	if d, ok := ctx.Deadline(); ok {
		m.Header.Set(hdrTimeout, strconv.FormatInt(int64(time.Until(d)), 10))
	}
	if err := l.nc.PublishMsg(m); err != nil {
		return nil, fmt.Errorf("log: gather %s: %w", subject, err)
	}
	var out [][]byte
	for len(out) < want {
		select {
		case r := <-replies:
			out = append(out, r.Data)
		case <-ctx.Done():
			return out, fmt.Errorf("log: gather %s: %d of %d answers: %w", subject, len(out), want, ctx.Err())
		}
	}
	return out, nil
}
