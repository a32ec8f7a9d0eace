package objects

import (
	"context"
	"testing"
)

// TestHandoff: two nodes share one log; each claims an object by asking
// the other to release it before loading. The object moves back and forth
// without a fence (no stale activation is ever left to write) and no write
// is lost; the releasing side's activation is gone once Release returns.
func TestHandoff(t *testing.T) {
	srv := startServer(t)
	var a, b *harness
	claimFrom := func(other **harness) harnessOpt {
		return func(c *Config) {
			c.Claim = func(ctx context.Context, class string, id ID) {
				if _, err := (*other).rt.Release(ctx, class, id); err != nil {
					t.Errorf("release: %v", err)
				}
			}
		}
	}
	a = newHarnessOn(t, srv, claimFrom(&b))
	b = newHarnessOn(t, srv, claimFrom(&a))
	ctx := context.Background()
	want := 0
	for round := range 4 {
		for _, h := range []*harness{a, b} {
			want++
			got, err := h.add(ctx, "moving", 1)
			if err != nil || got != want {
				t.Fatalf("round %d: add = %d, %v; want %d", round, got, err, want)
			}
			other := a
			if h == a {
				other = b
			}
			if live := other.rt.Stats().Live; live != 0 {
				t.Fatalf("round %d: the other node still holds %d activations", round, live)
			}
		}
	}
	if f := a.fences.Load() + b.fences.Load(); f != 0 {
		t.Fatalf("%d fences: an activation was left behind", f)
	}
	// ReleaseIf picks by object; Release of an object not active is a no-op.
	if n := a.rt.ReleaseIf(func(string, ID) bool { return true }); n != 0 {
		t.Fatalf("ReleaseIf released %d on a node without activations", n)
	}
	if n := b.rt.ReleaseIf(func(class string, _ ID) bool { return class == "tally" }); n != 1 {
		t.Fatalf("ReleaseIf released %d, want 1", n)
	}
	waitFor(t, "release", func() bool { return b.rt.Stats().Live == 0 })
	if ok, err := b.rt.Release(ctx, "tally", IDFromName("tally", "moving")); ok || err != nil {
		t.Fatalf("release of a released object: %v %v", ok, err)
	}
}
