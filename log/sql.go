package log

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// SQL row and schema changes. A turn that used its object's SQL database
// records what changed, not which statements ran: the rows each statement
// inserted, updated or deleted (by rowid, with old and new column values)
// and the text of each schema statement. Replaying them rebuilds the same
// database whatever nondeterministic functions the statements called
// (random(), datetime('now')). Turn key 10 and ops 30–39 are SQL's.

// SQL change ops.
const (
	OpSQLSchema Op = 30 + iota // a DDL statement, replayed as text
	OpSQLInsert                // a row inserted: Table, RowID, New
	OpSQLUpdate                // a row changed: Table, RowID (old), NewRowID, Old, New
	OpSQLDelete                // a row deleted: Table, RowID, Old
)

// SQLChange is one change to an object's SQL database. Values are the
// row's columns in table order, each nil, int64, float64, string or []byte.
type SQLChange struct {
	Op       Op     `cbor:"1,keyasint"`
	Table    string `cbor:"2,keyasint,omitempty"`
	Stmt     string `cbor:"3,keyasint,omitempty"` // OpSQLSchema only
	RowID    int64  `cbor:"4,keyasint,omitempty"`
	NewRowID int64  `cbor:"5,keyasint,omitempty"` // OpSQLUpdate only
	Old      []any  `cbor:"6,keyasint,omitempty"`
	New      []any  `cbor:"7,keyasint,omitempty"`
}

// sqlColumnsMax bounds the values of one row (SQLite's default
// SQLITE_MAX_COLUMN is 2000).
const sqlColumnsMax = 2000

func sqlOpString(o Op) (string, bool) {
	switch o {
	case OpSQLSchema:
		return "sql-schema", true
	case OpSQLInsert:
		return "sql-insert", true
	case OpSQLUpdate:
		return "sql-update", true
	case OpSQLDelete:
		return "sql-delete", true
	}
	return "", false
}

// NormalizeSQLValue maps a decoded CBOR value to the Go type SQLite uses:
// CBOR has no signed/unsigned distinction in Go's decoder.
func NormalizeSQLValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, string, []byte:
		return v, nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("integer %d out of range", x)
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case int:
		return int64(x), nil
	}
	return nil, fmt.Errorf("value of type %T", v)
}

// normalize checks a change and fixes its values' types in place.
func (c *SQLChange) normalize() error {
	if _, ok := sqlOpString(c.Op); !ok {
		return fmt.Errorf("op %d", c.Op)
	}
	if !utf8.ValidString(c.Table) || !utf8.ValidString(c.Stmt) {
		return errors.New("table or statement is not UTF-8")
	}
	switch {
	case c.Op == OpSQLSchema && (c.Stmt == "" || len(c.Old)+len(c.New) > 0):
		return errors.New("schema change without a statement, or with rows")
	case c.Op != OpSQLSchema && (c.Table == "" || c.Stmt != ""):
		return errors.New("row change without a table, or with a statement")
	case c.Op == OpSQLInsert && (len(c.New) == 0 || len(c.Old) > 0):
		return errors.New("insert without new values, or with old ones")
	case c.Op == OpSQLDelete && (len(c.Old) == 0 || len(c.New) > 0):
		return errors.New("delete without old values, or with new ones")
	case c.Op == OpSQLUpdate && (len(c.Old) == 0 || len(c.Old) != len(c.New)):
		return errors.New("update without matching old and new values")
	case len(c.Old) > sqlColumnsMax || len(c.New) > sqlColumnsMax:
		return errors.New("too many columns")
	}
	for _, vs := range [][]any{c.Old, c.New} {
		for i, v := range vs {
			n, err := NormalizeSQLValue(v)
			if err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
			if s, ok := n.(string); ok && !utf8.ValidString(s) {
				return fmt.Errorf("column %d: text is not UTF-8", i)
			}
			vs[i] = n
		}
	}
	return nil
}

// HasSQL reports whether any turn of e changed its SQL database.
func (e *Event) HasSQL() bool {
	for _, t := range e.Turns {
		if len(t.SQL) > 0 {
			return true
		}
	}
	return false
}
