package objects

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/benchcpu"
	"github.com/strata-objects/strata/log"
)

// BenchmarkWritePath measures the write path against the raw JetStream
// limit in one run, on one embedded server with fsync before every ack, and
// reports the ratios the issue asks for:
//
//	go test -run x -bench WritePath -benchtime 3s ./objects
//
// Sub-benchmarks, in order (each ns/op is per acknowledged write):
//
//	raw-sync         JetStream publish with ack, one at a time, event-sized messages
//	append           log.Append, one at a time
//	turn             one object's turn end to end (RPC → event acked), sequential
//	turn-32          one object, 32 concurrent callers (per-object group commit)
//	raw-async-1000   JetStream async publish of the same messages over 1,000 subjects, 32 acks in flight
//	turn-1000x32     1,000 objects, 32 concurrent callers (node-wide group commit)
//	ratios           the ratios, as metrics
func BenchmarkWritePath(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	raw, err := h.log.Raw(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close(ctx)

	// A message the size of a counter turn's event.
	sample := &log.Event{Format: log.FormatVersion, Class: "tally", ID: IDFromName("tally", "x"), Version: 1, Time: time.Now().UnixNano(),
		Turns: []log.Turn{{Cause: Cause{Via: ViaRPC, Method: "add", RequestID: "0123456789abcdef01234567"}, Writes: []log.Write{{Op: log.OpPut, Key: "n", Value: []byte("12345")}}}}}
	msg, err := log.Encode(sample)
	if err != nil {
		b.Fatal(err)
	}
	nsPerOp := map[string]float64{}
	record := func(name string, b *testing.B) {
		nsPerOp[name] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(1e9/nsPerOp[name], "writes/s")
	}

	round := 0
	b.Run("raw-sync", func(b *testing.B) {
		round++ // a fresh subject per round, so the expectation starts at 0
		subj := log.RawSubject(1_000_000 + round)
		var expect uint64
		for i := 0; i < b.N; i++ {
			seq, err := raw.PublishSync(ctx, subj, msg, expect)
			if err != nil {
				b.Fatal(err)
			}
			expect = seq
		}
		record("raw-sync", b)
	})
	b.Run("append", func(b *testing.B) {
		id := NewUniqueID()
		var expect uint64
		for i := 0; i < b.N; i++ {
			e := *sample
			e.ID, e.Version = id, uint64(i+1)
			rec, err := h.log.Append(ctx, &e, expect)
			if err != nil {
				b.Fatal(err)
			}
			expect = rec.Seq
		}
		record("append", b)
	})
	b.Run("turn", func(b *testing.B) {
		name := fmt.Sprint("seq-", b.N)
		b.ReportAllocs()
		cpu := benchcpu.Start(b)
		for i := 0; i < b.N; i++ {
			if _, err := h.add(ctx, name, 1); err != nil {
				b.Fatal(err)
			}
		}
		cpu()
		record("turn", b)
	})
	parallel := func(b *testing.B, callers int, name func(i uint64) string) {
		var n atomic.Uint64
		var wg sync.WaitGroup
		per := b.N / callers
		b.ResetTimer()
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if _, err := h.add(ctx, name(n.Add(1)), 1); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.Run("turn-32", func(b *testing.B) {
		obj := fmt.Sprint("one-", b.N)
		cpu := benchcpu.Start(b)
		parallel(b, 32, func(uint64) string { return obj })
		cpu()
		record("turn-32", b)
	})
	b.Run("raw-async-1000", func(b *testing.B) {
		subjs, data := make([]string, b.N), make([][]byte, b.N)
		for i := range subjs {
			subjs[i], data[i] = log.RawSubject(i%1000), msg
		}
		b.ResetTimer()
		if err := raw.PublishAsync(ctx, subjs, data, 32); err != nil {
			b.Fatal(err)
		}
		record("raw-async-1000", b)
	})
	b.Run("turn-1000x32", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, uint64(b.N)))
		names := make([]string, 1000)
		for i := range names {
			names[i] = fmt.Sprintf("many-%d-%d", b.N, i)
		}
		perm := rng.Perm(len(names))
		cpu := benchcpu.Start(b)
		parallel(b, 32, func(i uint64) string { return names[perm[i%1000]] })
		cpu()
		record("turn-1000x32", b)
	})
	b.Run("ratios", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
		}
		ratio := func(a, base string) float64 { return nsPerOp[base] / nsPerOp[a] }
		b.ReportMetric(ratio("append", "raw-sync"), "append/raw-sync")
		b.ReportMetric(ratio("turn", "raw-sync"), "turn/raw-sync")
		b.ReportMetric(ratio("turn-32", "turn"), "turn32/turn")
		b.ReportMetric(ratio("turn-1000x32", "raw-sync"), "many/raw-sync")
		b.ReportMetric(ratio("turn-1000x32", "raw-async-1000"), "many/raw-async")
		keys := make([]string, 0, len(nsPerOp))
		for k := range nsPerOp {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.Logf("%-16s %8.0f writes/s", k, 1e9/nsPerOp[k])
		}
	})
}

// BenchmarkActivate measures an activation from the snapshot: each op
// releases an object (one event, projected) and sends it a turn, which
// loads it anew (the snapshot's meta, the log's last event) and writes.
//
//	go test -run x -bench Activate -benchtime 2000x ./objects
func BenchmarkActivate(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	const objects = 100
	names := make([]string, objects)
	for i := range names {
		names[i] = fmt.Sprintf("cold-%d", i)
		if _, err := h.add(ctx, names[i], 1); err != nil {
			b.Fatal(err)
		}
	}
	h.flush()
	b.ResetTimer()
	cpu := benchcpu.Start(b)
	for i := 0; i < b.N; i++ {
		name := names[i%objects]
		if _, err := h.rt.Release(ctx, "tally", IDFromName("tally", name)); err != nil {
			b.Fatal(err)
		}
		if _, err := h.add(ctx, name, 1); err != nil {
			b.Fatal(err)
		}
	}
	cpu()
}
