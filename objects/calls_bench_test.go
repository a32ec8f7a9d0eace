package objects

import (
	"context"
	"sort"
	"testing"
	"time"
)

// BenchmarkCalls compares, on one node, a client's call of relay b (a turn
// that writes nothing: no append) with a client's call of relay a whose
// turn calls b through a stub (the commit point finds nothing to commit;
// a's turn then records its call: one append). Latency percentiles are
// reported as p50-ms and p99-ms.
//
//	go test -run '^$' -bench BenchmarkCalls -benchtime 2000x ./objects/
func BenchmarkCalls(b *testing.B) {
	for _, c := range []struct {
		name string
		from string
		in   RelayIn
	}{
		{"direct", "b", RelayIn{}},
		{"stub", "a", RelayIn{Path: []string{"b"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, withRelay)
			ctx := context.Background()
			if _, err := relayCall(h, ctx, c.from, c.in); err != nil { // activate both
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := relayCall(h, ctx, c.from, c.in); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
