package objects

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

var errCommitInjected = errors.New("injected commit failure")

// While the projector cannot commit, an activation's overlay stops at its
// byte bound: the next turn waits instead of growing it. When Badger
// commits again, the projector heals from the log, the overlay drains,
// and the waiting turn runs (issue 15, defect 4).
func TestOverlayBoundWaitsForProjection(t *testing.T) {
	var failing atomic.Bool
	var failed atomic.Int64
	const budget = 64 << 10
	h := newHarnessProj(t, startServer(t), log.Config{}, func(c *projector.Config) {
		c.BeforeCommit = func(int) error {
			if failing.Load() {
				failed.Add(1)
				return errCommitInjected
			}
			return nil
		}
	}, func(c *Config) { c.OverlayBytesMax = budget })

	value := strings.Repeat("v", 16<<10)
	var maxSeen atomic.Int64
	write := func(i int) func(c *Ctx, s *scratch) (any, error) {
		return func(c *Ctx, s *scratch) (any, error) {
			maxSeen.Store(max(maxSeen.Load(), int64(c.t.a.overlayB)))
			return nil, c.Storage().Put(fmt.Sprint("k", i), []byte(value))
		}
	}
	h.must("big", write(0)) // the object exists and is projected
	h.flush()

	failing.Store(true)
	// Four turns of 16 KiB and a little reach the bound of 64 KiB.
	i := 1
	for ; i <= 4; i++ {
		h.must("big", write(i))
	}
	var ran atomic.Bool
	done := make(chan error, 1)
	go func() {
		_, err := h.do("big", func(c *Ctx, s *scratch) (any, error) {
			ran.Store(true)
			return write(i)(c, s)
		})
		done <- err
	}()
	// The projector keeps trying (and failing) to heal: the turn must not
	// run meanwhile.
	before := failed.Load()
	waitFor(t, "two more failed commits", func() bool { return failed.Load() >= before+2 })
	if ran.Load() {
		t.Fatalf("a turn ran with the overlay at its bound (%d bytes seen, bound %d)", maxSeen.Load(), budget)
	}
	failing.Store(false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := maxSeen.Load(); m > budget+WriteSetBytesMax {
		t.Fatalf("overlay reached %d bytes, bound %d", m, budget)
	}
	last := h.lastVersion("scratch", "big")
	waitFor(t, "the snapshot at the log's version", func() bool {
		meta, err := h.proj.Meta("scratch", IDFromName("scratch", "big"))
		if err != nil {
			t.Fatal(err)
		}
		return meta.Version == last
	})
	for k := 0; k <= i; k++ {
		if _, ok, err := h.proj.Get("scratch", IDFromName("scratch", "big"), fmt.Sprint("k", k)); err != nil || !ok {
			t.Fatalf("key k%d in the snapshot: %v %v", k, ok, err)
		}
	}
}
