package objects

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/benchcpu"
)

// Count adds one to "count" (BenchmarkMessages' target method).
func (*inbox) Count(c *Ctx) (int, error) {
	n, _, err := GetJSON[int](c.Storage(), "count")
	if err != nil {
		return 0, err
	}
	return n + 1, PutJSON(c.Storage(), "count", n+1)
}

var benchSettleDelay = flag.Duration("messages.settle-delay", 0, "BenchmarkMessages: Config.SettleDelay (0: the default)")

// BenchmarkMessages is M1's shape on one node, in process: 32 clients send
// durable messages (each a sender's turn of one Send) from inbox ms-i to
// mt-i, i uniform over 1,000 pairs; an op is one message, from its send
// until it has run on its target and its sender's log has settled it (the
// benchmark waits until every sender's snapshot outbox is empty). It
// reports cpu-µs/op (the whole process: server, runtime, projector) and
// events/op (acknowledged appends of every object per message).
//
//	go test -run '^$' -bench BenchmarkMessages -benchtime 20000x ./objects/ [-messages.settle-delay 2s]
func BenchmarkMessages(b *testing.B) {
	const pairs, clients = 1000, 32
	var delivered, events atomic.Int64
	h := newHarness(b, func(c *Config) {
		c.Classes = append(c.Classes, Define("inbox", func() *inbox { return &inbox{} }))
		c.Hooks.Delivered = func(string, ID, bool) { delivered.Add(1) }
		c.Hooks.Acked = func(string, ID, uint64, uint64) { events.Add(1) }
		c.SettleDelay = *benchSettleDelay
	})
	ctx := context.Background()
	send := func(i int) error {
		body, _ := json.Marshal(SendIn{To: fmt.Sprintf("mt-%d", i), N: 1, Method: "count"})
		_, err := h.rt.Call(ctx, h.ref("inbox", fmt.Sprintf("ms-%d", i)), "send", body, jsonCodec{}, Cause{})
		return err
	}
	settled := func() {
		deadline := time.Now().Add(2 * time.Minute)
		for i := 0; i < pairs; i++ {
			for {
				out, err := h.rt.Outbox(context.Background(), h.ref("inbox", fmt.Sprintf("ms-%d", i)))
				if err != nil {
					b.Fatal(err)
				}
				if len(out) == 0 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("ms-%d has %d messages pending", i, len(out))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	run := func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range clients {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if err := send(rng.IntN(pairs)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	// Activate every pair with one message, unmeasured.
	var wg sync.WaitGroup
	var first atomic.Int64
	for range clients {
		wg.Go(func() {
			for i := int(first.Add(1) - 1); i < pairs; i = int(first.Add(1) - 1) {
				if err := send(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for delivered.Load() < pairs {
		time.Sleep(5 * time.Millisecond)
	}
	settled()
	events.Store(0)
	delivered.Store(0)
	b.ResetTimer()
	stop := benchcpu.Start(b)
	run(b.N)
	for delivered.Load() < int64(b.N) {
		time.Sleep(5 * time.Millisecond)
	}
	settled()
	stop()
	b.StopTimer()
	b.ReportMetric(float64(events.Load())/float64(b.N), "events/op")
}
