package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-objects/strata/log"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Result is one query's answer, materialized.
type Result struct {
	Columns     []string
	Rows        [][]any // each value nil, int64, float64, string or []byte
	RowsRead    int64   // rows returned (SQLite does not count rows scanned here)
	RowsWritten int64   // rows inserted, updated or deleted
}

// Query runs one user query (one or more statements; the rows are the
// last statement's) inside its own savepoint, and returns its rows and the
// changes it made. On error nothing it did stays. The caller must hold a
// write transaction (Begin) for changes to be captured into its event.
func (d *DB) Query(ctx context.Context, q string, args ...any) (*Result, []log.SQLChange, error) {
	if err := d.Savepoint(ctx, "strata_stmt"); err != nil {
		return nil, nil, err
	}
	res, chs, err := d.QueryIn(ctx, q, args...)
	if err != nil {
		if rerr := d.RollbackTo(ctx, "strata_stmt"); rerr != nil {
			return nil, nil, fmt.Errorf("%w (and rolling back: %v)", err, rerr)
		}
		return nil, nil, err
	}
	if err := d.Release(ctx, "strata_stmt"); err != nil {
		return nil, nil, err
	}
	return res, chs, nil
}

// QueryIn is Query without a savepoint of its own, for a caller that
// holds one (or the transaction) and rolls back to it when QueryIn
// fails: what a failed query did may have partly stayed (a statement of
// several that ran, a schema statement refused after it ran). It saves
// the SAVEPOINT and RELEASE that Query pays per call (objects.SQL.Exec:
// docs/benchmarks.md, issue 17).
func (d *DB) QueryIn(ctx context.Context, q string, args ...any) (*Result, []log.SQLChange, error) {
	if len(q) > StatementBytesMax {
		return nil, nil, fmt.Errorf("%w: statement of %d bytes, at most %d", ErrRefused, len(q), StatementBytesMax)
	}
	if err := refuseText(q); err != nil {
		return nil, nil, err
	}
	return d.queryAll(ctx, q, args)
}

// queryAll runs each statement of q; bindings go to the last one (a
// query of several statements with bindings must be one statement).
func (d *DB) queryAll(ctx context.Context, q string, args []any) (*Result, []log.SQLChange, error) {
	// A query prepared whole before is one statement (split made every
	// text the cache holds), so it is not split again each time.
	stmts := []string{q}
	if _, ok := d.user[q]; !ok {
		stmts = split(q)
	}
	if len(stmts) == 0 {
		return &Result{Columns: []string{}}, nil, nil
	}
	if len(stmts) > 1 && len(args) > 0 {
		return nil, nil, fmt.Errorf("%w: bindings with several statements in one query", ErrRefused)
	}
	var all []log.SQLChange
	var res *Result
	var written int64
	for _, s := range stmts {
		r, chs, err := d.query(ctx, s, args)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, chs...)
		written += r.RowsWritten
		res = r
	}
	res.RowsWritten = written
	return res, all, nil
}

