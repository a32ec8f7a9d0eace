package objects

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/sqlstore"
)

// SQL is the object's SQL database as one turn sees it (Durable Objects'
// ctx.storage.sql). Statements run in the turn's implicit transaction
// together with its key-value writes: the turn's row and schema changes
// are recorded in its event beside its writes, committed or discarded
// together; Storage.Transaction covers both. See sqlstate.go for where the
// database lives.
type SQL struct{ t *turn }

// SQL returns the turn's SQL database.
func (c *Ctx) SQL() *SQL { return &SQL{t: c.t} }

// Errors of SQL statements: ErrSQL carries SQLite's message (bad syntax,
// a constraint, a full database), ErrSQLRefused a statement that would
// break replay or escape the object. Both are the caller's fault.
var (
	ErrSQL        = sqlstore.ErrSQL
	ErrSQLRefused = sqlstore.ErrRefused
)

// Cursor is a statement's result. Rows are materialized when Exec returns
// (up to sqlstore.ResultBytesMax), so a cursor stays valid after its turn.
type Cursor struct {
	res *sqlstore.Result
	i   int
}

// Exec runs query (one or more statements; the cursor has the last one's
// rows) with bindings. On error nothing the query did stays.
func (s *SQL) Exec(query string, args ...any) (*Cursor, error) {
	t := s.t
	if t.done {
		return nil, errors.New("objects: SQL used after its turn ended")
	}
	for i, a := range args {
		v, err := bindValue(a)
		if err != nil {
			return nil, fmt.Errorf("%w: binding %d: %w", ErrBadInput, i+1, err)
		}
		args[i] = v
	}
	db, err := t.sqlBegin()
	if err != nil {
		return nil, err
	}
	// The query needs a savepoint to roll back to if it fails. The
	// turn's own (or the transaction it began) serves when nothing has
	// changed in it yet, outside Storage.Transaction: rolling it back
	// undoes this query alone. So a turn's first statement, usually its
	// only one, pays no savepoint of its own (docs/benchmarks.md, issue 17).
	own := t.sqlFresh && t.tx == nil
	if !own {
		if err := db.Savepoint(t.req.ctx, "strata_exec"); err != nil {
			return nil, t.a.sqlBroken(err)
		}
	}
	res, chs, err := db.QueryIn(t.req.ctx, query, args...)
	if err == nil {
		err = t.curWS().stageSQL(chs)
	}
	if err != nil {
		if own {
			t.sqlEnd(false) // the next statement opens the turn's savepoint again
		} else if rerr := db.RollbackTo(t.req.ctx, "strata_exec"); rerr != nil {
			// SQLite rolled back its whole transaction, not just the
			// query (see sqlRebuild): the query's own error is still the
			// answer.
			if rerr := t.sqlRebuild(context.Background()); rerr != nil {
				t.a.sqlBroken(rerr)
			}
		}
		return nil, err
	}
	t.sqlFresh = false
	if !own {
		if err := db.Release(t.req.ctx, "strata_exec"); err != nil {
			return nil, t.a.sqlBroken(err)
		}
	}
	return &Cursor{res: res, i: -1}, nil
}

// DatabaseSize is the database's size in bytes.
func (s *SQL) DatabaseSize() (int64, error) {
	db, err := s.t.sqlBegin()
	if err != nil {
		return 0, err
	}
	return db.Size(s.t.req.ctx)
}

func bindValue(a any) (any, error) {
	switch x := a.(type) {
	case nil, int64, float64, string, []byte:
		return a, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d out of range", x)
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	}
	return nil, fmt.Errorf("unsupported type %T (use nil, integers, floats, strings, []byte, bool)", a)
}

// Columns names the result's columns.
func (c *Cursor) Columns() []string { return c.res.Columns }

// Next moves to the next row and reports whether there is one.
func (c *Cursor) Next() bool {
	if c.i+1 >= len(c.res.Rows) {
		c.i = len(c.res.Rows)
		return false
	}
	c.i++
	return true
}

// Values is the current row's values (nil, int64, float64, string, []byte).
func (c *Cursor) Values() []any {
	if c.i < 0 || c.i >= len(c.res.Rows) {
		return nil
	}
	return c.res.Rows[c.i]
}

