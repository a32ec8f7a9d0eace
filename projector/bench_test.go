package projector

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/benchcpu"
	"github.com/strata-objects/strata/log"
)

// benchRecords makes records over 1,000 objects, round robin, each one
// turn putting one ~200-byte value under one of 16 keys, generated n at a
// time so that memory stays flat however large b.N grows.
type benchRecords struct {
	s    *stream
	objs []obj
	next int
}

func newBenchRecords(b *testing.B) *benchRecords {
	r := &benchRecords{s: newStream(b)}
	for i := range 1000 {
		r.objs = append(r.objs, newObj("bench", fmt.Sprint(i)))
	}
	return r
}

var benchValue = strings.Repeat("x", 200)

func (r *benchRecords) take(n int) []log.Record {
	recs := make([]log.Record, n)
	for i := range recs {
		o := r.objs[r.next%len(r.objs)]
		recs[i] = r.s.next(o, []log.Write{put(fmt.Sprint("k", r.next%16), benchValue)})
		r.next++
	}
	return recs
}

// BenchmarkApply measures synchronous Apply in batches of BatchMax, on
// disk: one op is one record.
func BenchmarkApply(b *testing.B) {
	p := open(b, Config{Dir: b.TempDir()})
	runBatches(b, batchMaxDefault, p.Apply)
}

// BenchmarkSubmit measures the asynchronous path: Submit, and Flush after
// each batch's worth. One op is one record.
func BenchmarkSubmit(b *testing.B) {
	p := open(b, Config{Dir: b.TempDir()})
	runBatches(b, batchMaxDefault, func(recs []log.Record) error { return submitAll(p, recs) })
}

// BenchmarkSubmitWatermarks is the asynchronous path as a node runs it,
// with TrackWatermarks on a log of one shard (so every record moves the
// watermark), flushed every batch records: W3's projector sees batches of
// a few records, so what it pays per batch counts. One op is one record.
func BenchmarkSubmitWatermarks(b *testing.B) {
	for _, batch := range []int{2, 64} {
		b.Run(fmt.Sprint("batch-", batch), func(b *testing.B) {
			srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: b.TempDir(), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(context.Background())
			ctx := context.Background()
			l, err := log.Open(ctx, log.Config{Server: srv, Logger: quiet, Shards: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close(ctx)
			p := open(b, Config{Dir: b.TempDir(), Log: l, TrackWatermarks: true})
			runBatches(b, batch, func(recs []log.Record) error { return submitAll(p, recs) })
		})
	}
}

// runBatches hands fn the records of b.N ops, batch at a time, generated
// off the clock, and reports records/s and cpu-µs/op: the process's CPU
// time inside fn per record.
func runBatches(b *testing.B, batch int, fn func([]log.Record) error) {
	gen := newBenchRecords(b)
	var cpu time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		recs := gen.take(min(batch, b.N-done))
		b.StartTimer()
		start := benchcpu.Now()
		if err := fn(recs); err != nil {
			b.Fatal(err)
		}
		cpu += benchcpu.Now() - start
		done += len(recs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

// submitAll submits recs and flushes, so that they are applied before the
// clock stops (else the apply goroutine would work off the clock).
func submitAll(p *Projector, recs []log.Record) error {
	ctx := context.Background()
	for _, r := range recs {
		if err := p.Submit(ctx, r); err != nil {
			return err
		}
	}
	return p.Flush(ctx)
}
