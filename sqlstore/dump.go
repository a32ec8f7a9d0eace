package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// Table is one table's schema and rows (by rowid), for state views,
// comparisons and restore.
type Table struct {
	Name    string   `json:"name"`
	Schema  string   `json:"schema"`
	Columns []string `json:"columns"`
	RowIDs  []int64  `json:"rowids"`
	Rows    [][]any  `json:"rows"`
}

// Dump reads every user table, in name order, rows in rowid order. Its
// size is bounded by ResultBytesMax per table read.
func (d *DB) Dump(ctx context.Context) ([]Table, error) {
	rows, err := d.conn.QueryContext(ctx, "SELECT name, sql FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name != ? ORDER BY name", metaTable)
	if err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	var tables []Table
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Name, &t.Schema); err != nil {
			rows.Close()
			return nil, fmt.Errorf("dump: %w", err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	for i := range tables {
		t := &tables[i]
		res, _, err := d.read(ctx, "SELECT rowid AS rowid, * FROM "+Quote(t.Name)+" ORDER BY rowid")
		if err != nil {
			return nil, fmt.Errorf("dump %s: %w", t.Name, err)
		}
		t.Columns = res.Columns[1:]
		t.Rows = [][]any{}
		t.RowIDs = []int64{}
		for _, r := range res.Rows {
			id, _ := r[0].(int64)
			t.RowIDs = append(t.RowIDs, id)
			t.Rows = append(t.Rows, r[1:])
		}
	}
	return tables, nil
}

// Object is an index or a view: what Dump's tables do not hold of the
// schema.
type Object struct {
	Type string `json:"type"` // "index" or "view"
	Name string `json:"name"`
	SQL  string `json:"sql"` // the statement that created it
}

// Objects lists the user indexes and views in creation order (not the
// indexes SQLite makes for UNIQUE and PRIMARY KEY constraints, which go
// with their tables).
func (d *DB) Objects(ctx context.Context) ([]Object, error) {
	rows, err := d.conn.QueryContext(ctx, "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('index', 'view') AND sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
	if err != nil {
		return nil, fmt.Errorf("schema objects: %w", err)
	}
	defer rows.Close()
	out := []Object{}
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.Type, &o.Name, &o.SQL); err != nil {
			return nil, fmt.Errorf("schema objects: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Schema returns the schema statements of user objects (tables, indexes,
// views) in creation order.
func (d *DB) Schema(ctx context.Context) ([]string, error) {
	res, _, err := d.read(ctx, "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND name != '"+metaTable+"' ORDER BY rowid")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(res.Rows))
	for _, r := range res.Rows {
		s, _ := r[0].(string)
		out = append(out, s)
	}
	return out, nil
}

// read runs an internal read without capture or refusals.
func (d *DB) read(ctx context.Context, q string, args ...any) (*Result, []any, error) {
	rows, err := d.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	res := &Result{}
	if res.Columns, err = rows.Columns(); err != nil {
		return nil, nil, err
	}
	bytes := 0
	for rows.Next() {
		vals, err := scanRow(rows, len(res.Columns))
		if err != nil {
			return nil, nil, err
		}
		for _, v := range vals {
			bytes += valueBytes(v)
		}
		if bytes > ResultBytesMax {
			return nil, nil, fmt.Errorf("%w: over %d bytes", ErrRefused, ResultBytesMax)
		}
		res.Rows = append(res.Rows, vals)
	}
	return res, nil, rows.Err()
}

// scanRow reads the current row's n columns, as the Go types SQL values
// are kept in (normal).
func scanRow(rows *sql.Rows, n int) ([]any, error) {
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	for i, v := range vals {
		vals[i] = normal(v)
	}
	return vals, nil
}

// QueryReadOnly runs a user query that may not change anything (time
// travel): it runs in a savepoint that is always rolled back, and any
// change or schema statement is refused.
func (d *DB) QueryReadOnly(ctx context.Context, q string, args ...any) (*Result, error) {
	if err := d.Savepoint(ctx, "strata_ro"); err != nil {
		return nil, err
	}
	res, chs, err := d.queryAll(ctx, q, args)
	if rerr := d.RollbackTo(ctx, "strata_ro"); rerr != nil && err == nil {
		err = rerr
	}
	if err == nil && len(chs) > 0 {
		err = fmt.Errorf("%w: a query of a past version is read-only", ErrRefused)
	}
	return res, err
}
