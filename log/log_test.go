package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestAppendLastRead(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	id := objID(1)
	if _, err := l.Last(ctx, "test", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Last of a new object: %v, want ErrNotFound", err)
	}
	if recs := readAll(t, l, "test", id, 0); len(recs) != 0 {
		t.Fatalf("Read of a new object: %d records", len(recs))
	}
	var appended []Record
	expect := uint64(0)
	for v := uint64(1); v <= 5; v++ {
		e := testEvent(id, v, fmt.Sprint("v", v))
		rec, err := l.Append(ctx, e, expect)
		if err != nil {
			t.Fatalf("append v%d: %v", v, err)
		}
		want, _ := Encode(e)
		if rec.Seq <= expect || !bytes.Equal(rec.Data, want) || rec.Event != e {
			t.Fatalf("append v%d returned %+v", v, rec)
		}
		appended = append(appended, rec)
		expect = rec.Seq
	}
	same := func(got, want Record) {
		t.Helper()
		if got.Seq != want.Seq || !bytes.Equal(got.Data, want.Data) || !reflect.DeepEqual(normalize(got.Event), normalize(want.Event)) {
			t.Fatalf("got %d %+v, want %d %+v", got.Seq, got.Event, want.Seq, want.Event)
		}
	}
	last, err := l.Last(ctx, "test", id)
	if err != nil {
		t.Fatal(err)
	}
	same(last, appended[4])
	if last.Hash() != appended[4].Hash() {
		t.Fatal("Last's chain hash differs from the appended record's")
	}
	all := readAll(t, l, "test", id, 0)
	if len(all) != 5 {
		t.Fatalf("Read found %d events, want 5", len(all))
	}
	for i := range all {
		same(all[i], appended[i])
	}
	if _, err := l.Last(ctx, "other", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the same id in another class: %v, want ErrNotFound", err)
	}
	if s := l.Stats(); s.Appends != 5 || s.Publishes != 5 || s.Batches != 0 {
		t.Fatalf("sequential appends: %+v, want 5 single publishes", s)
	}
}

func TestReadFromMiddleAndStop(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	ctx := context.Background()
	a, b := objID(1), objID(2)
	var seqs []uint64
	expectA, expectB := uint64(0), uint64(0)
	for v := uint64(1); v <= 6; v++ { // interleaved, so a's subject has gaps in the stream
		ra, err := l.Append(ctx, testEvent(a, v, fmt.Sprint("a", v)), expectA)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := l.Append(ctx, testEvent(b, v, fmt.Sprint("b", v)), expectB)
		if err != nil {
			t.Fatal(err)
		}
		seqs, expectA, expectB = append(seqs, ra.Seq), ra.Seq, rb.Seq
	}
	var got []string
	for _, r := range readAll(t, l, "test", a, seqs[2]) {
		got = append(got, value(r))
	}
	if fmt.Sprint(got) != "[a3 a4 a5 a6]" {
		t.Fatalf("read from the third event: %v", got)
	}
	if got := readAll(t, l, "test", a, seqs[2]+1); len(got) != 3 || got[0].Seq != seqs[3] {
		t.Fatalf("read from between two events starts at %v", got)
	}
	if got := readAll(t, l, "test", a, expectB+1); len(got) != 0 {
		t.Fatalf("read past the end: %d records", len(got))
	}
	stop := errors.New("enough")
	n := 0
	err := l.Read(ctx, "test", a, 0, func(Record) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("a callback error: Read returned %v after %d calls, want it as is after 2", err, n)
	}
}

