package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-objects/strata/log"
)

// Snapshot returns the database as the changes that build it from an empty
// one, for a checkpoint (log.Checkpoint.SQL): every schema statement in
// creation order (tables, indexes, views), then each table's rows as
// inserts in rowid order, then the AUTOINCREMENT counters (sqlite_sequence,
// which can be past the largest rowid once rows were deleted). Apply on an
// empty database (or one Reset) rebuilds the same tables, rowids and
// counters. It reads the whole database into memory: its size is bounded by
// the database's (Config.SizeMax).
func (d *DB) Snapshot(ctx context.Context) ([]log.SQLChange, error) {
	schema, err := d.Schema(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot schema: %w", err)
	}
	out := make([]log.SQLChange, 0, len(schema))
	for _, s := range schema {
		out = append(out, log.SQLChange{Op: log.OpSQLSchema, Stmt: s})
	}
	tables, err := d.userTables(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	for _, t := range tables {
		if out, err = d.snapshotRows(ctx, t, out); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", t, err)
		}
	}
	seqs, err := d.sequences(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot sqlite_sequence: %w", err)
	}
	for _, s := range seqs {
		name := quoteString(s.name)
		out = append(out,
			log.SQLChange{Op: log.OpSQLSchema, Stmt: "DELETE FROM sqlite_sequence WHERE name=" + name},
			log.SQLChange{Op: log.OpSQLSchema, Stmt: fmt.Sprintf("INSERT INTO sqlite_sequence(name, seq) VALUES(%s, %d)", name, s.seq)})
	}
	return out, nil
}

func (d *DB) snapshotRows(ctx context.Context, table string, out []log.SQLChange) ([]log.SQLChange, error) {
	rows, err := d.conn.QueryContext(ctx, "SELECT rowid AS rowid, * FROM "+Quote(table)+" ORDER BY rowid")
	if err != nil {
		return out, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return out, err
	}
	for rows.Next() {
		vals, err := scanRow(rows, len(cols))
		if err != nil {
			return out, err
		}
		id, ok := vals[0].(int64)
		if !ok {
			return out, fmt.Errorf("rowid %v", vals[0])
		}
		out = append(out, log.SQLChange{Op: log.OpSQLInsert, Table: table, RowID: id, New: vals[1:]})
	}
	return out, rows.Err()
}

// userTables names the user tables, in name order.
func (d *DB) userTables(ctx context.Context) ([]string, error) {
	return d.names(ctx, "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name != ? ORDER BY name", metaTable)
}

func (d *DB) names(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := d.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

type sequence struct {
	name string
	seq  int64
}

func (d *DB) sequences(ctx context.Context) ([]sequence, error) {
	var exists int
	if err := d.conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE name='sqlite_sequence'").Scan(&exists); err != nil || exists == 0 {
		return nil, err
	}
	rows, err := d.conn.QueryContext(ctx, "SELECT name, seq FROM sqlite_sequence ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sequence
	for rows.Next() {
		var s sequence
		if err := rows.Scan(&s.name, &s.seq); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Reset drops every user view and table (their indexes go with them) in
// the caller's transaction, leaving the database as new but for Strata's
// applied position, which the caller sets.
func (d *DB) Reset(ctx context.Context) error {
	views, err := d.names(ctx, "SELECT name FROM sqlite_schema WHERE type='view'")
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	tables, err := d.userTables(ctx)
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	for _, v := range views {
		if _, err := d.conn.ExecContext(ctx, "DROP VIEW "+Quote(v)); err != nil {
			return fmt.Errorf("reset: drop view %s: %w", v, err)
		}
	}
	for _, t := range tables {
		if _, err := d.conn.ExecContext(ctx, "DROP TABLE "+Quote(t)); err != nil {
			return fmt.Errorf("reset: drop table %s: %w", t, err)
		}
	}
	d.cols = map[string][]string{}
	d.closeStmts()
	return nil
}

// quoteString quotes an SQL string literal.
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
