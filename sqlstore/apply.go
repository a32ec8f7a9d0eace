package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/strata-objects/strata/log"
)

// Apply replays recorded changes in order, with the capture off. The
// caller holds the transaction.
//
// A run of changes to one row (an insert or update, then updates of the
// row it left that keep its rowid) is applied as one change with the
// run's last values: the row ends the same, and a counter's turns, each
// an update of the same row, cost one statement per event replayed
// instead of one per turn (catching up, checkpoints; issue 17).
func (d *DB) Apply(ctx context.Context, chs []log.SQLChange) error {
	for i := 0; i < len(chs); {
		c, n := coalesce(chs[i:])
		if err := d.apply(ctx, c); err != nil {
			return fmt.Errorf("apply SQL change %d (%s %s): %w", i, c.Op, c.Table, err)
		}
		i += n
	}
	return nil
}

// coalesce returns the change that the run of changes to one row at the
// head of chs makes, and the run's length. Only updates that keep the
// rowid join a run: an insert at one rowid then moved to another would
// not advance an AUTOINCREMENT table's sequence as the two did.
func coalesce(chs []log.SQLChange) (log.SQLChange, int) {
	c := chs[0]
	if c.Op != log.OpSQLInsert && c.Op != log.OpSQLUpdate {
		return c, 1
	}
	at := c.NewRowID
	if c.Op == log.OpSQLInsert {
		at = c.RowID
	}
	n := 1
	for ; n < len(chs); n++ {
		next := chs[n]
		if next.Op != log.OpSQLUpdate || next.Table != c.Table || next.RowID != at || next.NewRowID != at || len(next.New) != len(c.New) {
			break
		}
		c.New = next.New
	}
	return c, n
}

func (d *DB) apply(ctx context.Context, c log.SQLChange) error {
	if c.Op == log.OpSQLSchema {
		if _, err := d.conn.ExecContext(ctx, c.Stmt); err != nil {
			return fmt.Errorf("%w: %w", ErrReplay, err)
		}
		d.cols = map[string][]string{}
		d.closeStmts()
		return nil
	}
	cols, err := d.columns(ctx, c.Table)
	if err != nil {
		return err
	}
	var q string
	var args []any
	pick := func(vals []any) error {
		if len(vals) != len(cols) {
			return fmt.Errorf("%w: %d values for %d columns", ErrReplay, len(vals), len(cols))
		}
		for i, name := range cols {
			if name != "" {
				args = append(args, vals[i])
			}
		}
		return nil
	}
	switch c.Op {
	case log.OpSQLInsert:
		q = "insert\x00" + c.Table
		args = append(args, c.RowID)
		if err := pick(c.New); err != nil {
			return err
		}
	case log.OpSQLUpdate:
		if len(c.Old) != len(cols) || len(c.New) != len(cols) {
			return fmt.Errorf("%w: %d and %d values for %d columns", ErrReplay, len(c.Old), len(c.New), len(cols))
		}
		if set, changed := changedColumns(c, cols); c.NewRowID == c.RowID && changed > 0 {
			// Only the columns that change: no index that covers none of
			// them is touched, and the row is rewritten in place rather
			// than deleted and inserted (what assigning the rowid does).
			q = "update\x00" + c.Table + "\x00" + set
			for i, name := range cols {
				if name != "" && set[i] == '1' {
					args = append(args, c.New[i])
				}
			}
			args = append(args, c.RowID)
			break
		}
		q = "update\x00" + c.Table
		args = append(args, c.NewRowID)
		if err := pick(c.New); err != nil {
			return err
		}
		args = append(args, c.RowID)
	case log.OpSQLDelete:
		q = "delete\x00" + c.Table
		args = append(args, c.RowID)
	default:
		return fmt.Errorf("%w: op %s", ErrReplay, c.Op)
	}
	st, release, err := d.stmt(ctx, q, cols)
	if err != nil {
		return err
	}
	defer release()
	r, err := st.ExecContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReplay, err)
	}
	if n, err := r.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: row %d of %s: %d rows affected", ErrReplay, c.RowID, c.Table, n)
	}
	return nil
}

// columns returns a table's columns in order, "" for generated ones
// (they are computed, not stored by the insert).
func (d *DB) columns(ctx context.Context, table string) ([]string, error) {
	if cols, ok := d.cols[table]; ok {
		return cols, nil
	}
	rows, err := d.conn.QueryContext(ctx, "SELECT name, hidden FROM pragma_table_xinfo(?) ORDER BY cid", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name string
		var hidden int
		if err := rows.Scan(&name, &hidden); err != nil {
			return nil, err
		}
		if hidden != 0 {
			name = ""
		}
		cols = append(cols, name)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: no table %s", ErrReplay, table)
	}
	d.cols[table] = cols
	return cols, nil
}

// changedColumns marks with '1' the stored columns an update changes
// (the value or its type differs), and counts them.
func changedColumns(c log.SQLChange, cols []string) (string, int) {
	set := make([]byte, len(cols))
	n := 0
	for i, name := range cols {
		set[i] = '0'
		if name != "" && !sameValue(c.Old[i], c.New[i]) {
			set[i] = '1'
			n++
		}
	}
	return string(set), n
}

// sameValue: the same SQLite value, type included (1 and 1.0 differ),
// floats bit for bit (0.0 and -0.0 differ).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case int64:
		y, ok := b.(int64)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return false
}

// applyStmtsMax bounds Apply's prepared statements: one insert, delete and
// full update per table, and an update per set of changed columns.
const applyStmtsMax = 256

// stmt returns Apply's statement for key (op, table and, for an update
// of some columns, which), prepared once while the schema stays. release
// closes it after use when it is not kept.
func (d *DB) stmt(ctx context.Context, key string, cols []string) (st *sql.Stmt, release func(), err error) {
	if st, ok := d.stmts[key]; ok {
		return st, func() {}, nil
	}
	parts := strings.Split(key, "\x00")
	op, table := parts[0], parts[1]
	var names []string
	for i, c := range cols {
		if c != "" && (len(parts) < 3 || parts[2][i] == '1') {
			names = append(names, Quote(c))
		}
	}
	var q string
	switch {
	case op == "insert":
		q = fmt.Sprintf("INSERT INTO %s(rowid%s) VALUES(?%s)", Quote(table), prefixed(", ", names), strings.Repeat(", ?", len(names)))
	case op == "update" && len(parts) == 3:
		q = fmt.Sprintf("UPDATE %s SET %s WHERE rowid=?", Quote(table), strings.Join(names, "=?, ")+"=?")
	case op == "update":
		set := "rowid=?"
		for _, n := range names {
			set += ", " + n + "=?"
		}
		q = fmt.Sprintf("UPDATE %s SET %s WHERE rowid=?", Quote(table), set)
	case op == "delete":
		q = fmt.Sprintf("DELETE FROM %s WHERE rowid=?", Quote(table))
	}
	st, err = d.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: prepare %s: %w", ErrReplay, q, err)
	}
	if len(d.stmts) >= applyStmtsMax {
		return st, func() { st.Close() }, nil
	}
	d.stmts[key] = st
	return st, func() {}, nil
}

func prefixed(sep string, names []string) string {
	if len(names) == 0 {
		return ""
	}
	return sep + strings.Join(names, ", ")
}

// Quote quotes an SQL identifier.
func Quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// Columns returns a table's column names in order ("" for generated
// columns), as the table is now.
func (d *DB) Columns(ctx context.Context, table string) ([]string, error) {
	return d.columns(ctx, table)
}
