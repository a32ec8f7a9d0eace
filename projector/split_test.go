package projector

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// smallTxns shrinks Badger's transaction limit to about 150 KiB (15% of
// the memtable), so that ordinary test batches hit ErrTxnTooBig.
func smallTxns(o *badger.Options) {
	o.MemTableSize = 1 << 20
	o.ValueThreshold = 1 << 10 // must stay under the transaction limit
}

var value200 = strings.Repeat("v", 200)

// TestSplitAtEventBoundaries: a batch of many objects' events that does
// not fit in one transaction is committed in several, each ending at an
// event boundary, with the same result as one big transaction.
func TestSplitAtEventBoundaries(t *testing.T) {
	var applied appliedLog
	p := open(t, Config{tune: smallTxns, OnApplied: applied.add})
	ref := open(t, Config{InMemory: true})
	s := newStream(t)
	var recs []log.Record
	for i := range 300 {
		o := newObj("counter", fmt.Sprint(i))
		var ws []log.Write
		for k := range 10 {
			ws = append(ws, put(fmt.Sprint("k", k), value200))
		}
		recs = append(recs, s.next(o, ws))
	}
	// ~700 KB of writes against a ~150 KiB transaction limit.
	mustApply(t, p, recs...)
	mustApply(t, ref, recs...)

	if n := p.stats.boundarySplits.Load(); n < 3 {
		t.Errorf("%d splits at event boundaries, want at least 3", n)
	}
	if n := p.stats.eventSplits.Load(); n != 0 {
		t.Errorf("%d splits inside events, want none: every event fits alone", n)
	}
	if len(applied.calls) < 4 {
		t.Errorf("%d transactions reported", len(applied.calls))
	}
	if len(applied.all()) != len(recs) {
		t.Errorf("%d records reported, want %d", len(applied.all()), len(recs))
	}
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Error("split snapshot differs from the unsplit one")
	}
}

// TestSplitInsideEvent: an event too large for any one transaction is
// split, with its meta in the last transaction, for a large write set and
// for a delete-all of many keys.
func TestSplitInsideEvent(t *testing.T) {
	var applied appliedLog
	p := open(t, Config{tune: smallTxns, OnApplied: applied.add})
	ref := open(t, Config{InMemory: true})
	s := newStream(t)
	small, big := newObj("counter", "small"), newObj("kv", "big")
	var ws []log.Write
	for k := range 2000 {
		ws = append(ws, put(fmt.Sprint("k", k), value200)) // ~450 KB
	}
	recs := []log.Record{
		s.next(small, []log.Write{put("a", "1")}),
		s.next(big, ws[:1000], ws[1000:]),
		s.next(small, []log.Write{put("a", "2")}),
		s.next(big, []log.Write{put("x", "before")}, []log.Write{delAll(), put("y", "after")}),
	}
	for _, r := range recs {
		mustApply(t, ref, r)
	}

	mustApply(t, p, recs[:3]...)
	if n := p.stats.eventSplits.Load(); n < 2 {
		t.Fatalf("%d splits inside the large event, want at least 2", n)
	}
	if got := state(t, p, big); len(got) != 2000 {
		t.Fatalf("big object has %d keys, want 2000", len(got))
	}
	checkMeta(t, p, big, recs[1])
	checkMeta(t, p, small, recs[2])

	before := p.stats.eventSplits.Load()
	mustApply(t, p, recs[3])
	if p.stats.eventSplits.Load() == before {
		t.Error("deleting 2000 keys did not split")
	}
	if got := state(t, p, big); !maps.Equal(got, map[string]string{"y": "after"}) {
		t.Errorf("after delete-all: %d keys", len(got))
	}
	checkMeta(t, p, big, recs[3])
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Error("split snapshot differs from the unsplit one")
	}
	got := applied.all()
	if len(got) != len(recs) {
		t.Fatalf("reported %d records, want %d (parts of an event are not reported)", len(got), len(recs))
	}
}

// TestReplayOverPartialApply is why splitting an event is safe: whatever
// prefix of an event's writes reached Badger before a crash (without its
// meta), applying the whole event gives the state a clean apply gives.
func TestReplayOverPartialApply(t *testing.T) {
	s := newStream(t)
	o := newObj("kv", "partial")
	base := s.next(o, []log.Write{put("a", "1"), put("b", "1"), put("c", "1"), setAlarm("", 5)})
	ev := s.next(o,
		[]log.Write{put("a", "2"), del("b"), put("d", "2"), setAlarm("x", 7)},
		[]log.Write{delAll(), put("b", "3"), delAlarm("")},
		[]log.Write{put("a", "4"), del("b"), put("e", "4")},
	)
	ref := open(t, Config{InMemory: true})
	mustApply(t, ref, base, ev)
	want := dump(t, ref)

	var writes []log.Write
	for _, turn := range ev.Event.Turns {
		writes = append(writes, turn.Writes...)
	}
	for cut := 0; cut <= len(writes); cut++ {
		p := open(t, Config{InMemory: true})
		mustApply(t, p, base)
		err := p.db.Update(func(tx *badger.Txn) error {
			b := &txnBatch{p: p, txn: tx}
			do := func(op func(*badger.Txn) error) error { return op(tx) }
			for _, w := range writes[:cut] {
				if err := b.write(do, ev.Event, w); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := p.Meta(o.class, o.id); m.Version != 1 {
			t.Fatalf("partial apply moved the meta to %d", m.Version)
		}
		mustApply(t, p, ev)
		if got := dump(t, p); got != want {
			t.Errorf("after %d of %d writes, replaying the event gives\n%s\nwant\n%s", cut, len(writes), got, want)
		}
	}
}
