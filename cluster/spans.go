package cluster

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing of forwarded requests (OpenTelemetry). The forwarding node
// makes a client span "strata.forward", a child of the request's span, when
// that span is recording; log.Request carries it to the owner as a W3C
// traceparent NATS header. The owner makes a server span
// "strata.forwarded", its child, with its own tracer (Config.Tracer), and
// runs the request under it, so the owner's turn, append and projector
// spans are in the forwarder's trace. With tracing off on either side
// nothing is made there; the header is only sent when a span is.

const tracerName = "github.com/strata-objects/strata"

// traceForward starts the forwarding span if ctx's span is recording.
func traceForward(ctx context.Context, owner string, env *Envelope) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(tracerName).Start(ctx, "strata.forward",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("strata.owner", owner), attribute.String("strata.class", env.Class),
			attribute.String("strata.kind", env.Kind.String())))
}

// traceServed starts the owner's span for a forwarded request whose
// context came with the forwarder's (a remote parent), if this node traces.
func (r *Router) traceServed(ctx context.Context, env *Envelope) (context.Context, trace.Span) {
	if r.cfg.Tracer == nil || !trace.SpanContextFromContext(ctx).IsRemote() {
		return ctx, nil
	}
	return r.cfg.Tracer.Start(ctx, "strata.forwarded",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("strata.node", r.cfg.Node), attribute.String("strata.from", env.From),
			attribute.String("strata.class", env.Class), attribute.String("strata.kind", env.Kind.String())))
}

// endSpan ends a span of this file with err, if there is a span.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "request failed")
	}
	span.End()
}

var kindNames = [...]string{KindCall: "call", KindFetch: "fetch", KindAlarm: "alarm", KindGetAlarms: "get-alarms",
	KindSetAlarm: "set-alarm", KindDeleteAlarm: "delete-alarm", KindWSConnect: "ws-connect", KindWSMessage: "ws-message",
	KindWSClose: "ws-close", KindWSError: "ws-error"}

// String names the kind in spans.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}
