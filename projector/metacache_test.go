package projector

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/strata-objects/strata/log"
)

// TestMetaCacheReadsBadgerOncePerObject: the apply path reads an object's
// meta from Badger once, at its first event; later events, in the same
// transaction or later ones, take it from what the projector committed.
func TestMetaCacheReadsBadgerOncePerObject(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	objs := make([]obj, 10)
	for i := range objs {
		objs[i] = newObj("counter", fmt.Sprint(i))
	}
	for round := range 5 {
		var recs []log.Record
		for _, o := range objs {
			recs = append(recs, s.next(o, []log.Write{put("n", fmt.Sprint(round))}))
		}
		// Three events of one object in one transaction.
		recs = append(recs, s.next(objs[0], []log.Write{put("m", "a")}), s.next(objs[0], []log.Write{put("m", "b")}))
		mustApply(t, p, recs...)
	}
	if n := p.stats.metaReads.Load(); n != uint64(len(objs)) {
		t.Errorf("%d metas read from Badger for %d objects' 60 events, want one per object", n, len(objs))
	}
	for i, o := range objs {
		m, err := p.Meta(o.class, o.id)
		if err != nil {
			t.Fatal(err)
		}
		want := uint64(5)
		if i == 0 {
			want = 15
		}
		if m.Version != want || m.Hash != s.last[o].Hash() {
			t.Errorf("object %d: meta v%d, want v%d with the last event's hash", i, m.Version, want)
		}
	}
	checkMetaCache(t, p)
}

// TestMetaCacheExact applies random events in transactions that split
// (at event boundaries and inside events), fail to commit now and then
// (and are applied again, as Apply's contract allows), and checkpoints
// installed over objects, with a cache smaller than the objects: after
// every step each cached meta is Badger's, and the snapshot ends as one
// applied without any of that.
func TestMetaCacheExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 21))
	fail := false
	p := open(t, Config{tune: smallTxns, BatchMax: 64, BeforeCommit: func(int) error {
		if fail && rng.IntN(3) == 0 {
			return errors.New("injected commit failure")
		}
		return nil
	}})
	p.metas = newMetaCache(8)
	ref := open(t, Config{InMemory: true})

	recs := randomRecords(t, 21, 20, 600)
	// Large events, which split inside themselves, for a few objects.
	s := newStream(t)
	for i := range 3 {
		o := newObj("big", fmt.Sprint(i))
		for range 2 {
			var ws []log.Write
			for k := range 1000 {
				ws = append(ws, put(fmt.Sprint("k", k), value200))
			}
			recs = append(recs, s.next(o, ws))
		}
	}
	for len(recs) > 0 {
		n := min(len(recs), 1+rng.IntN(100))
		batch := recs[:n]
		fail = true
		for p.Apply(batch) != nil {
			checkMetaCache(t, p)
		}
		fail = false
		mustApply(t, ref, batch...)
		recs = recs[n:]
		checkMetaCache(t, p)

		if rng.IntN(4) == 0 {
			// A checkpoint ahead of an object's snapshot, as a node
			// that loads it from the log's checkpoint installs it.
			o := newObj("ckpt", fmt.Sprint(rng.IntN(3)))
			ev := s.next(o, []log.Write{put("c", "1")})
			ck := &log.Checkpoint{Class: o.class, ID: o.id, Name: ev.Event.Name, Version: ev.Event.Version, Seq: ev.Seq, Time: ev.Event.Time,
				Hash: ev.Hash(), Keys: map[string][]byte{"c": []byte("1")}}
			for _, q := range []*Projector{p, ref} {
				if ok, err := q.Install(ck); err != nil || !ok {
					t.Fatalf("install %s v%d: %v, %v", o.id, ck.Version, ok, err)
				}
			}
			next := s.next(o, []log.Write{put("c", "2")})
			mustApply(t, p, next)
			mustApply(t, ref, next)
			checkMetaCache(t, p)
		}
	}
	if p.stats.eventSplits.Load() == 0 || p.stats.boundarySplits.Load() == 0 {
		t.Errorf("splits inside events %d, at boundaries %d: want both", p.stats.eventSplits.Load(), p.stats.boundarySplits.Load())
	}
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Error("the snapshot applied through the cache differs from the reference")
	}
}

// checkMetaCache asserts that every meta in p's cache is Badger's.
func checkMetaCache(t *testing.T, p *Projector) {
	t.Helper()
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if len(p.metas.m) > p.metas.max {
		t.Errorf("cache holds %d metas, bound %d", len(p.metas.m), p.metas.max)
	}
	for o, cached := range p.metas.m {
		m, err := p.Meta(o.class, o.id)
		if err != nil {
			t.Fatal(err)
		}
		if m != cached {
			t.Fatalf("%s/%s: cached meta v%d, Badger's v%d", o.class, o.id, cached.Version, m.Version)
		}
	}
}
