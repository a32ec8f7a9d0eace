package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

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
	ev := &log.Event{Format: log.FormatVersion, Class: "sql", Version: 1, Turns: []log.Turn{{Cause: log.Cause{Via: log.ViaRPC}, SQL: all}}}
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
