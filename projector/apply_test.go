package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"testing"

	"github.com/strata-objects/strata/log"
)

// TestOps checks each op against the state it must leave, applying the
// events both in one batch (later events see earlier ones inside the
// transaction) and one Apply call each.
func TestOps(t *testing.T) {
	type want struct {
		state  map[string]string
		alarms map[string]int64
	}
	cases := []struct {
		name   string
		events [][][]log.Write // events of one object, each a list of turns
		want   want
	}{
		{
			name:   "put",
			events: [][][]log.Write{{{put("a", "1"), put("b", "2")}}},
			want:   want{state: map[string]string{"a": "1", "b": "2"}},
		},
		{
			name:   "empty value is a value",
			events: [][][]log.Write{{{put("a", "")}}},
			want:   want{state: map[string]string{"a": ""}},
		},
		{
			name:   "overwrite in one turn, across turns, across events",
			events: [][][]log.Write{{{put("a", "1"), put("a", "2")}, {put("b", "1")}}, {{put("b", "2")}}},
			want:   want{state: map[string]string{"a": "2", "b": "2"}},
		},
		{
			name:   "delete",
			events: [][][]log.Write{{{put("a", "1"), put("b", "2")}}, {{del("a"), del("missing")}}},
			want:   want{state: map[string]string{"b": "2"}},
		},
		{
			name:   "delete then put",
			events: [][][]log.Write{{{put("a", "1")}}, {{del("a")}, {put("a", "3")}}},
			want:   want{state: map[string]string{"a": "3"}},
		},
		{
			name: "delete-all removes earlier events' and its own event's keys",
			events: [][][]log.Write{
				{{put("a", "1"), put("b", "2")}},
				{{put("c", "3")}, {delAll()}, {put("d", "4")}},
			},
			want: want{state: map[string]string{"d": "4"}},
		},
		{
			name:   "delete-all of nothing",
			events: [][][]log.Write{{{delAll()}}},
			want:   want{state: map[string]string{}},
		},
		{
			name: "alarms: set, replace, delete, default",
			events: [][][]log.Write{
				{{setAlarm("", 100), setAlarm("x", 200), setAlarm("y", 300)}},
				{{setAlarm("", 150), delAlarm("x"), delAlarm("never-set")}},
			},
			want: want{alarms: map[string]int64{"": 150, "y": 300}},
		},
		{
			name: "delete-all keeps alarms",
			events: [][][]log.Write{
				{{put("a", "1"), setAlarm("", 100)}},
				{{delAll()}},
			},
			want: want{alarms: map[string]int64{"": 100}},
		},
		{
			name: "keys that look like alarms or meta are state",
			events: [][][]log.Write{
				{{put("", "empty key"), put("\x00", "nul"), put(maxRune, "max")}},
			},
			want: want{state: map[string]string{"": "empty key", "\x00": "nul", maxRune: "max"}},
		},
	}
	for _, tc := range cases {
		for _, mode := range []string{"one batch", "one call each"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				p := open(t, Config{InMemory: true})
				s := newStream(t)
				o := newObj("counter", "o")
				// Neighbours whose keys sort right next to o's must not be
				// touched: the same id in a class that extends o's class
				// name, and another id of o's class.
				n1, n2 := obj{"counter-x", o.id}, newObj("counter", "n")
				var recs []log.Record
				for _, o := range []obj{n1, n2} {
					recs = append(recs, s.next(o, []log.Write{put("a", "n"), setAlarm("", 1)}))
				}
				for _, turns := range tc.events {
					recs = append(recs, s.next(o, turns...))
				}
				if mode == "one batch" {
					mustApply(t, p, recs...)
				} else {
					for _, r := range recs {
						mustApply(t, p, r)
					}
				}
				wantState := tc.want.state
				if wantState == nil {
					wantState = map[string]string{}
				}
				if got := state(t, p, o); !maps.Equal(got, wantState) {
					t.Errorf("state = %q, want %q", got, wantState)
				}
				for k, v := range wantState {
					got, ok, err := p.Get(o.class, o.id, k)
					if err != nil || !ok || string(got) != v {
						t.Errorf("Get(%q) = %q, %v, %v; want %q", k, got, ok, err, v)
					}
				}
				if _, ok, err := p.Get(o.class, o.id, "missing"); ok || err != nil {
					t.Errorf("Get(missing) = %v, %v", ok, err)
				}
				alarms, err := p.Alarms(o.class, o.id)
				if err != nil {
					t.Fatal(err)
				}
				wantAlarms := tc.want.alarms
				if wantAlarms == nil {
					wantAlarms = map[string]int64{}
				}
				if !maps.Equal(alarms, wantAlarms) {
					t.Errorf("alarms = %v, want %v", alarms, wantAlarms)
				}
				last := recs[len(recs)-1]
				checkMeta(t, p, o, last)
				for _, n := range []obj{n1, n2} {
					if got := state(t, p, n); !maps.Equal(got, map[string]string{"a": "n"}) {
						t.Errorf("neighbour %s state = %q", n.class, got)
					}
					if a, _ := p.Alarms(n.class, n.id); !maps.Equal(a, map[string]int64{"": 1}) {
						t.Errorf("neighbour %s alarms = %v", n.class, a)
					}
				}
			})
		}
	}
}

