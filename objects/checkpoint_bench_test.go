package objects

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// BenchmarkHistory measures reading an object's past when it has a long
// history (100,000 events; STRATA_BENCH_EVENTS changes it):
//
//	go test -run x -bench History -benchtime 10x ./objects
//
// Sub-benchmarks (ns/op is per activation, read or rebuild):
//
//	activate/checkpoints     first turn on a node with an empty snapshot: install the newest checkpoint, read the events after it
//	activate/no-checkpoints  the same node with checkpoints off: read every event
//	time-travel/checkpoints  state at a random version (newest checkpoint at or before it + events)
//	time-travel/full-replay  the same from version 1, as before checkpoints
//	rebuild                  objects.Rebuild of the whole log into an empty snapshot (events/s)
//	raw-read                 reading the same streams with log.Scan and nothing else (events/s)
//
// The fixture is written once with log.Append on an embedded server that
// fsyncs periodically (the reads measured here do not depend on fsync),
// with a checkpoint every 1,000 events derived as the checkpointer does,
// except at the very end: the newest is 1,000 events behind the object's
// last, so activation reads the most events it can.
func BenchmarkHistory(b *testing.B) {
	events := 100_000
	if v, err := strconv.Atoi(os.Getenv("STRATA_BENCH_EVENTS")); err == nil && v > 0 {
		events = v
	}
	ctx := context.Background()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: b.TempDir(), Logger: quiet, SyncInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(ctx) }) // after the harness closes
	h := newHarnessOn(b, srv)
	ref := h.ref("scratch", "long")
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	var last log.Record
	for v := 1; v <= events; v++ {
		ev := &log.Event{Format: log.FormatVersion, Class: "scratch", ID: ref.ID, Version: uint64(v), Time: time.Now().UnixNano(), PrevHash: hashOf(last)}
		var writes []log.Write
		for n := 1 + rng.IntN(3); n > 0; n-- {
			k := fmt.Sprintf("key-%04d", rng.IntN(1000))
			if rng.IntN(10) == 0 {
				writes = append(writes, log.Write{Op: log.OpDelete, Key: k})
			} else {
				writes = append(writes, log.Write{Op: log.OpPut, Key: k, Value: fmt.Appendf(nil, `{"v":%d,"pad":"0123456789abcdef"}`, v)})
			}
		}
		ev.Turns = []log.Turn{{Cause: Cause{Via: ViaRPC, Method: "do", RequestID: strconv.Itoa(v)}, Writes: writes}}
		if v == 1 {
			ev.Name = "long"
		}
		if last, err = h.log.Append(ctx, ev, last.Seq); err != nil {
			b.Fatal(err)
		}
		// The newest checkpoint is the one before the end: activation
		// then reads the most events it ever reads (1,000), the worst case.
		if v%DefaultCheckpointEvery == 0 && v < events {
			if err := h.rt.ckpt.write(ctx, "scratch", ref.ID, uint64(v)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("fixture: %d events with %d checkpoints in %s", events, (events-1)/DefaultCheckpointEvery, time.Since(start).Round(time.Millisecond))

	// node opens a runtime over the log with an empty snapshot.
	node := func(b *testing.B, every int) (*Runtime, func()) {
		p, err := projector.Open(projector.Config{Dir: b.TempDir(), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		rt, err := New(Config{Log: h.log, Projector: p, Classes: testClasses(), Logger: quiet, Checkpoints: CheckpointConfig{Every: every}})
		if err != nil {
			b.Fatal(err)
		}
		return rt, func() {
			rt.Close(ctx)
			p.Close(ctx)
		}
	}
	for _, c := range []struct {
		name  string
		every int
	}{{"checkpoints", 0}, {"no-checkpoints", -1}} {
		b.Run("activate/"+c.name, func(b *testing.B) {
			var read uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rt, closeNode := node(b, c.every)
				before := h.log.Stats().Read
				b.StartTimer()
				codec := &valueCodec{in: fnInput{func(c *Ctx, _ *scratch) (any, error) {
					kvs, err := c.Storage().List(ListOptions{Limit: 10})
					return len(kvs), err
				}}}
				if _, err := rt.Call(ctx, ref, "do", []byte("x"), codec, Cause{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				read += h.log.Stats().Read - before
				closeNode()
				b.StartTimer()
			}
			b.ReportMetric(float64(read)/float64(b.N), "events-read/op")
		})
	}
	b.Run("time-travel/checkpoints", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			v := 1 + rng.Uint64N(uint64(events))
			st, err := h.rt.StateAt(ctx, ref, history.At{Version: v})
			if err != nil || st.Version != v {
				b.Fatal(v, st.Version, err)
			}
		}
	})
	b.Run("time-travel/full-replay", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			v := 1 + rng.Uint64N(uint64(events))
			rep, err := history.Replay(ctx, h.log, "scratch", ref.ID, nil, func(ev *log.Event) bool { return ev.Version > v }, nil)
			if err != nil || rep.Version != v {
				b.Fatal(v, err)
			}
		}
	})
	var total uint64
	b.Run("rebuild", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			p, err := projector.Open(projector.Config{Dir: b.TempDir(), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			n, err := Rebuild(ctx, h.log, p, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			total = n
			p.Close(ctx)
			b.StartTimer()
		}
		b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("raw-read", func(b *testing.B) {
		var n uint64
		for i := 0; i < b.N; i++ {
			for shard := 0; shard < h.log.Shards(); shard++ {
				if err := h.log.Scan(ctx, shard, 1, func(log.Record) error { n++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	})
}

func hashOf(r log.Record) log.Hash {
	if r.Event == nil {
		return log.Hash{}
	}
	return r.Hash()
}