// Scan copies the current row into dest: *int64, *int, *float64, *string,
// *[]byte, *bool or *any.
func (c *Cursor) Scan(dest ...any) error {
	row := c.Values()
	if row == nil {
		return errors.New("objects: Scan without a current row (call Next)")
	}
	if len(dest) != len(row) {
		return fmt.Errorf("objects: Scan of %d values into %d destinations", len(row), len(dest))
	}
	for i, d := range dest {
		if err := assign(d, row[i]); err != nil {
			return fmt.Errorf("column %s: %w", c.res.Columns[i], err)
		}
	}
	return nil
}

func assign(dst, v any) error {
	switch d := dst.(type) {
	case *any:
		*d = v
		return nil
	case *int64:
		x, ok := v.(int64)
		if !ok {
			return fmt.Errorf("%T into *int64", v)
		}
		*d = x
	case *int:
		x, ok := v.(int64)
		if !ok {
			return fmt.Errorf("%T into *int", v)
		}
		*d = int(x)
	case *bool:
		x, ok := v.(int64)
		if !ok {
			return fmt.Errorf("%T into *bool", v)
		}
		*d = x != 0
	case *float64:
		switch x := v.(type) {
		case float64:
			*d = x
		case int64:
			*d = float64(x)
		default:
			return fmt.Errorf("%T into *float64", v)
		}
	case *string:
		switch x := v.(type) {
		case string:
			*d = x
		case []byte:
			*d = string(x)
		default:
			return fmt.Errorf("%T into *string", v)
		}
	case *[]byte:
		switch x := v.(type) {
		case []byte:
			*d = append([]byte(nil), x...)
		case string:
			*d = []byte(x)
		case nil:
			*d = nil
		default:
			return fmt.Errorf("%T into *[]byte", v)
		}
	default:
		return fmt.Errorf("unsupported destination %T", dst)
	}
	return nil
}

// Row is one row by column name.
type Row map[string]any

// ToArray returns the remaining rows by column name.
func (c *Cursor) ToArray() []Row {
	var out []Row
	for c.Next() {
		out = append(out, c.row())
	}
	return out
}

// Raw returns the remaining rows as value lists.
func (c *Cursor) Raw() [][]any {
	var out [][]any
	for c.Next() {
		out = append(out, c.Values())
	}
	return out
}

// One returns the only row; it is an error if there is not exactly one.
func (c *Cursor) One() (Row, error) {
	if len(c.res.Rows) != 1 || c.i >= 0 {
		return nil, fmt.Errorf("%w: expected exactly one row, the query returned %d", ErrSQL, len(c.res.Rows))
	}
	c.Next()
	return c.row(), nil
}

func (c *Cursor) row() Row {
	r := make(Row, len(c.res.Columns))
	for i, name := range c.res.Columns {
		r[name] = c.res.Rows[c.i][i]
	}
	return r
}

// RowsRead is how many rows the query returned (SQLite's count of rows
// scanned is not exposed through this driver).
func (c *Cursor) RowsRead() int64 { return c.res.RowsRead }

// RowsWritten is how many rows the query inserted, updated or deleted.
func (c *Cursor) RowsWritten() int64 { return c.res.RowsWritten }

// stageSQL adds a statement's changes to the write set, within the
// turn's byte budget (shared with key-value writes).
func (w *writeSet) stageSQL(chs []log.SQLChange) error {
	cost := 0
	for _, c := range chs {
		cost += sqlstore.ChangeBytes(c)
	}
	if w.bytes+cost > WriteSetBytesMax {
		return tooLarge("write set (with SQL row changes)", w.bytes+cost, WriteSetBytesMax)
	}
	w.sql = append(w.sql, chs...)
	w.bytes += cost
	return nil
}

// curWS is the write set SQL changes go to: the innermost explicit
// transaction's, else the turn's.
func (t *turn) curWS() *writeSet {
	if t.tx != nil {
		return t.tx
	}
	return t.st.ws
}

// WithSQLSizeMax sets the class's cap on one object's SQL database, in
// bytes (default sqlstore.DefaultSizeMax, 1 GiB). A write past it fails
// with SQLite's "database or disk is full".
func (c *Class) WithSQLSizeMax(n int64) *Class {
	c.sqlSizeMax = n
	return c
}
