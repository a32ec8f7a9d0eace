package objects

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/log"
)

// Tracing of the write path (OpenTelemetry). The runtime has no tracer of
// its own: a turn is traced when the context it is dispatched with holds a
// recording span (the gateway's request span, a forwarded request's span on
// the owner, the span of the turn that called this object), and its spans
// are made by that span's provider. So tracing off, or a request the
// sampler left out, costs one context lookup per turn and allocates
// nothing (BenchmarkTurnTracingOff).
//
// The spans of one traced turn:
//
//	strata.turn     child of the caller's span; from dispatch to the
//	                response's release. Events "handler.start" and
//	                "handler.end" split it into queue wait (mailbox),
//	                handler, and commit wait (the output gate); the three
//	                are also attributes, in microseconds.
//	strata.append   child of the turn's span, one per traced turn of the
//	                event (a group commit may hold turns of several
//	                traces); from the append's start to its ack.
//	                strata.turns is the group's size.
//	strata.project  child of the append span, made by the projector when
//	                it applies the event (projector/spans.go).
//
// The projector learns the append span from the event itself: the turn's
// cause records the trace id and the append span's id (log.Cause.TraceID,
// SpanID). It is not a NATS header on the append because the projector
// never reads the message's headers (an acknowledged event reaches it in
// process, and a catch-up reads events, not headers), and because a link
// kept in the event survives every replay of it.

// tracerName names the spans' instrumentation scope.
const tracerName = "github.com/strata-objects/strata"

// turnTrace is what a traced request carries; nil when it is not traced.
type turnTrace struct {
	span      trace.Span
	dispatch  time.Time // the turn span's start
	started   time.Time // the handler started (the mailbox wait ended)
	handled   time.Time // the handler returned
	startedOK bool      // started is set (a request that bounced may run later)
}

// traceTurn starts the turn's span if ctx holds a recording span. It
// returns ctx with the turn's span, and nil when the turn is not traced.
func traceTurn(ctx context.Context, class, method string) (context.Context, *turnTrace) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	now := time.Now()
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "strata.turn",
		trace.WithTimestamp(now),
		trace.WithAttributes(attribute.String("strata.class", class), attribute.String("strata.method", method)))
	return ctx, &turnTrace{span: span, dispatch: now}
}

// handlerStart and handlerEnd mark the handler's run on the turn's span.
func (tt *turnTrace) handlerStart() {
	if tt == nil {
		return
	}
	tt.started, tt.startedOK = time.Now(), true
	tt.span.AddEvent("handler.start", trace.WithTimestamp(tt.started))
}

func (tt *turnTrace) handlerEnd() {
	if tt == nil {
		return
	}
	tt.handled = time.Now()
	tt.span.AddEvent("handler.end", trace.WithTimestamp(tt.handled))
}

// end ends the turn's span when its response is released (or it failed).
func (tt *turnTrace) end(err error) {
	if tt == nil {
		return
	}
	now := time.Now()
	if tt.startedOK {
		tt.span.SetAttributes(
			attribute.Int64("strata.queue_wait_us", tt.started.Sub(tt.dispatch).Microseconds()),
			attribute.Int64("strata.handler_us", tt.handled.Sub(tt.started).Microseconds()),
			attribute.Int64("strata.commit_wait_us", now.Sub(tt.handled).Microseconds()))
	}
	if err != nil {
		tt.span.RecordError(err)
		tt.span.SetStatus(codes.Error, "turn failed")
	}
	tt.span.End(trace.WithTimestamp(now))
}

// tracedTurn is a traced turn of a commit: its index in the event's turns.
type tracedTurn struct {
	turn int
	tt   *turnTrace
}

// traceAppend starts an append span for each traced turn of c, as a child
// of that turn's span, and records the trace id and the span's id in the
// turn's cause (the projector's link). Called on the activation's
// goroutine before the event is built.
func traceAppend(c *commit, class string, id ID) []trace.Span {
	spans := make([]trace.Span, 0, len(c.traced))
	for _, t := range c.traced {
		ctx := trace.ContextWithSpan(context.Background(), t.tt.span)
		_, span := t.tt.span.TracerProvider().Tracer(tracerName).Start(ctx, "strata.append",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("strata.class", class), attribute.String("strata.id", id.String()),
				attribute.Int64("strata.version", int64(c.version)), attribute.Int("strata.turns", len(c.turns))))
		sc := span.SpanContext()
		cause := &c.turns[t.turn].Cause
		cause.TraceID, cause.SpanID = sc.TraceID().String(), sc.SpanID().String()
		spans = append(spans, span)
	}
	return spans
}

// endAppend ends the append spans with the append's outcome.
func endAppend(spans []trace.Span, rec log.Record, err error) {
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "append failed")
		} else {
			span.SetAttributes(attribute.Int64("strata.seq", int64(rec.Seq)))
		}
		span.End()
	}
}
