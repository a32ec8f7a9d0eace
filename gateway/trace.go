package gateway

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (OpenTelemetry; off unless Config.Tracer is set):
//
//   - A client's W3C traceparent is accepted: with tracing on, the
//     request's span is its child; with tracing off, its trace id is still
//     recorded in the cause of the events the request causes.
//   - The trace id recorded (log.Cause.TraceID) is the client's, or that of
//     a span this node sampled: an id nobody exported links to nothing,
//     so an unsampled request without traceparent records none.

var w3c = propagation.TraceContext{}

type traceIDKey struct{}

// startTrace reads r's traceparent and, with a tracer, starts the
// request's span. It returns r with the trace id to record in its context
// and, if a span started, the function that ends it with the status.
func (g *Gateway) startTrace(r *http.Request) (*http.Request, func(code int)) {
	var parent context.Context = r.Context()
	if r.Header.Get("Traceparent") != "" {
		parent = w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	}
	remote := trace.SpanContextFromContext(parent)
	if g.cfg.Tracer == nil {
		if !remote.IsValid() {
			return r, nil
		}
		return r.WithContext(context.WithValue(r.Context(), traceIDKey{}, remote.TraceID().String())), nil
	}
	ctx, span := g.cfg.Tracer.Start(parent, "strata.request "+r.Method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	sc := span.SpanContext()
	if sc.IsSampled() || remote.IsValid() {
		ctx = context.WithValue(ctx, traceIDKey{}, sc.TraceID().String())
	}
	r = r.WithContext(ctx)
	return r, func(code int) {
		class, action, method := requestLabels(r)
		span.SetAttributes(attribute.Int("http.response.status_code", code), attribute.String("strata.class", class),
			attribute.String("strata.action", action), attribute.String("strata.method", method))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		span.End()
	}
}

// traceID is the trace id to record in the cause of r's turns, or "".
func traceID(r *http.Request) string {
	id, _ := r.Context().Value(traceIDKey{}).(string)
	return id
}
