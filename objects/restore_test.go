package objects

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
)

// TestRestoreAndUndo: restoring to a past version sets the storage back
// with one new event and resets the activation; restoring to the version
// before the restore undoes it exactly.
func TestRestoreAndUndo(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ref := h.ref("scratch", "r")
	states := map[uint64]string{}
	steps := []turnFn{
		put("a", "1", "b", "1"),
		put("a", "2", "c", "1"),
		func(c *Ctx, _ *scratch) (any, error) { _, err := c.Storage().Delete("b"); return nil, err },
		put("d", "1", "a", "3"),
	}
	for i, st := range steps {
		h.must("r", st)
		states[uint64(i+1)] = h.must("r", list(ListOptions{})).(string)
	}
	h.must("r", func(_ *Ctx, s *scratch) (any, error) { s.mem["warm"] = 1; return nil, nil })
	activations := h.activations.Load()

	res, err := h.rt.Restore(ctx, ref, history.At{Version: 2}, Cause{RequestID: "undo-deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || res.Deleted != 1 || res.Put != 2 {
		t.Fatalf("restore result %+v", res)
	}
	out := h.must("r", func(c *Ctx, s *scratch) (any, error) {
		kvs, err := c.Storage().List(ListOptions{})
		return fmt.Sprint(render(kvs), " mem=", s.mem["warm"]), err
	})
	if out != states[2]+" mem=0" {
		t.Fatalf("after restore: %q, want %q with memory reset", out, states[2]+" mem=0")
	}
	if h.activations.Load() != activations+1 {
		t.Fatal("the activation was not reset by the restore")
	}
	rec, err := h.log.Last(ctx, "scratch", ref.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Cause; rec.Event.Version != 5 || c.Via != log.ViaSystem || c.Method != "restore to version 2" || c.RequestID != "undo-deploy" {
		t.Fatalf("restore event v%d cause %+v", rec.Event.Version, c)
	}
	// Undo: back to the version before the restore.
	if _, err := h.rt.Restore(ctx, ref, history.At{Version: 4}, Cause{}); err != nil {
		t.Fatal(err)
	}
	if got := h.must("r", list(ListOptions{})); got != states[4] {
		t.Fatalf("after undo: %q, want %q", got, states[4])
	}
	// Bad input writes nothing.
	if _, err := h.rt.Restore(ctx, ref, history.At{Version: 99}, Cause{}); !errors.Is(err, ErrBadRange) {
		t.Fatalf("restore to version 99: %v", err)
	}
	if v := h.lastVersion("scratch", "r"); v != 6 {
		t.Fatalf("log at version %d, want 6", v)
	}
}

func TestListObjects(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 25; i++ {
		h.must(fmt.Sprintf("obj-%02d", i), put("k", "v"))
	}
	h.must("other", put("k", "v"))
	h.flush()
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := h.rt.ListObjects("scratch", "obj-", cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			if seen[o.Name] || o.Version != 1 || o.ID != IDFromName("scratch", o.Name) {
				t.Fatalf("listed %+v twice or wrong", o)
			}
			seen[o.Name] = true
		}
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages for 25 objects by 10", pages+1)
			}
			break
		}
		cursor = next
	}
	if len(seen) != 25 || seen["other"] {
		t.Fatalf("listed %d objects: %v", len(seen), seen)
	}
	if _, _, err := h.rt.ListObjects("scratch", "", "zz", 10); !errors.Is(err, ErrBadInput) {
		t.Fatalf("bad cursor: %v", err)
	}
}
