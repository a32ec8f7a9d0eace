package objects

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/strata-objects/strata/internal/benchcpu"
)

// sqlCounterUpsert is the SQL counter's increment (classes/sqlcounter.go).
const sqlCounterUpsert = "INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v"

// BenchmarkSQLCounter: the SQL counter's increment end to end in process
// (RPC, the turn's SQL, the event appended with fsync and acknowledged,
// the file's commits, checkpoints), on one object, sequential (W1-sql)
// and from 32 callers (W2-sql), with the key-value counter's turn in the
// same run for the ratio:
//
//	go test -run x -bench SQLCounter -benchtime 20000x ./objects
//
// cpu-µs/op (the process's CPU per turn) is the figure to compare on a
// shared machine.
func BenchmarkSQLCounter(b *testing.B) {
	h := newHarness(b, withSQLDir(b.TempDir()))
	ctx := context.Background()
	round := 0
	upsert := func(name string) error {
		_, err := h.do(name, func(c *Ctx, _ *scratch) (any, error) {
			cur, err := c.SQL().Exec(sqlCounterUpsert, 1)
			if err != nil {
				return nil, err
			}
			var v int64
			if cur.Next() {
				err = cur.Scan(&v)
			}
			return v, err
		})
		return err
	}
	kv := func(name string) error {
		_, err := h.add(ctx, name, 1)
		return err
	}
	for _, callers := range []int{1, 32} {
		for _, kind := range []string{"kv", "sql"} {
			b.Run(fmt.Sprintf("%s-%d", kind, callers), func(b *testing.B) {
				round++
				name := fmt.Sprint("c-", round)
				turn := kv
				if kind == "sql" {
					turn = upsert
					h.must(name, func(c *Ctx, _ *scratch) (any, error) {
						_, err := c.SQL().Exec("CREATE TABLE IF NOT EXISTS counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
						return nil, err
					})
				}
				if err := turn(name); err != nil { // activated before the clock starts
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				b.ResetTimer()
				cpu := benchcpu.Start(b)
				for c := 0; c < callers; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := c; i < b.N; i += callers {
							if err := turn(name); err != nil {
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
}
