package projector

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// realLog is a log on a real embedded JetStream server in a temporary
// folder, with helpers to append an object's next events.
type realLog struct {
	t    testing.TB
	log  *log.Log
	evs  *stream // builds chained events; its sequences are not the log's
	seqs map[obj]uint64
}

func openRealLog(t testing.TB) *realLog {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	l, err := log.Open(context.Background(), log.Config{Server: srv, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return &realLog{t: t, log: l, evs: newStream(t), seqs: map[obj]uint64{}}
}

// append appends o's next event, one turn of writes, and returns the
// acknowledged record.
func (r *realLog) append(o obj, writes ...log.Write) log.Record {
	r.t.Helper()
	ev := r.evs.next(o, writes).Event
	rec, err := r.log.Append(context.Background(), ev, r.seqs[o])
	if err != nil {
		r.t.Fatal(err)
	}
	r.seqs[o] = rec.Seq
	r.evs.last[o] = rec
	return rec
}

// failing fails commits while on; it counts the commits it failed.
type failing struct {
	on     atomic.Bool
	failed atomic.Int64
}

var errInjected = errors.New("injected commit failure")

func (f *failing) hook(int) error {
	if f.on.Load() {
		f.failed.Add(1)
		return errInjected
	}
	return nil
}

func submit(t testing.TB, p *Projector, recs ...log.Record) {
	t.Helper()
	for _, rec := range recs {
		if err := p.Submit(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metaVersion(t testing.TB, p *Projector, o obj) uint64 {
	t.Helper()
	m, err := p.Meta(o.class, o.id)
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

// A batch whose commit fails loses its records; the next event of the same
// object arrives after a gap, and the projector reads the missing events
// from the log instead of skipping it (issue 15, defect 4).
func TestFailedBatchHealsAtTheNextEvent(t *testing.T) {
	rl := openRealLog(t)
	var f failing
	p := open(t, Config{Log: rl.log, BeforeCommit: f.hook})
	o := newObj("kv", "live")

	f.on.Store(true)
	submit(t, p, rl.append(o, put("a", "1")), rl.append(o, put("b", "2")))
	if err := p.Flush(context.Background()); !errors.Is(err, errInjected) {
		t.Fatalf("flush after the failed batch: %v, want the injected failure", err)
	}
	f.on.Store(false)
	submit(t, p, rl.append(o, put("c", "3")))
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := metaVersion(t, p, o); v != 3 {
		t.Fatalf("applied version %d after the next event, want 3", v)
	}
	if got := state(t, p, o); len(got) != 3 || got["a"] != "1" || got["b"] != "2" || got["c"] != "3" {
		t.Fatalf("state %v", got)
	}
	if f.failed.Load() == 0 || p.Stats().GapsHealed+p.Stats().ObjectsHealed == 0 {
		t.Fatalf("failed %d commits, stats %+v", f.failed.Load(), p.Stats())
	}
}

// An object whose only events were in the failed batch has no later event
// to reveal the gap: the projector remembers it and reads it again from
// the log once Badger commits again.
func TestFailedBatchHealsWithoutLaterEvents(t *testing.T) {
	rl := openRealLog(t)
	var f failing
	var applied appliedLog
	p := open(t, Config{Log: rl.log, BeforeCommit: f.hook, OnApplied: applied.add})
	objs := []obj{newObj("kv", "one"), newObj("kv", "two"), newObj("counter", "three")}

	f.on.Store(true)
	for _, o := range objs {
		submit(t, p, rl.append(o, put("k", o.class)), rl.append(o, put("k2", "v")))
	}
	if err := p.Flush(context.Background()); !errors.Is(err, errInjected) {
		t.Fatalf("flush after the failed batch: %v, want the injected failure", err)
	}
	// Still failing: the retries fail too, and are retried again.
	waitUntil(t, "a failed retry", func() bool { return f.failed.Load() >= 2 })
	f.on.Store(false)
	waitUntil(t, "every object healed", func() bool {
		for _, o := range objs {
			if metaVersion(t, p, o) != 2 {
				return false
			}
		}
		return true
	})
	for _, o := range objs {
		if got := state(t, p, o); got["k"] != o.class || got["k2"] != "v" {
			t.Fatalf("%v: state %v", o, got)
		}
	}
	// OnApplied told the runtime: a live activation trims its overlay.
	seen := map[obj]uint64{}
	for _, a := range applied.all() {
		seen[obj{a.Class, a.ID}] = max(seen[obj{a.Class, a.ID}], a.Version)
	}
	for _, o := range objs {
		if seen[o] != 2 {
			t.Fatalf("OnApplied reported %v up to v%d, want v2", o, seen[o])
		}
	}
}

// Without a log to heal from, a gap is skipped, as before.
func TestGapWithoutLogIsSkipped(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	o := newObj("kv", "x")
	s.next(o, []log.Write{put("a", "1")})
	submit(t, p, s.next(o, []log.Write{put("b", "2")}))
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := metaVersion(t, p, o); v != 0 {
		t.Fatalf("applied v%d after a gap, want nothing", v)
	}
}

func watermark(t testing.TB, p *Projector, shard int) uint64 {
	t.Helper()
	w, err := p.Watermark(shard)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// With TrackWatermarks the shard's watermark follows the projector over
// consecutive sequences, and stops at a sequence not yet settled.
func TestWatermarkAdvancesOverSettledRuns(t *testing.T) {
	rl := openRealLog(t)
	p := open(t, Config{Log: rl.log, TrackWatermarks: true})
	shard := 0
	var recs []log.Record
	for i := 0; len(recs) < 6; i++ {
		o := newObj("kv", string(rune('a'+i)))
		if rl.log.ShardOf(o.id) != shard {
			continue
		}
		recs = append(recs, rl.append(o, put("k", "v")))
	}
	// The log's own sequences; every event of the shard is one of recs.
	for i, rec := range recs {
		if rec.Seq != uint64(i+1) {
			t.Fatalf("record %d at sequence %d", i, rec.Seq)
		}
	}
	// recs[2] is held back: the watermark stops before it.
	submit(t, p, recs[0], recs[1], recs[3], recs[4], recs[5])
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := watermark(t, p, shard); w != 2 {
		t.Fatalf("watermark %d with sequence 3 unsettled, want 2", w)
	}
	submit(t, p, recs[2])
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := watermark(t, p, shard); w != 6 {
		t.Fatalf("watermark %d with all settled, want 6", w)
	}
	// Records settled again (already applied) do not move it back.
	submit(t, p, recs[0])
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := watermark(t, p, shard); w != 6 {
		t.Fatalf("watermark %d after a repeat, want 6", w)
	}
	// Each move was committed with the records that made it.
	if n := p.stats.markCommits.Load(); n != 0 {
		t.Errorf("%d watermark commits of their own, want none", n)
	}
}

// A watermark is committed in the transaction that settles its records,
// so a batch that fails to commit moves no watermark, in Badger or in
// memory; its records, healed from the log, move it when they land.
func TestWatermarkCommitsWithItsRecords(t *testing.T) {
	rl := openRealLog(t)
	var f failing
	p := open(t, Config{Log: rl.log, TrackWatermarks: true, BeforeCommit: f.hook})
	shard := 0
	var recs []log.Record
	for i := 0; len(recs) < 4; i++ {
		o := newObj("kv", fmt.Sprint("w", i))
		if rl.log.ShardOf(o.id) == shard {
			recs = append(recs, rl.append(o, put("k", "v")))
		}
	}
	submit(t, p, recs[0], recs[1])
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w := watermark(t, p, shard); w != 2 {
		t.Fatalf("watermark %d, want 2", w)
	}
	f.on.Store(true)
	submit(t, p, recs[2], recs[3])
	if err := p.Flush(context.Background()); !errors.Is(err, errInjected) {
		t.Fatalf("flush after a failed commit: %v, want the injected failure", err)
	}
	if w := watermark(t, p, shard); w != 2 {
		t.Fatalf("watermark %d after its batch failed, want 2", w)
	}
	f.on.Store(false)
	waitUntil(t, "the failed batch to heal", func() bool { return watermark(t, p, shard) == 4 })
	if n := p.stats.markCommits.Load(); n != 0 {
		t.Errorf("%d watermark commits of their own, want none", n)
	}
}
