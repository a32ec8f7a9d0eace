package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/otlptest"
)

// postTraced posts an increment of counter name to base with a sampled
// traceparent of trace tid and parent span pid, and returns the node that
// ran it.
func postTraced(t *testing.T, base, name, tid, pid string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/objects/counter/"+name+"/rpc/increment", strings.NewReader(`{"by":1}`))
	req.Header.Set("Traceparent", "00-"+tid+"-"+pid+"-01")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("increment %s: %d", name, resp.StatusCode)
	}
	return resp.Header.Get("Strata-Node")
}

// waitChain polls the collector until trace tid holds a chain of spans
// named names, each the child of the one before, the first the child of
// parent; it returns them.
func waitChain(t *testing.T, col *otlptest.Collector, tid, parent string, names ...string) []otlptest.Span {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // the exporter sends every 5 s; the machine is loaded
	for {
		spans := col.Trace(tid)
		chain, missing := followChain(spans, parent, names)
		if missing == "" {
			return chain
		}
		if _, err := col.Spans(); err != nil {
			t.Fatalf("collector: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %s; it holds:\n%s", tid, missing, spanList(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func followChain(spans []otlptest.Span, parent string, names []string) ([]otlptest.Span, string) {
	var chain []otlptest.Span
	for _, name := range names {
		found := false
		for _, s := range spans {
			if s.Name == name && s.Parent == parent {
				chain, parent, found = append(chain, s), s.SpanID, true
				break
			}
		}
		if !found {
			return chain, fmt.Sprintf("no span %s whose parent is %s", name, parent)
		}
	}
	return chain, ""
}

func spanList(spans []otlptest.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	return b.String()
}

// A node with --otlp-endpoint sends its spans to a real OTLP/HTTP
// receiver, which decodes the exporter's protobuf: one request's trace is
// the client's span → the gateway's request → the turn → the append → the
// projector's apply, each the child of the one before, and the client's
// trace id is in the history of the object its request changed.
func TestTracingExport(t *testing.T) {
	col := otlptest.Start()
	defer col.Close()
	p := serve(t, t.TempDir(), "--otlp-endpoint", col.URL, "--trace-sample", "1")
	const tid, client = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	postTraced(t, p.url, "traced", tid, client)
	code, body := authDo(t, "", "GET", p.url+"/v1/objects/counter/traced/history", "")
	if code != 200 || !strings.Contains(body, `"trace_id":"`+tid+`"`) {
		t.Fatalf("history: %d %s, want the client's trace id", code, body)
	}
	chain := waitChain(t, col, tid, client, "strata.request POST", "strata.turn", "strata.append", "strata.project")
	if a := chain[1].Attrs; a["strata.class"] != "counter" || a["strata.method"] != "increment" || a["strata.commit_wait_us"] == "" {
		t.Errorf("turn span attributes %v", a)
	}
	if a := chain[2].Attrs; a["strata.turns"] != "1" {
		t.Errorf("append span attributes %v, want strata.turns 1", a)
	}
}

// In a three-node cluster, a request sent to a node that does not own the object is
// forwarded with its trace context in NATS headers: the forwarder's
// request and forward spans and the owner's forwarded, turn, append and
// projector spans are one chain in the client's trace, each on its node.
func TestTracingForwarded(t *testing.T) {
	col := otlptest.Start()
	defer col.Close()
	c := startCluster(t, 3, "--otlp-endpoint", col.URL, "--trace-sample", "0") // R3 streams need three

	for i := 0; i < 64; i++ {
		tid := fmt.Sprintf("%032x", 0xabc000+i)
		const client = "00f067aa0ba902b7"
		ranOn := postTraced(t, c.URL(0), fmt.Sprintf("fwd-%d", i), tid, client)
		if ranOn == c.Name(0) {
			continue // owned by the node asked: not forwarded
		}
		chain := waitChain(t, col, tid, client, "strata.request POST", "strata.forward", "strata.forwarded", "strata.turn", "strata.append", "strata.project")
		want := []string{c.Name(0), c.Name(0), ranOn, ranOn, ranOn, ranOn}
		for j, s := range chain {
			if s.Node != want[j] {
				t.Errorf("span %s on node %q, want %q", s.Name, s.Node, want[j])
			}
		}
		return
	}
	t.Fatal("64 objects, none owned by another node")
}
