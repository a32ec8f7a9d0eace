package objects

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkKeyedTurn measures what an Idempotency-Key costs a write: one
// object's counter turn end to end (RPC → event acknowledged), with and
// without a key, sequential and with 32 concurrent callers, and a retry
// answered from the record:
//
//	go test -run x -bench KeyedTurn -benchtime 2s ./objects
func BenchmarkKeyedTurn(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	var seq atomic.Int64
	call := func(name string, keyed bool) error {
		var cause Cause
		if keyed {
			cause.IdemKey = fmt.Sprint("k", seq.Add(1))
		}
		_, err := h.rt.Call(ctx, h.ref("tally", name), "add", []byte("1"), jsonTestCodec{}, cause)
		return err
	}
	for _, keyed := range []bool{false, true} {
		b.Run(fmt.Sprintf("keyed=%v", keyed), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := call(fmt.Sprint("seq-", keyed), keyed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("keyed=%v-32", keyed), func(b *testing.B) {
			var wg sync.WaitGroup
			var next atomic.Int64
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := call(fmt.Sprint("par-", keyed), keyed); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
	b.Run("replay", func(b *testing.B) {
		cause := Cause{IdemKey: "the-same"}
		for i := 0; i < b.N; i++ {
			if _, err := h.rt.Call(ctx, h.ref("tally", "replay"), "add", []byte("1"), jsonTestCodec{}, cause); err != nil {
				b.Fatal(err)
			}
		}
	})
}