func (d *DB) query(ctx context.Context, q string, args []any) (*Result, []log.SQLChange, error) {
	d.changes, d.ddl, d.refusal, d.hookErr, d.written, d.created = nil, false, "", nil, 0, nil
	d.capturing = true
	defer func() { d.capturing = false }()
	nv, err := namedValues(args)
	if err != nil {
		return nil, nil, err
	}
	// A statement prepared before runs in one Raw call. A new one is
	// prepared first: whether it changes the schema is learnt then (the
	// authorizer), and the schema's version is read before it runs.
	us, cached := d.user[q]
	if !cached {
		if us, err = d.prepareUser(ctx, q); err != nil {
			return nil, nil, d.userErr(err)
		}
		if _, cached = d.user[q]; !cached {
			defer d.raw(func(rawConn) error { return us.st.Close() })
		}
	}
	var schemaBefore int64
	if d.ddl {
		// IF NOT EXISTS and the like may change nothing: only a schema
		// statement that changed the schema is recorded.
		if err := d.conn.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&schemaBefore); err != nil {
			return nil, nil, err
		}
	}
	res := &Result{}
	err = d.raw(func(rawConn) error {
		if us.ret != nil {
			_, err := us.st.ExecContext(ctx, nv)
			return err
		}
		rows, err := us.st.QueryContext(ctx, nv)
		if err != nil {
			return err
		}
		return readRows(ctx, rows, res)
	})
	if err != nil {
		if errors.Is(err, errResultTooLarge) {
			return nil, nil, err
		}
		return nil, nil, d.userErr(err)
	}
	if us.ret != nil {
		res.Columns, res.Rows = us.ret.names, us.ret.rows(d.changes)
	}
	if d.hookErr != nil {
		return nil, nil, d.hookErr
	}
	if d.refusal != "" { // denied but not reported as an error (IGNORE)
		return nil, nil, fmt.Errorf("%w: %s", ErrRefused, d.refusal)
	}
	chs := d.changes
	if d.ddl {
		var schemaAfter int64
		if err := d.conn.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&schemaAfter); err != nil {
			return nil, nil, err
		}
		d.ddl = schemaAfter != schemaBefore
	}
	if d.ddl {
		if len(chs) > 0 {
			return nil, nil, fmt.Errorf("%w: a schema statement must not change rows in the same query (create the table, then INSERT … SELECT)", ErrRefused)
		}
		if len(args) > 0 {
			return nil, nil, fmt.Errorf("%w: a schema statement takes no bindings", ErrRefused)
		}
		for _, t := range d.created {
			var n int
			if err := d.conn.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM "+Quote(t)+" LIMIT 1)").Scan(&n); err == nil && n > 0 {
				return nil, nil, fmt.Errorf("%w: CREATE TABLE … AS SELECT is not supported (create the table, then INSERT … SELECT)", ErrRefused)
			}
		}
		var wr string
		err := d.conn.QueryRowContext(ctx, "SELECT name FROM pragma_table_list WHERE schema='main' AND wr=1 LIMIT 1").Scan(&wr)
		if err == nil {
			return nil, nil, fmt.Errorf("%w: table %s: WITHOUT ROWID tables are not supported (changes are recorded by rowid)", ErrRefused, wr)
		}
		chs = []log.SQLChange{{Op: log.OpSQLSchema, Stmt: q}}
		d.cols = map[string][]string{}
		d.closeStmts()
	}
	res.RowsRead = int64(len(res.Rows))
	res.RowsWritten = d.written
	d.changes = nil
	return res, chs, nil
}

// userStmtsMax bounds the user statements kept prepared per connection.
const userStmtsMax = 64

// prepareUser prepares a user statement, or takes the one prepared for the
// same text before: a turn of a live object usually runs the statements
// the last one ran, and parsing them again was 6 % of W3-sql's CPU
// (docs/benchmarks.md).
// Only a statement the authorizer let through and found to change no
// schema is kept (what it records about a statement is learnt while it
// is prepared); schema changes and rollbacks forget them all
// (closeStmts), and SQLite prepares one again by itself, through the
// authorizer, if the schema changed under it.
func (d *DB) prepareUser(ctx context.Context, q string) (*userStmt, error) {
	us := d.planReturning(ctx, q)
	if us == nil {
		var st rawStmt
		err := d.raw(func(c rawConn) (err error) {
			st, err = prepareRaw(ctx, c, q)
			return err
		})
		if err != nil {
			return nil, err
		}
		us = &userStmt{st: st}
	}
	if !d.ddl && d.refusal == "" && len(d.user) < userStmtsMax {
		d.user[q] = us
	}
	return us, nil
}

func (d *DB) userErr(err error) error {
	if d.refusal != "" {
		return fmt.Errorf("%w: %s", ErrRefused, d.refusal)
	}
	if d.hookErr != nil {
		return d.hookErr
	}
	return sqliteErr(err)
}

// normal maps a scanned value to one of the five SQLite types.
func normal(v any) any {
	switch x := v.(type) {
	case nil, int64, float64, string:
		return v
	case []byte:
		if x == nil {
			return []byte{}
		}
		return x
	case int:
		return int64(x)
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	}
	return fmt.Sprint(v)
}

func valueBytes(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 8
	case []byte:
		return len(x) + 8
	}
	return 9
}

// ChangeBytes estimates what a change costs in the event.
func ChangeBytes(c log.SQLChange) int {
	n := 16 + len(c.Table) + len(c.Stmt)
	for _, v := range c.Old {
		n += valueBytes(v)
	}
	for _, v := range c.New {
		n += valueBytes(v)
	}
	return n
}

// skipTable: SQLite's own bookkeeping, which replay regenerates
// (sqlite_sequence from the explicit rowids) or does not need (statistics).
func skipTable(t string) bool {
	return strings.HasPrefix(strings.ToLower(t), "sqlite_")
}

