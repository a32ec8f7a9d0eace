package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// traceTurns reads the trace ids of an object's history.
func traceTurns(t *testing.T, gw http.Handler, path string) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	gw.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1"+path+"/history", nil))
	var ids []string
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		var e historyEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("history line %q: %v", sc.Text(), err)
		}
		for _, tu := range e.Turns {
			ids = append(ids, tu.TraceID)
		}
	}
	return ids
}

func post(gw http.Handler, path, traceparent string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "http://127.0.0.1"+path+"/rpc/increment", strings.NewReader(`{"by":1}`))
	if traceparent != "" {
		r.Header.Set("Traceparent", traceparent)
	}
	rec := httptest.NewRecorder()
	gw.ServeHTTP(rec, r)
	return rec
}

// A client's traceparent is recorded in the cause with tracing off; with
// tracing on, the request's span is its child, and a sampled request
// without one records the span's own trace id; an unsampled one records
// none.
func TestTraceIDInCause(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const parentID = "4bf92f3577b34da6a3ce929d0e0e4736"

	off, err := New(Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	if rec := post(off, "/v1/objects/counter/t-off", parent); rec.Code != 200 {
		t.Fatalf("increment: %d %s", rec.Code, rec.Body)
	}
	post(off, "/v1/objects/counter/t-off", "")
	post(off, "/v1/objects/counter/t-off", "00-zz-bad-01") // malformed: ignored
	if ids := traceTurns(t, off, "/v1/objects/counter/t-off"); len(ids) != 3 || ids[0] != parentID || ids[1] != "" || ids[2] != "" {
		t.Fatalf("tracing off: trace ids %q, want [%s \"\" \"\"]", ids, parentID)
	}

	rec := tracetest.NewSpanRecorder()
	always := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	on, err := New(Config{Backend: n.Runtime, Tracer: always.Tracer("test")})
	if err != nil {
		t.Fatal(err)
	}
	post(on, "/v1/objects/counter/t-on", parent)
	post(on, "/v1/objects/counter/t-on", "")
	var spans []sdktrace.ReadOnlySpan // the requests' (the runtime's turn and append spans are their children)
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "strata.request") {
			spans = append(spans, s)
		}
	}
	if len(spans) != 2 {
		t.Fatalf("%d request spans ended, want 2", len(spans))
	}
	if got := spans[0].Parent().SpanID().String(); got != "00f067aa0ba902b7" || spans[0].SpanContext().TraceID().String() != parentID {
		t.Errorf("span 1: parent %s trace %s, want the client's", got, spans[0].SpanContext().TraceID())
	}
	own := spans[1].SpanContext().TraceID().String()
	if ids := traceTurns(t, on, "/v1/objects/counter/t-on"); len(ids) != 2 || ids[0] != parentID || ids[1] != own {
		t.Fatalf("tracing on: trace ids %q, want [%s %s]", ids, parentID, own)
	}

	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	unsampled, err := New(Config{Backend: n.Runtime, Tracer: never.Tracer("test")})
	if err != nil {
		t.Fatal(err)
	}
	post(unsampled, "/v1/objects/counter/t-never", "")
	if ids := traceTurns(t, unsampled, "/v1/objects/counter/t-never"); len(ids) != 1 || ids[0] != "" {
		t.Fatalf("unsampled: trace ids %q, want none", ids)
	}
}
