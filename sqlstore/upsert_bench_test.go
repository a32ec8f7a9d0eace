package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/strata-objects/strata/internal/benchcpu"
)

// BenchmarkUpsert: the SQL counter's statement as a live activation runs
// it (objects.SQL.Exec): QueryIn inside the open write transaction, with a
// request's context (one that can end), the transaction committed every
// 16 statements as the activation's settle does:
//
//	go test -run x -bench Upsert ./sqlstore
func BenchmarkUpsert(b *testing.B) {
	for _, bc := range []struct{ name, q string }{
		{"returning", "INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v"},
		{"plain", "INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			db, err := Open(ctx, filepath.Join(b.TempDir(), "t.db"), Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, _, err := db.Query(ctx, "CREATE TABLE counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"); err != nil {
				b.Fatal(err)
			}
			if err := db.Begin(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchcpu.Start(b)
			for i := 0; i < b.N; i++ {
				if _, _, err := db.QueryIn(ctx, bc.q, int64(1)); err != nil {
					b.Fatal(err)
				}
				if i%16 == 15 {
					if err := db.SetApplied(ctx, uint64(i+1), uint64(i+1)); err != nil {
						b.Fatal(err)
					}
					if err := db.Commit(ctx); err != nil {
						b.Fatal(err)
					}
					if err := db.Begin(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu()
			if err := db.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
