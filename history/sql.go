package history

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/sqlstore"
)

// SQLChange is one change to the object's SQL database as history shows
// it: Text reads like `table users: rowid=7 name "ann" → "anna"`.
type SQLChange struct {
	Op       string   `json:"op"`
	Table    string   `json:"table,omitempty"`
	Stmt     string   `json:"statement,omitempty"`
	RowID    int64    `json:"rowid,omitempty"`
	NewRowID int64    `json:"new_rowid,omitempty"`
	Columns  []string `json:"columns,omitempty"`
	Old      []any    `json:"old,omitempty"`
	New      []any    `json:"new,omitempty"`
	Text     string   `json:"text"`
}

// applySQL folds a turn's SQL changes into the replayer's database (opened
// in memory on first use) and describes them. A replayer that started from
// a checkpoint written before checkpoints carried SQL state has none: it
// describes changes by column position and applies nothing.
//
// Row changes wait in sqlRows until the event's turns have all been read
// (flushSQL) or a schema change comes, so that sqlstore.Apply folds a
// run of changes to one row, as a counter's turns make, into one
// statement per event (issue 17); in a quiet replay, until the replay
// ends (endQuiet), into one statement per replay. A replay that returns
// no entries (a checkpoint's) does not describe them.
func (r *Replayer) applySQL(chs []log.SQLChange) ([]SQLChange, error) {
	if len(chs) == 0 {
		return nil, nil
	}
	ctx := context.Background()
	if r.sql == nil && !r.noSQL {
		if err := r.openSQL(ctx); err != nil {
			return nil, err
		}
	}
	if r.quiet && r.sql != nil && !r.sqlTx {
		// One transaction for the whole replay, not one per statement.
		if err := r.sql.Begin(ctx); err != nil {
			return nil, err
		}
		r.sqlTx = true
	}
	var out []SQLChange
	if !r.quiet {
		out = make([]SQLChange, 0, len(chs))
	}
	for _, c := range chs {
		if c.Op == log.OpSQLSchema {
			if err := r.flushSQL(ctx); err != nil {
				return nil, err
			}
		}
		if !r.quiet {
			h := SQLChange{Op: c.Op.String(), Table: c.Table, Stmt: c.Stmt, RowID: c.RowID, NewRowID: c.NewRowID, Old: c.Old, New: c.New}
			if c.Op != log.OpSQLSchema && r.sql != nil {
				if cols, err := r.sql.Columns(ctx, c.Table); err == nil {
					h.Columns = cols
				}
			}
			h.Text = describe(h)
			out = append(out, h)
		}
		switch {
		case r.sql == nil:
		case c.Op == log.OpSQLSchema:
			if err := r.sql.Apply(ctx, []log.SQLChange{c}); err != nil {
				return nil, err
			}
		default:
			r.sqlRows = append(r.sqlRows, c)
		}
	}
	return out, nil
}

// flushSQL applies the row changes applySQL holds.
func (r *Replayer) flushSQL(ctx context.Context) error {
	if len(r.sqlRows) == 0 {
		return nil
	}
	err := r.sql.Apply(ctx, r.sqlRows)
	clear(r.sqlRows)
	r.sqlRows = r.sqlRows[:0]
	return err
}

func (r *Replayer) openSQL(ctx context.Context) error {
	db, err := sqlstore.Open(ctx, "", sqlstore.Config{})
	if err != nil {
		return err
	}
	r.sql = db
	return nil
}

// installSQL applies the SQL state of the checkpoint the replay started
// from, if it has not been applied yet.
func (r *Replayer) installSQL(ctx context.Context) error {
	if len(r.sqlInit) == 0 {
		return nil
	}
	if r.sql == nil {
		if err := r.openSQL(ctx); err != nil {
			return err
		}
	}
	if err := InstallSQL(ctx, r.sql, r.sqlInit); err != nil {
		return fmt.Errorf("replay from checkpoint v%d: %w", r.Version, err)
	}
	r.sqlInit = nil
	return nil
}

// InstallSQL applies a checkpoint's SQL state to an empty database (or one
// Reset) in one transaction.
func InstallSQL(ctx context.Context, db *sqlstore.DB, chs []log.SQLChange) error {
	if err := db.Begin(ctx); err != nil {
		return err
	}
	if err := db.Apply(ctx, chs); err != nil {
		db.Rollback(ctx)
		return err
	}
	return db.Commit(ctx)
}

func describe(c SQLChange) string {
	col := func(i int) string {
		if i < len(c.Columns) && c.Columns[i] != "" {
			return c.Columns[i]
		}
		return fmt.Sprintf("column %d", i+1)
	}
	var b strings.Builder
	switch c.Op {
	case log.OpSQLSchema.String():
		return "schema: " + c.Stmt
	case log.OpSQLInsert.String():
		fmt.Fprintf(&b, "table %s: insert rowid=%d", c.Table, c.RowID)
		for i, v := range c.New {
			fmt.Fprintf(&b, " %s %s", col(i), show(v))
		}
	case log.OpSQLUpdate.String():
		fmt.Fprintf(&b, "table %s: rowid=%d", c.Table, c.RowID)
		if c.NewRowID != c.RowID {
			fmt.Fprintf(&b, " → rowid=%d", c.NewRowID)
		}
		for i := range c.New {
			if i < len(c.Old) && show(c.Old[i]) == show(c.New[i]) {
				continue
			}
			fmt.Fprintf(&b, " %s %s → %s", col(i), show(c.Old[i]), show(c.New[i]))
		}
	case log.OpSQLDelete.String():
		fmt.Fprintf(&b, "table %s: delete rowid=%d", c.Table, c.RowID)
		for i, v := range c.Old {
			fmt.Fprintf(&b, " %s %s", col(i), show(v))
		}
	}
	return b.String()
}

func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return fmt.Sprintf("%q", x)
	case []byte:
		return fmt.Sprintf("x'%x'", x)
	}
	return fmt.Sprint(v)
}

// sqlRowsQuietMax bounds the row changes a quiet replay holds before it
// applies them.
const sqlRowsQuietMax = 4096

// endQuiet ends a quiet replay: the row changes it holds are applied and
// its SQL transaction commits.
func (r *Replayer) endQuiet(ctx context.Context) error {
	r.quiet = false
	if r.sql != nil {
		if err := r.flushSQL(ctx); err != nil {
			return fmt.Errorf("replay to v%d SQL: %w", r.Version, err)
		}
	}
	if !r.sqlTx {
		return nil
	}
	r.sqlTx = false
	return r.sql.Commit(ctx)
}

// Close frees the replayer's SQL database, if it opened one.
func (r *Replayer) Close() {
	if r.sql != nil {
		r.sql.Close()
		r.sql = nil
	}
}

// SQL is the replayed SQL database (nil if the object has no SQL state in
// what was replayed, or the replay started from a checkpoint without SQL
// state).
func (r *Replayer) SQL() *sqlstore.DB { return r.sql }

// DescribeSQL describes one recorded change as history shows it (columns
// names the table's columns; without them, columns are named by position).
func DescribeSQL(c log.SQLChange, columns []string) string {
	return describe(SQLChange{Op: c.Op.String(), Table: c.Table, Stmt: c.Stmt, RowID: c.RowID, NewRowID: c.NewRowID, Columns: columns, Old: c.Old, New: c.New})
}
