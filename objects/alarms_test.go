package objects

import (
	"errors"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// alarmsOf renders the object's alarms as name → due Unix ns.
func alarmsOf(c *Ctx) (map[string]int64, error) {
	all, err := c.Storage().Alarms()
	out := map[string]int64{}
	for n, at := range all {
		out[n] = at.UnixNano()
	}
	return out, err
}

// TestAlarmStorage: alarms read their own writes, are visible to later
// turns before and after projection, survive DeleteAll, follow nested
// transactions, and are refused whole when bad.
func TestAlarmStorage(t *testing.T) {
	h := newHarness(t)
	t1, t2 := time.Unix(0, 1_900_000_000_000_000_001), time.Unix(0, 1_900_000_000_000_000_002)
	h.must("a", func(c *Ctx, _ *scratch) (any, error) {
		st := c.Storage()
		if _, ok, _ := st.GetAlarm(); ok {
			t.Fatal("fresh object has an alarm")
		}
		if err := st.SetAlarm(t1); err != nil {
			return nil, err
		}
		if at, ok, err := st.GetAlarm(); err != nil || !ok || !at.Equal(t1) {
			t.Fatalf("read own alarm: %v %v %v", at, ok, err)
		}
		if err := st.SetAlarmNamed("x", t2); err != nil {
			return nil, err
		}
		// A failed transaction's alarm writes are discarded.
		err := st.Transaction(func(tx *Storage) error {
			if err := tx.SetAlarmNamed("y", t1); err != nil {
				return err
			}
			if _, err := tx.DeleteAlarm(); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if err == nil {
			t.Fatal("transaction did not fail")
		}
		return nil, st.DeleteAll() // keeps alarms
	})
	check := func(when string) {
		t.Helper()
		got := h.must("a", func(c *Ctx, _ *scratch) (any, error) { return alarmsOf(c) }).(map[string]int64)
		if len(got) != 2 || got[""] != t1.UnixNano() || got["x"] != t2.UnixNano() {
			t.Fatalf("%s: alarms %v", when, got)
		}
	}
	check("from the overlay")
	h.flush()
	check("from the snapshot")

	// The event holds the alarm writes, in order.
	rec, err := h.log.Last(t.Context(), "scratch", IDFromName("scratch", "a"))
	if err != nil {
		t.Fatal(err)
	}
	ws := rec.Event.Turns[0].Writes
	if len(ws) != 3 || ws[0].Op != log.OpDeleteAll || ws[1].Op != log.OpSetAlarm || ws[1].At != t1.UnixNano() || ws[2].Key != "x" {
		t.Fatalf("event writes %+v", ws)
	}

	// Delete, then read before projection.
	h.must("a", func(c *Ctx, _ *scratch) (any, error) { return c.Storage().DeleteAlarmNamed("x") })
	got := h.must("a", func(c *Ctx, _ *scratch) (any, error) { return alarmsOf(c) }).(map[string]int64)
	if _, ok := got["x"]; ok || len(got) != 1 {
		t.Fatalf("after delete: %v", got)
	}

	// Bad input writes nothing.
	v := h.lastVersion("scratch", "a")
	for _, fn := range []turnFn{
		func(c *Ctx, _ *scratch) (any, error) {
			return nil, c.Storage().SetAlarmNamed(string(make([]byte, 129)), t1)
		},
		func(c *Ctx, _ *scratch) (any, error) { return nil, c.Storage().SetAlarmNamed("\xff", t1) },
		func(c *Ctx, _ *scratch) (any, error) { return nil, c.Storage().SetAlarm(time.Time{}) },
	} {
		if _, err := h.do("a", fn); !errors.Is(err, ErrBadInput) {
			t.Fatalf("bad alarm: %v, want ErrBadInput", err)
		}
	}
	if got := h.lastVersion("scratch", "a"); got != v {
		t.Fatalf("a refused alarm wrote: version %d, was %d", got, v)
	}
}
