package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// Labels are bounded: an unregistered class or method is "other".
func TestLabelsBounded(t *testing.T) {
	m := New(map[string][]string{"counter": {"increment"}}, Sources{})
	m.ObserveRequest("counter", "rpc", "increment", 200, time.Millisecond)
	m.ObserveRequest("counter", "rpc", "nope", 404, time.Millisecond)
	m.ObserveRequest("secret", "rpc", "x", 404, time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("counter", "rpc", "increment", "200")); got != 1 {
		t.Errorf("counter increment 200 = %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("counter", "rpc", Other, "404")); got != 1 {
		t.Errorf("counter other 404 = %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(Other, "rpc", Other, "404")); got != 1 {
		t.Errorf("other other 404 = %v", got)
	}
	out, err := testutil.CollectAndFormat(m.requests, expfmt.TypeTextPlain, "strata_http_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "secret") || strings.Contains(s, "nope") {
		t.Errorf("an unregistered name became a label:\n%s", s)
	}
}

// BenchmarkHotPath is what metrics add to one RPC that writes one event:
// the request, its turn and (at worst, a group of one) its commit round.
func BenchmarkHotPath(b *testing.B) {
	m := New(map[string][]string{"counter": {"increment", "get"}}, Sources{})
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest("counter", "rpc", "increment", 200, 900*time.Microsecond)
		m.ObserveTurn("counter", 20*time.Microsecond, false)
		m.ObserveCommit(0, 1, 300, 600*time.Microsecond)
	}
}
