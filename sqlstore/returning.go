package sqlstore

import (
	"context"
	"strings"

	"github.com/strata-objects/strata/log"
	sqlite "modernc.org/sqlite"
)

// RETURNING read from the capture.
//
// SQLite runs a statement's RETURNING clause by collecting its rows in an
// ephemeral table (a b-tree with its own pager, opened, begun, written
// and closed per statement) and returning them once the statement is
// done. For the SQL counter's upsert that was a quarter of SQLite's work
// (issue 17, docs/benchmarks.md). The preupdate hook (capture.go) already
// sees every row the statement writes with its final values, which are
// what RETURNING returns for a list of the target table's columns. So a
// statement
//
//	INSERT|REPLACE|UPDATE|DELETE … RETURNING col[, col …]
//
// whose list names only stored columns of its one target table runs
// without the clause, and its rows are the captured changes' new values
// (INSERT, REPLACE, UPDATE: one per row inserted or updated; rows a
// REPLACE deletes are not returned, as in SQLite) or old values (DELETE).
// Anything else (expressions, *, aliases, rowid, a WITH prefix, a table
// with generated or hidden columns) runs as written.
// TestReturningFromCaptureMatchesSQLite checks the two against each
// other.

// returning is how a statement's RETURNING rows are read from the capture.
type returning struct {
	names []string // the result's columns, as SQLite names them
	cols  []int    // each one's column in the target table
	table string
	old   bool // a DELETE: rows are the deleted rows' old values
}

// userStmt is a prepared user statement: as written, or without its
// RETURNING clause when ret says how to read its rows from the capture.
type userStmt struct {
	st  rawStmt
	ret *returning
}

// rows builds the result's rows from the statement's changes.
func (r *returning) rows(chs []log.SQLChange) [][]any {
	var out [][]any
	for _, c := range chs {
		var vals []any
		switch {
		case !strings.EqualFold(c.Table, r.table):
			continue
		case r.old && c.Op == log.OpSQLDelete:
			vals = c.Old
		case !r.old && (c.Op == log.OpSQLInsert || c.Op == log.OpSQLUpdate):
			vals = c.New
		default:
			continue
		}
		row := make([]any, len(r.cols))
		for i, col := range r.cols {
			v := vals[col]
			if b, ok := v.([]byte); ok {
				v = append([]byte{}, b...) // the event keeps its own
			}
			row[i] = v
		}
		out = append(out, row)
	}
	return out
}

// planReturning prepares q without its RETURNING clause when its rows can
// be read from the capture; nil when not (q is then prepared as written).
func (d *DB) planReturning(ctx context.Context, q string) *userStmt {
	if d.returningAsWritten {
		return nil
	}
	cut, names, verb, ok := returningClause(q)
	if !ok {
		return nil
	}
	d.target, d.targets = "", 0
	var st rawStmt
	var info, cutInfo []sqlite.ColumnInfo
	err := d.raw(func(c rawConn) (err error) {
		if st, err = prepareRaw(ctx, c, q[:cut]); err != nil {
			return err
		}
		ci, ok := c.(interface {
			ColumnInfo(string) ([]sqlite.ColumnInfo, error)
		})
		if !ok {
			return errNoRawDriver
		}
		if cutInfo, err = ci.ColumnInfo(q[:cut]); err != nil {
			return err
		}
		info, err = ci.ColumnInfo(q)
		return err
	})
	fail := func() *userStmt {
		if st != nil {
			d.raw(func(rawConn) error { return st.Close() })
		}
		d.ddl, d.refusal, d.created = false, "", nil
		return nil
	}
	if err != nil || d.ddl || d.refusal != "" || d.targets != 1 || len(cutInfo) != 0 || len(info) != len(names) {
		return fail()
	}
	d.capturing = false // the table's columns are Strata's query, not the user's
	cols, err := d.columns(ctx, d.target)
	d.capturing = true
	if err != nil {
		return fail()
	}
	r := &returning{table: d.target, old: verb == "delete"}
	for _, c := range cols {
		if c == "" {
			return fail() // generated or hidden: stored apart from the others
		}
	}
	for i, n := range names {
		col := -1
		for j, c := range cols {
			if strings.EqualFold(c, n) {
				col = j
				break
			}
		}
		if col < 0 {
			return fail()
		}
		r.cols = append(r.cols, col)
		r.names = append(r.names, info[i].Name)
	}
	return &userStmt{st: st, ret: r}
}

// returningClause finds a statement's RETURNING clause when it is a list
// of plain column names at the statement's end: cut is where the clause
// starts, names the columns (unquoted), verb the statement's first word
// (lower case). ok is false for anything else.
func returningClause(q string) (cut int, names []string, verb string, ok bool) {
	if !containsFold(q, "returning") {
		return 0, nil, "", false
	}
	type token struct {
		start, end int
		word       bool // a bare word
		ident      string
		isIdent    bool // a bare word or a quoted identifier
	}
	var toks []token
	depth := 0
	last := -1 // index of the last top-level RETURNING
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i += 2; i < len(q) && q[i] != '\n'; i++ {
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return 0, nil, "", false
			}
			i += 2 + end + 2
		case c == '\'':
			j := i + 1
			for ; j < len(q); j++ {
				if q[j] == '\'' {
					if j+1 < len(q) && q[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(q) {
				return 0, nil, "", false
			}
			toks = append(toks, token{start: i, end: j + 1})
			i = j + 1
		case c == '"' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(q); j++ {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						b.WriteByte(c)
						j++
						continue
					}
					break
				}
				b.WriteByte(q[j])
			}
			if j >= len(q) {
				return 0, nil, "", false
			}
			toks = append(toks, token{start: i, end: j + 1, ident: b.String(), isIdent: true})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(q[i:], ']')
			if j < 0 {
				return 0, nil, "", false
			}
			toks = append(toks, token{start: i, end: i + j + 1, ident: q[i+1 : i+j], isIdent: true})
			i += j + 1
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i + 1
			for j < len(q) && (q[j] == '_' || q[j] == '$' || q[j] >= 'a' && q[j] <= 'z' || q[j] >= 'A' && q[j] <= 'Z' || q[j] >= '0' && q[j] <= '9' || q[j] >= 0x80) {
				j++
			}
			if depth == 0 && strings.EqualFold(q[i:j], "returning") {
				last = len(toks)
			}
			toks = append(toks, token{start: i, end: j, word: true, ident: q[i:j], isIdent: true})
			i = j
		default:
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			}
			toks = append(toks, token{start: i, end: i + 1})
			i++
		}
	}
	if last < 1 || !toks[0].word {
		return 0, nil, "", false
	}
	verb = strings.ToLower(toks[0].ident)
	switch verb {
	case "insert", "replace", "update", "delete":
	default:
		return 0, nil, "", false
	}
	rest := toks[last+1:]
	for len(rest) > 0 && q[rest[len(rest)-1].start] == ';' {
		rest = rest[:len(rest)-1]
	}
	for i, t := range rest {
		if i%2 == 1 {
			if t.isIdent || q[t.start] != ',' {
				return 0, nil, "", false
			}
			continue
		}
		if !t.isIdent || t.ident == "" {
			return 0, nil, "", false
		}
		names = append(names, t.ident)
	}
	if len(names) == 0 || len(rest)%2 == 0 {
		return 0, nil, "", false
	}
	return toks[last].start, names, verb, true
}

// containsFold reports whether s contains the lower-case ASCII word w in
// any case.
func containsFold(s, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}
