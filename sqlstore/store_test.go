package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/benchcpu"
	"github.com/strata-objects/strata/log"
)

func open(t *testing.T) *DB {
	t.Helper()
	d, err := Open(context.Background(), "", Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// run executes queries on live in one transaction and returns the captured
// changes, encoded and decoded through an event as the log would.
func run(t *testing.T, live *DB, qs ...string) []log.SQLChange {
	t.Helper()
	ctx := context.Background()
	if err := live.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	var all []log.SQLChange
	for _, q := range qs {
		_, chs, err := live.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		all = append(all, chs...)
	}
	if err := live.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return throughEvent(t, all)
}

// throughEvent returns chs encoded in an event and decoded, as the log
// would give them back.
func throughEvent(t *testing.T, chs []log.SQLChange) []log.SQLChange {
	t.Helper()
	ev := &log.Event{Format: log.FormatVersion, Class: "sql", Version: 1, Turns: []log.Turn{{Cause: log.Cause{Via: log.ViaRPC}, SQL: chs}}}
	b, err := log.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := log.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return back.Turns[0].SQL
}

func replayEquals(t *testing.T, live, replica *DB, chs []log.SQLChange) {
	t.Helper()
	ctx := context.Background()
	if err := replica.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := replica.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	if err := replica.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := live.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := replica.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("replay differs:\nlive    %#v\nreplica %#v", a, b)
	}
}

func TestCaptureReplaysExactly(t *testing.T) {
	live, replica := open(t), open(t)
	steps := [][]string{
		{"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, score REAL, blob BLOB)",
			"CREATE TABLE log(msg TEXT, at TEXT DEFAULT (datetime('now')))", // no explicit primary key
			"CREATE UNIQUE INDEX users_name ON users(name)"},
		{"INSERT INTO users(name, score, blob) VALUES('ann', random(), x''), ('bob', 1.5, NULL), ('cy', 2, x'00ff')",
			"INSERT INTO log(msg) VALUES('a'), ('b'), (hex(randomblob(8)))"},
		{"UPDATE users SET name='anna', score=score+1 WHERE name='ann'",
			"INSERT OR REPLACE INTO users(name, score) VALUES('bob', 9)", // deletes bob's row, inserts a new one
			"UPDATE users SET id=id+100 WHERE name='cy'",                 // changes the rowid
			"DELETE FROM log WHERE msg='a'"},
		{"ALTER TABLE users ADD COLUMN note TEXT DEFAULT 'x'",
			"INSERT INTO users(name) VALUES('dee') RETURNING id",
			"DELETE FROM log"}, // every row: no truncate shortcut with the hook on
		{"INSERT INTO users(name, score) VALUES('eve', 1) ON CONFLICT(name) DO UPDATE SET score=score+1",
			"INSERT INTO users(name, score) VALUES('eve', 1) ON CONFLICT(name) DO UPDATE SET score=score+1",
			"DROP INDEX users_name", "DROP TABLE log"},
	}
	for _, qs := range steps {
		replayEquals(t, live, replica, run(t, live, qs...))
	}
}

func TestRefusals(t *testing.T) {
	d := open(t)
	ctx := context.Background()
	if err := d.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Query(ctx, "CREATE TABLE t(a)"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ATTACH DATABASE '/tmp/x.db' AS x",
		"SELECT load_extension('x')",
		"PRAGMA synchronous=OFF",
		"PRAGMA journal_mode=DELETE",
		"VACUUM INTO '/tmp/copy.db'",
		"BEGIN",
		"COMMIT",
		"SAVEPOINT a",
		"CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END",
		"CREATE TEMP TABLE tt(a)",
		"CREATE TABLE w(a PRIMARY KEY) WITHOUT ROWID",
		"CREATE TABLE c AS SELECT random() AS r",
		"INSERT INTO _strata_meta VALUES(2,2,2)",
		"SELEC 1",
		"INSERT INTO nope VALUES(1)",
	} {
		_, chs, err := d.Query(ctx, q)
		if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrSQL) {
			t.Errorf("%s: err %v, want refused or SQL error", q, err)
		} else {
			t.Logf("%s: %v", q, err)
		}
		if len(chs) > 0 {
			t.Errorf("%s: changes %v", q, chs)
		}
	}
	tables, err := d.Dump(ctx)
	if err != nil || len(tables) != 1 || tables[0].Name != "t" {
		t.Fatalf("after refusals: %v %v", tables, err)
	}
	if _, _, err := d.Query(ctx, "PRAGMA table_info(t)"); err != nil {
		t.Errorf("reading pragma refused: %v", err)
	}
}