// checkMeta asserts that o's meta describes last, o's latest record.
func checkMeta(t *testing.T, p *Projector, o obj, last log.Record) {
	t.Helper()
	m, err := p.Meta(o.class, o.id)
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{Version: last.Event.Version, Seq: last.Seq, Hash: last.Hash(), Name: fmt.Sprintf("name-of-%x", o.id[:4]), Updated: last.Event.Time}
	if m != want {
		t.Errorf("meta = %+v, want %+v", m, want)
	}
}

func TestMetaOfUnknownObject(t *testing.T) {
	p := open(t, Config{InMemory: true})
	m, err := p.Meta("counter", testID("nobody"))
	if err != nil || m != (Meta{}) {
		t.Fatalf("Meta = %+v, %v; want zero", m, err)
	}
}

// TestNameFromFirstEvent: later events carry no name; the first one's
// stays.
func TestNameFromFirstEvent(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	o := newObj("counter", "named")
	r1 := s.next(o, []log.Write{put("a", "1")})
	r2 := s.next(o, []log.Write{put("a", "2")})
	if r2.Event.Name != "" {
		t.Fatal("second event has a name")
	}
	mustApply(t, p, r1)
	mustApply(t, p, r2)
	checkMeta(t, p, o, r2)
}

// TestApplyTwiceIsNoop: re-applying any records already applied changes
// nothing and reports nothing.
func TestApplyTwiceIsNoop(t *testing.T) {
	var applied appliedLog
	sink := &logSink{}
	p := open(t, Config{Dir: t.TempDir(), OnApplied: applied.add, Logger: slog.New(sink)})
	recs := randomRecords(t, 42, 20, 300)
	mustApply(t, p, recs...)
	before, n := dump(t, p), len(applied.all())
	if n != len(recs) {
		t.Fatalf("OnApplied reported %d records, want %d", n, len(recs))
	}
	mustApply(t, p, recs...)
	for _, r := range recs {
		mustApply(t, p, r)
	}
	mustApply(t, p, recs[len(recs)/2:]...)
	if after := dump(t, p); after != before {
		t.Errorf("re-applying changed the snapshot:\n%s\nvs\n%s", before, after)
	}
	if got := len(applied.all()); got != n {
		t.Errorf("re-applying reported %d more records", got-n)
	}
	if len(sink.recs) > 0 {
		t.Errorf("re-applying logged %q: an applied event is not a gap", sink.recs[0].Message)
	}
}

