package projector

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/log"
)

// Tracing (Config.Tracer; off when nil). The apply goroutine makes a span
// "strata.project" for each traced turn of each event of a batch: a turn
// whose cause names the append span of its event (log.Cause.SpanID, set
// only for sampled turns by objects/spans.go). The span is that append
// span's child, in its trace, and lasts from the batch's start to its
// commit; strata.batch is the batch's size. Events without a span id
// cost one look at their causes, and nothing at all with tracing off.

// traceBatch starts the spans of the traced events in recs.
func (p *Projector) traceBatch(recs []log.Record) []trace.Span {
	var spans []trace.Span
	for _, rec := range recs {
		ev := rec.Event
		if ev == nil {
			continue
		}
		for _, t := range ev.Turns {
			if t.Cause.SpanID == "" {
				continue
			}
			tid, err1 := trace.TraceIDFromHex(t.Cause.TraceID)
			sid, err2 := trace.SpanIDFromHex(t.Cause.SpanID)
			if err1 != nil || err2 != nil {
				continue // log.Event.validate refuses such a cause; nothing to link
			}
			parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
			_, span := p.cfg.Tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "strata.project",
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("strata.class", ev.Class), attribute.String("strata.id", ev.ID.String()),
					attribute.Int64("strata.version", int64(ev.Version)), attribute.Int("strata.batch", len(recs))))
			spans = append(spans, span)
		}
	}
	return spans
}

// endBatch ends the spans of a batch with its outcome.
func endBatch(spans []trace.Span, err error) {
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "apply failed")
		}
		span.End()
	}
}