// TestReadLongHistory reads an object over several direct get batches,
// its events interleaved with another object's.
func TestReadLongHistory(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	const versions = 2*readBatch + 50
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, id := range []ID{objID(1), objID(2)} {
		wg.Go(func() {
			expect := uint64(0)
			for v := uint64(1); v <= versions; v++ {
				r, err := l.Append(context.Background(), testEvent(id, v, "x"), expect)
				if err != nil {
					errs <- err
					return
				}
				expect = r.Seq
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := readAll(t, l, "test", objID(1), 1)
	if len(recs) != versions {
		t.Fatalf("read %d events, want %d", len(recs), versions)
	}
	for i, r := range recs {
		if r.Event.Version != uint64(i+1) || r.Event.ID != objID(1) || i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("event %d: version %d seq %d", i, r.Event.Version, r.Seq)
		}
	}
}

// TestReadEndsAtStart: a read of an object that keeps being written ends
// at the stream's last sequence when the read began, even when it takes
// several direct get batches (each of which would report the new events
// as pending).
func TestReadEndsAtStart(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	ctx := context.Background()
	id := objID(7)
	expect, v := uint64(0), uint64(0)
	appendOne := func() error {
		v++
		r, err := l.Append(ctx, testEvent(id, v, "x"), expect)
		expect = r.Seq
		return err
	}
	const initial = readBatch + 10
	for range initial {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	err := l.Read(ctx, "test", id, 0, func(Record) error {
		if seen++; seen > 2*initial {
			return errors.New("the read does not end")
		}
		return appendOne()
	})
	if err != nil || seen != initial {
		t.Fatalf("read saw %d events (%v), want the %d there when it began", seen, err, initial)
	}
	if n := len(readAll(t, l, "test", id, 0)); n != 2*initial {
		t.Fatalf("%d events after the read, want %d", n, 2*initial)
	}
}

func TestConflict(t *testing.T) {
	srv := startServer(t)
	l := openLog(t, srv, Config{})
	ctx := context.Background()
	id, fresh := objID(1), objID(2)
	r1, err := l.Append(ctx, testEvent(id, 1, "a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Append(ctx, testEvent(id, 2, "b"), r1.Seq)
	if err != nil {
		t.Fatal(err)
	}
	before, err := l.LastSeq(ctx, l.ShardOf(id))
	if err != nil {
		t.Fatal(err)
	}
	stale := []struct {
		name   string
		id     ID
		expect uint64
	}{
		{"stale expectation", id, r1.Seq},
		{"expects an empty subject", id, 0},
		{"expects the future", id, r2.Seq + 100},
		{"expects events of an empty subject", fresh, r2.Seq},
	}
	for _, c := range stale {
		if _, err := l.Append(ctx, testEvent(c.id, 3, "stale"), c.expect); !errors.Is(err, ErrConflict) {
			t.Fatalf("%s: %v, want ErrConflict", c.name, err)
		}
	}
	if after, _ := l.LastSeq(ctx, l.ShardOf(id)); after != before {
		t.Fatalf("refused appends moved the stream from %d to %d", before, after)
	}
	if last, _ := l.Last(ctx, "test", id); last.Seq != r2.Seq {
		t.Fatalf("the object's last event is at %d, want %d", last.Seq, r2.Seq)
	}
	if _, err := l.Last(ctx, "test", fresh); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused first append stored something: %v", err)
	}
	if s := l.Stats(); s.Conflicts != uint64(len(stale)) || s.Appends != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRetriedAppendLanded: an append whose first attempt landed (say its
// ack was lost) is answered with the original sequence when retried.
func TestRetriedAppendLanded(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	id := objID(3)
	e1 := testEvent(id, 1, "once")
	first, err := l.Append(ctx, e1, 0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Append(ctx, e1, 0)
	if err != nil || again.Seq != first.Seq {
		t.Fatalf("retry of the first event: seq %d, %v; want seq %d", again.Seq, err, first.Seq)
	}
	e2 := testEvent(id, 2, "twice")
	second, err := l.Append(ctx, e2, first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.Append(ctx, e2, first.Seq); err != nil || again.Seq != second.Seq {
		t.Fatalf("retry of the second event: seq %d, %v; want seq %d", again.Seq, err, second.Seq)
	}
	if n := len(readAll(t, l, "test", id, 0)); n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
	// Same version (so the same message id), other bytes: another writer.
	if _, err := l.Append(ctx, testEvent(id, 2, "other"), first.Seq); !errors.Is(err, ErrConflict) {
		t.Fatalf("another writer's event of the same version: %v, want ErrConflict", err)
	}
	// Same version and writes, another chain link: not ours either. The
	// read-back compares the whole canonical event, PrevHash included,
	// not the version (issue 15).
	forged := testEvent(id, 2, "twice")
	forged.PrevHash = Hash{9}
	if _, err := l.Append(ctx, forged, first.Seq); !errors.Is(err, ErrConflict) {
		t.Fatalf("version 2 with another PrevHash: %v, want ErrConflict", err)
	}
	if s := l.Stats(); s.Duplicates != 2 || s.Conflicts != 2 || s.Appends != 4 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRetriedAppendLandedUnderAnother: an append whose first attempt
// landed, retried after another writer has written on top of it, is
// answered with its original sequence, not ErrConflict: its caller would
// otherwise run the same turn again (a duplicate in the history).
func TestRetriedAppendLandedUnderAnother(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	id := objID(5)
	ours := testEvent(id, 1, "ours")
	first, err := l.Append(ctx, ours, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, testEvent(id, 2, "theirs, after reading ours"), first.Seq); err != nil {
		t.Fatal(err)
	}
	again, err := l.Append(ctx, ours, 0)
	if err != nil || again.Seq != first.Seq {
		t.Fatalf("retry of a landed append under another's: seq %d, %v; want seq %d", again.Seq, err, first.Seq)
	}
	// Not ours after the expectation: a conflict.
	if _, err := l.Append(ctx, testEvent(id, 1, "a third writer's"), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("another version 1 after ours: %v, want ErrConflict", err)
	}
	if n := len(readAll(t, l, "test", id, 0)); n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
}

// TestConcurrentAppendsBatch: appends of many objects at once go out in
// atomic batches, and every object's history comes back in order.
func TestConcurrentAppendsBatch(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	const objects, versions = 200, 5
	seqs := make([][]uint64, objects)
	errs := make(chan error, objects)
	var wg sync.WaitGroup
	for i := range objects {
		wg.Go(func() {
			expect := uint64(0)
			for v := uint64(1); v <= versions; v++ {
				r, err := l.Append(context.Background(), testEvent(objID(i), v, fmt.Sprint(i, ".", v)), expect)
				if err != nil {
					errs <- fmt.Errorf("object %d v%d: %w", i, v, err)
					return
				}
				seqs[i], expect = append(seqs[i], r.Seq), r.Seq
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := l.Stats()
	t.Logf("stats: %+v (%.1f messages per batch)", s, float64(s.BatchedMessages)/float64(s.Batches))
	if s.Appends != objects*versions || s.Publishes+s.BatchedMessages != objects*versions {
		t.Fatalf("stats %+v: want %d appends, each sent once", s, objects*versions)
	}
	if s.Batches == 0 || s.BatchedMessages < 4*s.Batches {
		t.Fatalf("appends were not group committed: %+v", s)
	}
	for i := range objects {
		recs := readAll(t, l, "test", objID(i), 0)
		if len(recs) != versions {
			t.Fatalf("object %d: %d events", i, len(recs))
		}
		for j, r := range recs {
			if r.Seq != seqs[i][j] || r.Event.Version != uint64(j+1) || value(r) != fmt.Sprint(i, ".", j+1) {
				t.Fatalf("object %d event %d: seq %d version %d value %q; appended at %d", i, j, r.Seq, r.Event.Version, value(r), seqs[i][j])
			}
		}
	}
}

// TestSameIDOtherClassDoesNotCollide: the same 64-hex id is reachable
// under every class, so an object of one class must not be able to take
// the message ids of another class's object with that id. Before message
// ids named the class, kv's version 1 made counter's version 1 (and every
// later one, within the duplicate window) a conflict.
func TestSameIDOtherClassDoesNotCollide(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	id := objID(7)
	of := func(class string, v uint64, val string) *Event {
		e := testEvent(id, v, val)
		e.Class = class
		return e
	}
	squat, err := l.Append(ctx, of("kv", 1, "squatter"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, of("kv", 2, "squatter"), squat.Seq); err != nil {
		t.Fatal(err)
	}
	var expect uint64
	for v := uint64(1); v <= 3; v++ {
		r, err := l.Append(ctx, of("counter", v, fmt.Sprint(v)), expect)
		if err != nil {
			t.Fatalf("counter version %d after kv's of the same id: %v", v, err)
		}
		expect = r.Seq
	}
	if n := len(readAll(t, l, "counter", id, 0)); n != 3 {
		t.Fatalf("counter has %d events, want 3", n)
	}
	if n := len(readAll(t, l, "kv", id, 0)); n != 2 {
		t.Fatalf("kv has %d events, want 2", n)
	}
	// Both classes in one batch: distinct message ids, both stored.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, class := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.Append(ctx, of(class, 1, class), 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("version 1 of a/<id> and b/<id> at once: %v", err)
	}
}

// TestReadSince: ReadSince reads every object's events of a shard stored
// from a time on, and ends at the stream's end (or at once when nothing
// was stored since).
func TestReadSince(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	ctx := context.Background()
	for i := range 3 {
		if _, err := l.Append(ctx, testEvent(objID(i), 1, "before"), 0); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now()
	var got []string
	read := func() {
		got = got[:0]
		if err := l.ReadSince(ctx, 0, since, func(r Record) error {
			got = append(got, fmt.Sprintf("%v %s", r.Event.ID == objID(3) || r.Event.ID == objID(4), value(r)))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if len(got) != 0 {
		t.Fatalf("read %v since after the last event, want nothing", got)
	}
	for i := 3; i < 5; i++ {
		if _, err := l.Append(ctx, testEvent(objID(i), 1, "after"), 0); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if want := []string{"true after", "true after"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
}
