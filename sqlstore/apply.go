package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/strata-objects/strata/log"
)

// Apply replays recorded changes in order, with the capture off. The
// caller holds the transaction.
func (d *DB) Apply(ctx context.Context, chs []log.SQLChange) error {
	for i, c := range chs {
		if err := d.apply(ctx, c); err != nil {
			return fmt.Errorf("apply SQL change %d (%s %s): %w", i, c.Op, c.Table, err)
		}
	}
	return nil
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
	st, err := d.stmt(ctx, q, cols)
	if err != nil {
		return err
	}
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

func (d *DB) stmt(ctx context.Context, key string, cols []string) (*sql.Stmt, error) {
	if st, ok := d.stmts[key]; ok {
		return st, nil
	}
	op, table, _ := strings.Cut(key, "\x00")
	var names []string
	for _, c := range cols {
		if c != "" {
			names = append(names, Quote(c))
		}
	}
	var q string
	switch op {
	case "insert":
		q = fmt.Sprintf("INSERT INTO %s(rowid%s) VALUES(?%s)", Quote(table), prefixed(", ", names), strings.Repeat(", ?", len(names)))
	case "update":
		set := "rowid=?"
		for _, n := range names {
			set += ", " + n + "=?"
		}
		q = fmt.Sprintf("UPDATE %s SET %s WHERE rowid=?", Quote(table), set)
	case "delete":
		q = fmt.Sprintf("DELETE FROM %s WHERE rowid=?", Quote(table))
	}
	st, err := d.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: prepare %s: %w", ErrReplay, q, err)
	}
	d.stmts[key] = st
	return st, nil
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