// TestGapSkippedAndReported: an event that does not follow the applied
// version is not applied, is logged at Error with what was expected, and
// does not stop the events after it.
func TestGapSkippedAndReported(t *testing.T) {
	sink := &logSink{}
	var applied appliedLog
	p := open(t, Config{InMemory: true, Logger: slog.New(sink), OnApplied: applied.add})
	s := newStream(t)
	o, other := newObj("counter", "gappy"), newObj("counter", "fine")
	r1 := s.next(o, []log.Write{put("a", "1")})
	r2 := s.next(o, []log.Write{put("a", "2")})
	r3 := s.next(o, []log.Write{put("a", "3")})
	ok := s.next(other, []log.Write{put("b", "1")})

	mustApply(t, p, r1, r3, ok) // r3 skips v2
	if v, _, _ := p.Get(o.class, o.id, "a"); string(v) != "1" {
		t.Errorf("a = %q after the gap, want 1", v)
	}
	checkMeta(t, p, o, r1)
	checkMeta(t, p, other, ok)
	attrs, found := sink.find(slog.LevelError, "gap")
	if !found {
		t.Fatal("gap not logged at Error")
	}
	if attrs["class"] != o.class || attrs["applied"] != uint64(1) || attrs["event"] != uint64(3) || attrs["seq"] != r3.Seq {
		t.Errorf("gap logged with %v", attrs)
	}
	if id, _ := attrs["id"].(log.ID); id != o.id {
		t.Errorf("gap logged with id %v", attrs["id"])
	}
	for _, a := range applied.all() {
		if a.ID == o.id && a.Version == 3 {
			t.Error("OnApplied reported the skipped event")
		}
	}

	mustApply(t, p, r2, r3) // the catch-up
	checkMeta(t, p, o, r3)
	if v, _, _ := p.Get(o.class, o.id, "a"); string(v) != "3" {
		t.Errorf("a = %q after the catch-up, want 3", v)
	}
}

// TestOnApplied: each applied record is reported once, in order, after its
// transaction committed (a fresh read sees it); skipped ones are not.
func TestOnApplied(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprint("async=", async), func(t *testing.T) {
			var p *Projector
			var applied appliedLog
			var notVisible []Applied
			p = open(t, Config{InMemory: true, BatchMax: 7, OnApplied: func(b []Applied) {
				for _, a := range b {
					if m, err := p.Meta(a.Class, a.ID); err != nil || m.Version < a.Version || m.Seq < a.Seq {
						notVisible = append(notVisible, a)
					}
				}
				applied.add(b)
			}})
			recs := randomRecords(t, 7, 5, 60)
			dup := recs[:10] // already applied when they come again
			all := append(append([]log.Record(nil), recs...), dup...)
			if async {
				for _, r := range all {
					if err := p.Submit(context.Background(), r); err != nil {
						t.Fatal(err)
					}
				}
				if err := p.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				mustApply(t, p, all...)
			}
			if len(notVisible) > 0 {
				t.Errorf("OnApplied before commit: %v", notVisible)
			}
			got := applied.all()
			if len(got) != len(recs) {
				t.Fatalf("reported %d records, want %d", len(got), len(recs))
			}
			for i, r := range recs {
				want := Applied{Class: r.Event.Class, ID: r.Event.ID, Version: r.Event.Version, Seq: r.Seq, Time: r.Event.Time}
				if got[i] != want {
					t.Fatalf("report %d = %+v, want %+v", i, got[i], want)
				}
			}
			if calls := len(applied.calls); calls < len(recs)/7 {
				t.Errorf("%d OnApplied calls for %d records in batches of 7", calls, len(recs))
			}
		})
	}
}

// TestBatchMax: no transaction holds more than BatchMax records.
func TestBatchMax(t *testing.T) {
	var applied appliedLog
	p := open(t, Config{InMemory: true, BatchMax: 5, OnApplied: applied.add})
	mustApply(t, p, randomRecords(t, 3, 10, 23)...)
	for _, c := range applied.calls {
		if len(c) > 5 {
			t.Fatalf("one transaction applied %d records", len(c))
		}
	}
	if len(applied.calls) != 5 {
		t.Errorf("%d transactions for 23 records, want 5", len(applied.calls))
	}
}

