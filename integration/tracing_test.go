package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A node with --otlp-endpoint sends its spans to a real OTLP/HTTP
// receiver (the exporter's own protobuf POSTs), and the client's trace id
// is in the history of the object its request changed.
func TestTracingExport(t *testing.T) {
	var posts, bytes atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/v1/traces" {
			b, _ := io.ReadAll(r.Body)
			posts.Add(1)
			bytes.Add(int64(len(b)))
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	p := serve(t, t.TempDir(), "--otlp-endpoint", collector.URL, "--trace-sample", "1")
	req, _ := http.NewRequest("POST", p.url+"/v1/objects/counter/traced/rpc/increment", strings.NewReader(`{"by":1}`))
	req.Header.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("increment: %d", resp.StatusCode)
	}
	code, body := authDo(t, "", "GET", p.url+"/v1/objects/counter/traced/history", "")
	if code != 200 || !strings.Contains(body, `"trace_id":"0af7651916cd43dd8448eb211c80319c"`) {
		t.Fatalf("history: %d %s, want the client's trace id", code, body)
	}
	if err := p.stop(); err != nil { // a clean stop flushes the batcher
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for posts.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if posts.Load() == 0 || bytes.Load() == 0 {
		t.Fatalf("the collector got %d posts (%d bytes), want spans\n%s", posts.Load(), bytes.Load(), p.output())
	}
}
