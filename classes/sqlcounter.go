package classes

import (
	"github.com/strata-objects/strata/objects"
)

// sqlCounter is the counter kept in SQL, as a Durable Object with SQLite
// storage would: the table is created in Init, each increment is one
// upsert with RETURNING. It is the SQL counter of `strata bench`.
type sqlCounter struct{}

// SQLCounter is the "sql-counter" class: increment, get.
func SQLCounter() *objects.Class {
	return objects.Define("sql-counter", func() *sqlCounter { return &sqlCounter{} })
}

func (c *sqlCounter) Init(ctx *objects.Ctx) error {
	_, err := ctx.SQL().Exec("CREATE TABLE IF NOT EXISTS counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
	return err
}

// Increment adds by (default 1) and returns the new value.
func (c *sqlCounter) Increment(ctx *objects.Ctx, in IncrementInput) (CounterValue, error) {
	by := int64(1)
	if in.By != nil {
		by = *in.By
	}
	cur, err := ctx.SQL().Exec("INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v", by)
	if err != nil {
		return CounterValue{}, err
	}
	var out CounterValue
	if !cur.Next() {
		return out, nil
	}
	return out, cur.Scan(&out.Value)
}

// Get returns the current value.
func (c *sqlCounter) Get(ctx *objects.Ctx) (CounterValue, error) {
	cur, err := ctx.SQL().Exec("SELECT v FROM counter WHERE k = 'value'")
	if err != nil {
		return CounterValue{}, err
	}
	var out CounterValue
	if cur.Next() {
		err = cur.Scan(&out.Value)
	}
	return out, err
}