// TestBadRecordsRefused: records the projector cannot apply are refused
// before anything is written or queued.
func TestBadRecordsRefused(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	good := s.next(newObj("counter", "a"), []log.Write{put("a", "1")})
	badClass := s.next(newObj("counter", "b"), []log.Write{put("a", "1")})
	badClass.Event.Class = "Bad\x00Class"
	noData, noSeq := good, good
	noData.Data, noSeq.Seq = nil, 0
	bads := map[string]log.Record{
		"no event":  {Seq: 9, Data: good.Data},
		"bad class": badClass,
		"no data":   noData,
		"no seq":    noSeq,
	}
	for name, bad := range bads {
		if err := p.Apply([]log.Record{good, bad}); !errors.Is(err, log.ErrBadEvent) {
			t.Errorf("Apply(%s) = %v, want ErrBadEvent", name, err)
		}
		if err := p.Submit(context.Background(), bad); !errors.Is(err, log.ErrBadEvent) {
			t.Errorf("Submit(%s) = %v, want ErrBadEvent", name, err)
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := dump(t, p); d != "" {
		t.Errorf("refused records wrote:\n%s", d)
	}
	if _, err := p.Meta("Bad\x00Class", good.Event.ID); err == nil {
		t.Error("Meta of an invalid class succeeded")
	}
}

func TestMetaEncoding(t *testing.T) {
	for _, m := range []Meta{
		{Version: 1},
		{Version: 1<<64 - 1, Seq: 1<<64 - 1, Hash: log.Hash{1, 2, 3, 31: 0xff}, Name: "a name\x00with bytes\xff", Updated: -5},
	} {
		got, err := decodeMeta(encodeMeta(m))
		if err != nil || got != m {
			t.Errorf("round trip of %+v = %+v, %v", m, got, err)
		}
	}
	for _, b := range [][]byte{nil, {metaFormat}, append([]byte{2}, make([]byte, metaFixedBytes)...), encodeMeta(Meta{})} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("decodeMeta(%x) succeeded", b)
		}
	}
}

// TestForgedLinkSkippedAndReported: an event with the next version whose
// PrevHash is not the chain hash of the applied event (forged behind
// Strata's back) is not applied; ApplyChecked reports it as a broken link
// naming its sequence, and the events of other objects after it apply.
func TestForgedLinkSkippedAndReported(t *testing.T) {
	p := open(t, Config{InMemory: true, Logger: slog.New(&logSink{})})
	s := newStream(t)
	o, other := newObj("counter", "forged"), newObj("counter", "fine")
	r1 := s.next(o, []log.Write{put("a", "1")})
	ev := *s.next(o, []log.Write{put("a", "forged")}).Event
	ev.PrevHash = log.Hash{0xba, 0xd}
	data, err := log.Encode(&ev)
	if err != nil {
		t.Fatal(err)
	}
	forged := log.Record{Seq: 99, Data: data, Event: &ev}
	ok := s.next(other, []log.Write{put("b", "1")})
	var broken []uint64
	err = p.ApplyChecked([]log.Record{r1, forged, ok}, func(rec log.Record, err error) {
		if ce, isCorrupt := log.AsCorrupt(err); !isCorrupt || !errors.Is(err, log.ErrBrokenChain) || ce.Seq != rec.Seq {
			t.Errorf("reported %v for sequence %d, want a *log.CorruptError wrapping ErrBrokenChain", err, rec.Seq)
		}
		broken = append(broken, rec.Seq)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(broken) != 1 || broken[0] != 99 {
		t.Fatalf("reported %v, want [99]", broken)
	}
	if v, _, _ := p.Get(o.class, o.id, "a"); string(v) != "1" {
		t.Errorf("a = %q after the forged link, want 1", v)
	}
	checkMeta(t, p, o, r1)
	checkMeta(t, p, other, ok)
}
