package log

import (
	"context"
	"testing"
)

// TestOutboxMarks: a mark is listed with its revision; an Unmark at an
// older revision (the sender marked again by a new owner) leaves the mark;
// at its own revision it removes it; keys Strata does not write are not
// listed; dead marks are listed apart, and removed at their revision only.
func TestOutboxMarks(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, startServer(t), Config{})
	m, err := l.OpenOutboxMarks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.kv.Put(ctx, "not-a-mark", nil); err != nil {
		t.Fatal(err)
	}
	a, b := objID(1), objID(2)
	// collect runs a listing and returns what it listed, by id.
	collect := func(each func(fn func(class string, id ID, rev uint64) error) error) map[ID]uint64 {
		t.Helper()
		got := map[ID]uint64{}
		if err := each(func(class string, id ID, rev uint64) error {
			if class != "relay" {
				t.Fatalf("class %q", class)
			}
			got[id] = rev
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	list := func(want func(string, ID) bool) map[ID]uint64 {
		t.Helper()
		return collect(func(fn func(string, ID, uint64) error) error { return m.Marked(ctx, want, fn) })
	}
	all := func(string, ID) bool { return true }
	if got := list(all); len(got) != 0 {
		t.Fatalf("empty bucket lists %v", got)
	}
	revA, err := m.Mark(ctx, "relay", a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Mark(ctx, "relay", b); err != nil {
		t.Fatal(err)
	}
	if got := list(func(_ string, id ID) bool { return id == a }); len(got) != 1 || got[a] != revA {
		t.Fatalf("listed %v, want only a at revision %d", got, revA)
	}
	revA2, err := m.Mark(ctx, "relay", a) // a new owner marks a again
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unmark(ctx, "relay", a, revA); err != nil {
		t.Fatalf("unmark at an old revision: %v", err)
	}
	if got := list(all); got[a] != revA2 || len(got) != 2 {
		t.Fatalf("after a stale unmark: %v, want a at %d and b", got, revA2)
	}
	if err := m.Unmark(ctx, "relay", a, revA2); err != nil {
		t.Fatal(err)
	}
	if got := list(all); len(got) != 1 || got[a] != 0 {
		t.Fatalf("after the unmark: %v, want only b", got)
	}

	dead := func() map[ID]uint64 {
		t.Helper()
		return collect(func(fn func(string, ID, uint64) error) error { return m.DeadMarked(ctx, fn) })
	}
	if err := m.DeadMark(ctx, "relay", a); err != nil {
		t.Fatal(err)
	}
	if got := list(all); len(got) != 1 || got[b] == 0 {
		t.Fatalf("a dead mark is listed as an outbox mark: %v", got)
	}
	d := dead()
	if len(d) != 1 || d[a] == 0 {
		t.Fatalf("dead marks %v, want a", d)
	}
	if err := m.DeadMark(ctx, "relay", a); err != nil { // a letter of a dies again
		t.Fatal(err)
	}
	if err := m.DeadUnmark(ctx, "relay", a, d[a]); err != nil {
		t.Fatalf("dead unmark at an old revision: %v", err)
	}
	if d = dead(); len(d) != 1 {
		t.Fatalf("after a stale dead unmark: %v, want a", d)
	}
	if err := m.DeadUnmark(ctx, "relay", a, d[a]); err != nil {
		t.Fatal(err)
	}
	if d = dead(); len(d) != 0 {
		t.Fatalf("after the dead unmark: %v, want none", d)
	}
}