func (d *DB) preUpdate(u sqlite.SQLitePreUpdateData) {
	if !d.capturing || u.DatabaseName != "main" || skipTable(u.TableName) || d.hookErr != nil {
		return
	}
	if strings.EqualFold(u.TableName, metaTable) {
		d.hookErr = fmt.Errorf("%w: table %s is Strata's", ErrRefused, metaTable)
		return
	}
	d.written++
	n := u.Count()
	read := func(old bool) []any {
		vals, err := preUpdateRow(&u, n, old)
		if err != nil && d.hookErr == nil {
			d.hookErr = fmt.Errorf("capture %s: %w", u.TableName, err)
		}
		for i, v := range vals {
			vals[i] = normal(v)
		}
		return vals
	}
	c := log.SQLChange{Table: u.TableName}
	switch u.Op {
	case sqlite3.SQLITE_INSERT:
		c.Op, c.RowID, c.New = log.OpSQLInsert, u.NewRowID, read(false)
	case sqlite3.SQLITE_UPDATE:
		c.Op, c.RowID, c.NewRowID, c.Old, c.New = log.OpSQLUpdate, u.OldRowID, u.NewRowID, read(true), read(false)
	case sqlite3.SQLITE_DELETE:
		c.Op, c.RowID, c.Old = log.OpSQLDelete, u.OldRowID, read(true)
	default:
		return
	}
	d.changes = append(d.changes, c)
}

// pragmasRead are the PRAGMAs a user may run (reading only).
var pragmasRead = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true, "index_list": true,
	"index_info": true, "index_xinfo": true, "foreign_key_list": true,
	"quick_check": true, "integrity_check": true, "page_count": true, "page_size": true,
	"freelist_count": true, "schema_version": true, "user_version": false,
}

func (d *DB) authorize(action sqlite.AuthorizerActionCode, a1, a2, dbName, _ string) sqlite.AuthorizerReturnCode {
	if !d.capturing {
		return sqlite.AuthorizerOK
	}
	deny := func(why string) sqlite.AuthorizerReturnCode {
		if d.refusal == "" {
			d.refusal = why
		}
		return sqlite.AuthorizerDeny
	}
	switch action {
	case sqlite.AuthCreateTable, sqlite.AuthCreateIndex, sqlite.AuthCreateView,
		sqlite.AuthDropTable, sqlite.AuthDropIndex, sqlite.AuthDropView, sqlite.AuthAlterTable:
		if strings.EqualFold(a1, metaTable) {
			return deny("table " + metaTable + " is Strata's")
		}
		d.ddl = true
		if action == sqlite.AuthCreateTable {
			d.created = append(d.created, a1)
		}
	case sqlite.AuthCreateTrigger, sqlite.AuthDropTrigger, sqlite.AuthCreateTempTrigger, sqlite.AuthDropTempTrigger:
		return deny("triggers are not supported (their effects are recorded as row changes; replay would run them twice)")
	case sqlite.AuthCreateVTable, sqlite.AuthDropVTable:
		return deny("virtual tables are not supported")
	case sqlite.AuthCreateTempTable, sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempView,
		sqlite.AuthDropTempTable, sqlite.AuthDropTempIndex, sqlite.AuthDropTempView:
		return deny("temporary tables are not supported (they would not survive the activation)")
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return deny("ATTACH and DETACH are not allowed")
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		return deny("transaction statements are not allowed: each turn is a transaction (use Storage.Transaction)")
	case sqlite.AuthPragma:
		name := strings.ToLower(a1)
		if !pragmasRead[name] || a2 != "" && !strings.HasSuffix(name, "info") && name != "table_list" && name != "index_list" && name != "foreign_key_list" {
			return deny("PRAGMA " + a1 + " is not allowed")
		}
	case sqlite.AuthFunction:
		if strings.EqualFold(a2, "load_extension") {
			return deny("load_extension is not allowed")
		}
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete:
		if strings.EqualFold(a1, metaTable) {
			return deny("table " + metaTable + " is Strata's")
		}
		if !strings.EqualFold(a1, d.target) {
			d.target = a1
			d.targets++
		}
	}
	if dbName == "temp" && action != sqlite.AuthRead && action != sqlite.AuthSelect && action != sqlite.AuthFunction {
		return deny("the temp schema is not supported")
	}
	return sqlite.AuthorizerOK
}

// refuseText catches what the authorizer cannot see.
func refuseText(q string) error {
	// VACUUM (and VACUUM INTO a file) fails inside the turn's
	// transaction with SQLite's own message; nothing to do here.
	_ = q
	return nil
}
