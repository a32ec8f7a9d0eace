package objects

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-objects/strata/internal/benchcpu"
)

// The read cache (activation.go, invariant 8) answers reads exactly as
// the snapshot would: random puts, deletes, DeleteAlls and gets over a few
// keys, in turns with the projector catching up between some of them, a
// cache bound small enough to evict all the time, and every get checked
// against a model. Keys read or applied are served from the cache after.
func TestReadCache(t *testing.T) {
	const bound = 40
	h := newHarness(t, func(c *Config) { c.ReadCacheBytes = bound })
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c", "d", "e"}
	for turn := range 300 {
		h.must("rc", func(c *Ctx, _ *scratch) (any, error) {
			s := c.Storage()
			for range 1 + rng.IntN(4) {
				k := keys[rng.IntN(len(keys))]
				switch op := rng.IntN(10); {
				case op < 3:
					v := fmt.Sprint(turn, "-", rng.IntN(1000))
					if err := s.Put(k, []byte(v)); err != nil {
						return nil, err
					}
					model[k] = v
				case op < 4:
					if _, err := s.Delete(k); err != nil {
						return nil, err
					}
					delete(model, k)
				case op < 5 && rng.IntN(4) == 0:
					if err := s.DeleteAll(); err != nil {
						return nil, err
					}
					clear(model)
				default:
					v, ok, err := s.Get(k)
					if err != nil {
						return nil, err
					}
					if want, has := model[k]; ok != has || string(v) != want {
						return nil, fmt.Errorf("turn %d: get %q = %q %v, want %q %v", turn, k, v, ok, want, has)
					}
				}
			}
			a := c.t.a
			n := 0
			for k, e := range a.cache {
				n += len(k) + len(e.val)
			}
			if n != a.cacheB || n > bound {
				return nil, fmt.Errorf("turn %d: cache holds %d bytes, counts %d, bound %d", turn, n, a.cacheB, bound)
			}
			return nil, nil
		})
		if rng.IntN(3) == 0 {
			h.flush()
		}
	}

	// A key read from the snapshot is then in the cache; so is one whose
	// write the projector applied.
	h = newHarness(t)
	h.must("seen", func(c *Ctx, _ *scratch) (any, error) { return nil, c.Storage().Put("w", []byte("1")) })
	h.flush()
	h.must("seen", func(c *Ctx, _ *scratch) (any, error) {
		if _, _, err := c.Storage().Get("r"); err != nil {
			return nil, err
		}
		return nil, nil
	})
	h.must("seen", func(c *Ctx, _ *scratch) (any, error) {
		a := c.t.a
		if e, ok := a.cache["r"]; !ok || !e.del {
			t.Errorf("a key read absent from the snapshot is not cached as absent: %+v %v", e, ok)
		}
		if e, ok := a.cache["w"]; !ok || string(e.val) != "1" {
			t.Errorf("a write the projector applied is not cached: %+v %v", e, ok)
		}
		return nil, nil
	})
}

// BenchmarkReadCache: turns that read a projected key, with the read cache
// (the default) and without it (ReadCacheBytes -1), in one run:
//
//	go test -run x -bench ReadCache ./objects
//
// read            a read-only turn: Get of one key (no event)
// read-write-1000 1,000 live objects, 32 callers, each turn a Get then a Put
//
//	(the tally class: a counter as a JavaScript class writes it)
func BenchmarkReadCache(b *testing.B) {
	ctx := context.Background()
	for _, cache := range []struct {
		name  string
		bytes int
	}{{"cache", 0}, {"nocache", -1}} {
		h := newHarness(b, func(c *Config) { c.ReadCacheBytes = cache.bytes })
		h.must("k", func(c *Ctx, _ *scratch) (any, error) { return nil, c.Storage().Put("n", []byte("1")) })
		names := make([]string, 1000)
		for i := range names {
			names[i] = fmt.Sprint("rc-", i)
			if _, err := h.add(ctx, names[i], 1); err != nil {
				b.Fatal(err)
			}
		}
		h.flush()
		b.Run("read/"+cache.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := benchcpu.Start(b)
			for b.Loop() {
				h.must("k", func(c *Ctx, _ *scratch) (any, error) {
					_, _, err := c.Storage().Get("n")
					return nil, err
				})
			}
			cpu()
		})
		b.Run("read-write-1000/"+cache.name, func(b *testing.B) {
			var n atomic.Uint64
			var wg sync.WaitGroup
			cpu := benchcpu.Start(b)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := n.Add(1); i <= uint64(b.N); i = n.Add(1) {
						if _, err := h.add(ctx, names[(i*7919)%1000], 1); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			cpu()
		})
	}
}