func TestSizeCap(t *testing.T) {
	d, err := Open(context.Background(), "", Config{SizeMax: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	d.Begin(ctx)
	d.Query(ctx, "CREATE TABLE t(a)")
	_, chs, err := d.Query(ctx, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1000) INSERT INTO t SELECT randomblob(1000) FROM n")
	if !errors.Is(err, ErrSQL) || len(chs) > 0 {
		t.Fatalf("over the cap: %v, %d changes", err, len(chs))
	}
	t.Log(err)
}

// BenchmarkOpen: opening an object's database, new (a first activation)
// and existing (an activation after eviction), with the SQL counter's
// table and one upsert, as W3-sql's cold requests do:
//
//	go test -run x -bench Open ./sqlstore
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	for _, kind := range []string{"new", "existing"} {
		b.Run(kind, func(b *testing.B) {
			cpu := benchcpu.Start(b)
			defer cpu()
			for i := 0; i < b.N; i++ {
				path := filepath.Join(dir, fmt.Sprint(i)+".db")
				if kind == "existing" {
					path = filepath.Join(dir, "existing.db")
				}
				db, err := Open(ctx, path, Config{})
				if err != nil {
					b.Fatal(err)
				}
				if err := db.Begin(ctx); err != nil {
					b.Fatal(err)
				}
				if _, _, err := db.Query(ctx, "CREATE TABLE IF NOT EXISTS counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"); err != nil {
					b.Fatal(err)
				}
				if _, _, err := db.Query(ctx, "INSERT INTO counter(k, v) VALUES('value', 1) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v"); err != nil {
					b.Fatal(err)
				}
				if err := db.SetApplied(ctx, uint64(i+1), uint64(i+1)); err != nil {
					b.Fatal(err)
				}
				if err := db.Commit(ctx); err != nil {
					b.Fatal(err)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTurn: what a warm SQL counter's turn does to its database (the
// write transaction, the turn's savepoint, the upsert, the applied
// position, the commit), as each W3-sql request on a live object:
//
//	go test -run x -bench Turn ./sqlstore
func BenchmarkTurn(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "t.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, _, err := db.Query(ctx, "CREATE TABLE counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := benchcpu.Start(b)
	defer cpu()
	for i := 0; i < b.N; i++ {
		steps := []func() error{
			func() error { return db.Begin(ctx) },
			func() error { return db.Savepoint(ctx, "strata_turn") },
			func() error {
				_, _, err := db.Query(ctx, "INSERT INTO counter(k, v) VALUES('value', 1) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v")
				return err
			},
			func() error { return db.Release(ctx, "strata_turn") },
			func() error { return db.SetApplied(ctx, uint64(i+1), uint64(i+1)) },
			func() error { return db.Commit(ctx) },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestPreparedStatementsFollowTheSchema: statements kept prepared between
// queries see schema changes, rollbacks of them, and stay refused when
// they would be refused now.
func TestPreparedStatementsFollowTheSchema(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "o.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	q := func(s string, args ...any) (*Result, error) {
		t.Helper()
		res, _, err := d.Query(ctx, s, args...)
		return res, err
	}
	must := func(s string, args ...any) *Result {
		t.Helper()
		res, err := q(s, args...)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return res
	}
	if err := d.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	must("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER)")
	must("INSERT INTO t VALUES(?, ?)", "a", 1)
	const sel = "SELECT * FROM t ORDER BY k"
	if res := must(sel); len(res.Columns) != 2 || len(res.Rows) != 1 {
		t.Fatalf("before: %v %v", res.Columns, res.Rows)
	}
	if _, ok := d.user[sel]; !ok {
		t.Fatalf("%q was not kept prepared", sel)
	}
	must("ALTER TABLE t ADD COLUMN w TEXT")
	if res := must(sel); len(res.Columns) != 3 {
		t.Fatalf("after ALTER: columns %v, want 3", res.Columns)
	}
	// A savepoint rolled back takes a table with it: the statement that
	// read it fails as SQLite's error, not with a stale plan.
	if err := d.Savepoint(ctx, "sp"); err != nil {
		t.Fatal(err)
	}
	must("CREATE TABLE u(x INTEGER PRIMARY KEY)")
	must("INSERT INTO u VALUES(1)")
	const selU = "SELECT x FROM u"
	must(selU)
	if err := d.RollbackTo(ctx, "sp"); err != nil {
		t.Fatal(err)
	}
	if _, err := q(selU); !errors.Is(err, ErrSQL) || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("after the rollback: %v, want no such table", err)
	}
	// The same insert, prepared once, captures each row it writes.
	for i := 0; i < 3; i++ {
		_, chs, err := d.Query(ctx, "INSERT INTO t(k, v) VALUES(?, ?)", fmt.Sprint("k", i), i)
		if err != nil || len(chs) != 1 || chs[0].New[0] != fmt.Sprint("k", i) {
			t.Fatalf("insert %d: %v %+v", i, err, chs)
		}
	}
	if err := d.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNewFileAndItsLock: a new file starts in WAL mode with the meta table,
// an existing file is opened as it is (never replaced by the new file's
// image), and while one connection has the file a second cannot use it.
func TestNewFileAndItsLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "o.db")
	// The new file's image is made beside it, not in a temporary folder
	// the node may not have (a FROM scratch image has no /tmp).
	fileImage = struct {
		sync.Once
		img []byte
		err error
	}{}
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	d, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := d.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q, %v", mode, err)
	}
	run(t, d, "CREATE TABLE t(k TEXT PRIMARY KEY)", "INSERT INTO t VALUES('kept')")
	if err := d.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.SetApplied(ctx, 7, 70); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if second, err := Open(ctx, path, Config{}); err == nil {
		second.Close()
		t.Fatal("a second connection opened the file in use")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	v, s, err := d.Applied(ctx)
	if err != nil || v != 7 || s != 70 {
		t.Fatalf("applied %d/%d, %v; want 7/70", v, s, err)
	}
	if err := d.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	res, _, err := d.Query(ctx, "SELECT k FROM t")
	if err != nil || len(res.Rows) != 1 || res.Rows[0][0] != "kept" {
		t.Fatalf("reopened: %v %v", res, err)
	}
}

// Internal statements run to their end whatever the caller's context
// says: a turn whose request has gone still closes its savepoint and the
// transaction it is in, so the database is never left half way.
func TestInternalStatementsIgnoreCancellation(t *testing.T) {
	d := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	steps := []func() error{
		func() error { return d.Begin(ctx) },
		func() error { return d.Savepoint(ctx, "strata_turn") },
		func() error { return d.Release(ctx, "strata_turn") },
		func() error { return d.SetApplied(ctx, 1, 1) },
		func() error { return d.Commit(ctx) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d with a cancelled context: %v", i, err)
		}
	}
	if v, s, err := d.Applied(context.Background()); err != nil || v != 1 || s != 1 {
		t.Fatalf("applied %d %d %v, want 1 1", v, s, err)
	}
}

// A run of changes to one row is applied as one change with the run's
// last values; an update that moves the row, a change to another row or
// another kind of change ends the run.
func TestCoalesceRunsOfOneRow(t *testing.T) {
	upd := func(table string, from, to int64, old, new int64) log.SQLChange {
		return log.SQLChange{Op: log.OpSQLUpdate, Table: table, RowID: from, NewRowID: to, Old: []any{"k", old}, New: []any{"k", new}}
	}
	ins := log.SQLChange{Op: log.OpSQLInsert, Table: "c", RowID: 1, New: []any{"k", int64(1)}}
	cases := []struct {
		name string
		chs  []log.SQLChange
		want log.SQLChange
		n    int
	}{
		{"updates in place", []log.SQLChange{upd("c", 1, 1, 1, 2), upd("c", 1, 1, 2, 3), upd("c", 1, 1, 3, 4)}, upd("c", 1, 1, 1, 4), 3},
		{"insert then updates", []log.SQLChange{ins, upd("c", 1, 1, 1, 2), upd("c", 1, 1, 2, 3)}, log.SQLChange{Op: log.OpSQLInsert, Table: "c", RowID: 1, New: []any{"k", int64(3)}}, 3},
		{"a moved row then updated", []log.SQLChange{upd("c", 1, 7, 1, 2), upd("c", 7, 7, 2, 3)}, upd("c", 1, 7, 1, 3), 2},
		{"insert then moved", []log.SQLChange{ins, upd("c", 1, 7, 1, 2)}, ins, 1},
		{"another row", []log.SQLChange{upd("c", 1, 1, 1, 2), upd("c", 2, 2, 1, 2)}, upd("c", 1, 1, 1, 2), 1},
		{"another table", []log.SQLChange{upd("c", 1, 1, 1, 2), upd("d", 1, 1, 2, 3)}, upd("c", 1, 1, 1, 2), 1},
		{"a delete", []log.SQLChange{ins, {Op: log.OpSQLDelete, Table: "c", RowID: 1, Old: []any{"k", int64(1)}}}, ins, 1},
	}
	for _, c := range cases {
		got, n := coalesce(c.chs)
		if n != c.n || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v and %d, want %+v and %d", c.name, got, n, c.want, c.n)
		}
	}
}

// Replayed updates set only the columns whose value changed, type and
// sign included, and still refuse a row that is not there; runs of one
// row's changes replay to the same rows and the same AUTOINCREMENT
// sequence.
func TestApplyUpdatesWhatChanged(t *testing.T) {
	live, replica := open(t), open(t)
	steps := [][]string{
		{"CREATE TABLE c(k TEXT PRIMARY KEY, v, w)",
			"CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, v)",
			"INSERT INTO c VALUES('x', 1, 0.0)",
			"UPDATE c SET v = v + 1", "UPDATE c SET v = v + 1", "UPDATE c SET v = 3.0", "UPDATE c SET w = -0.0",
			"INSERT INTO a(v) VALUES(1)", "UPDATE a SET id = 10", "UPDATE a SET v = 2"},
		{"UPDATE c SET v = 3"}, {"UPDATE c SET v = 3.0, w = 1"}, {"UPDATE c SET v = '3'"}, {"UPDATE c SET v = x'33'"}, {"UPDATE c SET v = v"},
		{"UPDATE c SET v = NULL, k = 'y'", "INSERT INTO a(v) VALUES(3)", "UPDATE a SET v = 4 WHERE v = 3"},
	}
	for _, qs := range steps {
		replayEquals(t, live, replica, run(t, live, qs...))
	}
	ctx := context.Background()
	seq := func(d *DB) [][]any {
		res, err := d.QueryReadOnly(ctx, "SELECT name, seq FROM sqlite_sequence ORDER BY name")
		if err != nil {
			t.Fatal(err)
		}
		return res.Rows
	}
	if a, b := seq(live), seq(replica); !reflect.DeepEqual(a, b) {
		t.Fatalf("sqlite_sequence live %v, replica %v", a, b)
	}
	res, err := replica.QueryReadOnly(ctx, "SELECT typeof(v), typeof(w), w FROM c")
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{"null", "integer", int64(1)}}) {
		t.Fatalf("replica row %v %v", res, err)
	}
	replica.Begin(ctx)
	defer replica.Rollback(ctx)
	err = replica.Apply(ctx, []log.SQLChange{{Op: log.OpSQLUpdate, Table: "c", RowID: 99, NewRowID: 99, Old: []any{"y", nil, 0.0}, New: []any{"y", int64(1), 0.0}}})
	if !errors.Is(err, ErrReplay) {
		t.Fatalf("update of a missing row: %v, want ErrReplay", err)
	}
}

// A user statement still ends with its context (a request's deadline),
// now that it runs on the driver's connection, not through database/sql:
// one that runs long before its first row (interrupted by the driver),
// and one that returns rows without end (stopped between rows).
func TestUserStatementsEndWithTheirContext(t *testing.T) {
	d := open(t)
	for _, q := range []string{
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c",
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x, 'a row' FROM c",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		_, _, err := d.Query(ctx, q)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "interrupt") {
			t.Fatalf("%s: err %v, want the deadline's", q, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s: took %v after a 50ms deadline", q, took)
		}
	}
	// and the connection goes on
	if _, _, err := d.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureKeepsTextWithNUL: a TEXT value with a NUL byte inside is
// captured whole (modernc's preupdate values stop at the first NUL), so
// its event replays to the same row, and RETURNING (read from the
// capture) returns it whole.
func TestCaptureKeepsTextWithNUL(t *testing.T) {
	live, replica := open(t), open(t)
	ctx := context.Background()
	replayEquals(t, live, replica, run(t, live, "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT)"))
	if err := live.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	res, chs, err := live.Query(ctx, "INSERT INTO t(s) VALUES(?), ('x' || char(0) || 'y') RETURNING s", "a\x00b")
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 || res.Rows[0][0] != "a\x00b" || res.Rows[1][0] != "x\x00y" {
		t.Fatalf("RETURNING %q, want the two values whole", res.Rows)
	}
	if len(chs) != 2 || chs[0].New[1] != "a\x00b" || chs[1].New[1] != "x\x00y" {
		t.Fatalf("captured %#v, want the two values whole", chs)
	}
	replayEquals(t, live, replica, throughEvent(t, chs))
	if err := live.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if _, chs, err = live.Query(ctx, "UPDATE t SET id = id + 10"); err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if len(chs) != 2 || chs[0].Old[1] != "a\x00b" || chs[0].New[1] != "a\x00b" {
		t.Fatalf("update captured %#v, want old and new values whole", chs)
	}
	replayEquals(t, live, replica, chs)
}
