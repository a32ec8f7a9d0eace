package objects

import (
	"context"
	"testing"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// spansByName indexes ended spans by name (the last of each name).
func spansByName(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		m[s.Name()] = s
	}
	return m
}

// A turn dispatched under a recording span is traced: turn → append →
// project, each the child of the one before, in the caller's trace; the
// event's cause records the trace and the append span, which is how the
// projector finds its parent. A turn without a span makes none and records
// none.
func TestTurnSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	h := newHarnessProj(t, startServer(t), log.Config{}, func(c *projector.Config) { c.Tracer = tp.Tracer("projector") })

	ctx, client := tp.Tracer("test").Start(context.Background(), "client")
	if _, err := h.add(ctx, "traced", 2); err != nil {
		t.Fatal(err)
	}
	client.End()
	h.flush()
	got := spansByName(rec.Ended())
	turn, appendSpan, project := got["strata.turn"], got["strata.append"], got["strata.project"]
	if turn == nil || appendSpan == nil || project == nil {
		t.Fatalf("spans %v, want strata.turn, strata.append and strata.project", names(rec.Ended()))
	}
	tid := client.SpanContext().TraceID()
	for _, c := range []struct {
		span   sdktrace.ReadOnlySpan
		parent trace.SpanID
	}{{turn, client.SpanContext().SpanID()}, {appendSpan, turn.SpanContext().SpanID()}, {project, appendSpan.SpanContext().SpanID()}} {
		if c.span.SpanContext().TraceID() != tid || c.span.Parent().SpanID() != c.parent {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", c.span.Name(), c.span.SpanContext().TraceID(), c.span.Parent().SpanID(), tid, c.parent)
		}
	}
	attrs := map[string]bool{}
	for _, a := range turn.Attributes() {
		attrs[string(a.Key)] = true
	}
	for _, k := range []string{"strata.class", "strata.method", "strata.queue_wait_us", "strata.handler_us", "strata.commit_wait_us"} {
		if !attrs[k] {
			t.Errorf("turn span lacks %s: %v", k, turn.Attributes())
		}
	}
	if ev := turn.Events(); len(ev) != 2 || ev[0].Name != "handler.start" || ev[1].Name != "handler.end" {
		t.Errorf("turn span events %v, want handler.start, handler.end", ev)
	}
	last, err := h.log.Last(context.Background(), "tally", IDFromName("tally", "traced"))
	if err != nil {
		t.Fatal(err)
	}
	if c := last.Event.Turns[0].Cause; c.TraceID != tid.String() || c.SpanID != appendSpan.SpanContext().SpanID().String() {
		t.Errorf("cause trace %q span %q, want %s %s", c.TraceID, c.SpanID, tid, appendSpan.SpanContext().SpanID())
	}

	before := len(rec.Ended())
	if _, err := h.add(context.Background(), "traced", 1); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if n := len(rec.Ended()); n != before {
		t.Errorf("an untraced turn made %d spans: %v", n-before, names(rec.Ended()[before:]))
	}
	last, err = h.log.Last(context.Background(), "tally", IDFromName("tally", "traced"))
	if err != nil {
		t.Fatal(err)
	}
	if c := last.Event.Turns[0].Cause; c.TraceID != "" || c.SpanID != "" {
		t.Errorf("untraced turn's cause: trace %q span %q, want none", c.TraceID, c.SpanID)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// With tracing off (no span in the context) or a request the sampler left
// out (a span that does not record), the tracing of a turn allocates
// nothing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	unsampled, span := never.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	for name, ctx := range map[string]context.Context{"off": context.Background(), "unsampled": unsampled} {
		if allocs := testing.AllocsPerRun(100, func() { turnTracingCalls(ctx) }); allocs != 0 {
			t.Errorf("%s: %v allocations per turn, want 0", name, allocs)
		}
	}
}

// turnTracingCalls makes the tracing calls one turn makes on the write
// path (dispatch, handler, release).
func turnTracingCalls(ctx context.Context) {
	_, tt := traceTurn(ctx, "tally", "add")
	tt.handlerStart()
	tt.handlerEnd()
	tt.end(nil)
}

// BenchmarkTurnTracingOff is what tracing adds to a turn when it is off
// or the request is not sampled: 0 allocs/op (the end-to-end turn's own
// allocations vary by more than one from run to run with the projector's
// batches, so BenchmarkTurnTracing cannot show a zero):
//
//	go test -run x -bench TurnTracingOff -benchmem ./objects
func BenchmarkTurnTracingOff(b *testing.B) {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	unsampled, span := never.Tracer("b").Start(context.Background(), "request")
	defer span.End()
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"off", context.Background()}, {"unsampled", unsampled}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				turnTracingCalls(c.ctx)
			}
		})
	}
}

// BenchmarkTurnTracing runs one object's writing turn end to end (fsync
// before the ack) with tracing off, on but unsampled, and sampled: what a
// sampled turn's spans cost beside the fsync:
//
//	go test -run x -bench TurnTracing -benchmem ./objects
func BenchmarkTurnTracing(b *testing.B) {
	rec := tracetest.NewSpanRecorder()
	always := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	h := newHarnessProj(b, startServer(b), log.Config{}, func(c *projector.Config) { c.Tracer = always.Tracer("projector") })
	unsampledCtx, s1 := never.Tracer("b").Start(context.Background(), "request")
	defer s1.End()
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, func())
	}{
		{"off", func() (context.Context, func()) { return context.Background(), func() {} }},
		{"unsampled", func() (context.Context, func()) { return unsampledCtx, func() {} }},
		{"sampled", func() (context.Context, func()) {
			ctx, s := always.Tracer("b").Start(context.Background(), "request")
			return ctx, func() { s.End() }
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				ctx, end := c.ctx()
				if _, err := h.add(ctx, "bench-"+c.name, 1); err != nil {
					b.Fatal(err)
				}
				end()
			}
			b.StopTimer()
			rec.Reset()
		})
	}
}
