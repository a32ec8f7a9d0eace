package objects

import (
	"context"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/sqlstore"
)

var sqlCkptEvents = flag.Int("sqlck.events", 0, "events of TestSQLActivatesFromACheckpoint's object, with checkpoints every 1,000 (0: 260 events, every 50; issue 17's run: 100007)")

// sqlImage is what an object's SQL database holds: tables with rows,
// every schema statement (indexes, views) and the AUTOINCREMENT counters.
type sqlImage struct {
	Tables []sqlstore.Table
	Schema []string
	Seqs   [][]any
}

func sqlImageOf(h *harness, name string) sqlImage {
	h.t.Helper()
	return h.must(name, func(c *Ctx, _ *scratch) (any, error) {
		db, err := c.t.sqlBegin()
		if err != nil {
			return nil, err
		}
		var img sqlImage
		if img.Tables, err = db.Dump(c); err != nil {
			return nil, err
		}
		if img.Schema, err = db.Schema(c); err != nil {
			return nil, err
		}
		cur, err := c.SQL().Exec("SELECT name, seq FROM sqlite_sequence WHERE (SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence') ORDER BY name")
		if err != nil && strings.Contains(err.Error(), "no such table") {
			return img, nil
		}
		if err != nil {
			return nil, err
		}
		img.Seqs = cur.Raw()
		return img, nil
	}).(sqlImage)
}

// sqlWorkload writes n events to scratch object name: a counter upsert in
// each, rows added to an AUTOINCREMENT table with an index and a view
// over it, and the oldest deleted now and then (so the counter is past
// the largest rowid).
func sqlWorkload(h *harness, name string, n int) {
	h.t.Helper()
	h.must(name, func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec(`CREATE TABLE counter(k TEXT PRIMARY KEY, v INTEGER);
			CREATE TABLE entries(id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT, n INTEGER, blob BLOB, f REAL);
			CREATE INDEX entries_n ON entries(n DESC);
			CREATE VIEW recent AS SELECT id, body FROM entries WHERE n % 2 = 0;`)
		return nil, err
	})
	for i := 1; i < n; i++ {
		h.must(name, func(c *Ctx, _ *scratch) (any, error) {
			q := "INSERT INTO counter(k, v) VALUES('c', 1) ON CONFLICT(k) DO UPDATE SET v = v + 1 RETURNING v"
			if _, err := c.SQL().Exec(q); err != nil {
				return nil, err
			}
			if i%3 == 0 {
				if _, err := c.SQL().Exec("INSERT INTO entries(body, n, blob, f) VALUES(?, ?, randomblob(3), ?)", fmt.Sprint("e", i), i, float64(i)/7); err != nil {
					return nil, err
				}
			}
			if i%5 == 0 {
				if _, err := c.SQL().Exec("DELETE FROM entries WHERE id = (SELECT max(id) FROM entries)"); err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
	}
}

// TestSQLActivatesFromACheckpoint: checkpoints carry the SQL state (tables,
// rows by rowid, indexes, views, AUTOINCREMENT counters), and a node with
// no SQL file builds it from the newest checkpoint, reading only the
// events after it (at most one interval); without checkpoints it reads
// the whole log. Time travel to a checkpointed version reads the tables
// from the checkpoint, equal to a replay from the first event.
func TestSQLActivatesFromACheckpoint(t *testing.T) {
	events, every := 260, 50
	if *sqlCkptEvents > 0 {
		events, every = *sqlCkptEvents, DefaultCheckpointEvery
	}
	srv := startServer(t)
	withEvery := func(n int) harnessOpt {
		return func(c *Config) { c.Checkpoints = CheckpointConfig{Every: n} }
	}
	h := newHarnessOn(t, srv, withSQLDir(t.TempDir()), withEvery(every))
	sqlWorkload(h, "s", events)
	ctx := context.Background()
	if err := h.rt.FlushCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	want := sqlImageOf(h, "s")
	last := h.lastVersion("scratch", "s")
	if last != uint64(events) || len(want.Tables) != 2 || len(want.Schema) != 4 || len(want.Seqs) != 1 {
		t.Fatalf("workload: v%d, %+v", last, want)
	}
	if s := h.rt.CheckpointStats(); s.Failed != 0 || s.Written != last/uint64(every) {
		t.Fatalf("checkpointer %+v, want %d written", s, last/uint64(every))
	}
	ref := h.ref("scratch", "s")
	info, err := h.log.LastCheckpoint(ctx, "scratch", ref.ID)
	if err != nil || !info.HasSQL || info.SQLChanges == 0 {
		t.Fatalf("newest checkpoint %+v %v", info, err)
	}
	// The checkpoint's tables are the full replay's at its version.
	past, err := h.rt.StateAt(ctx, ref, history.At{Version: info.Version, SQL: true})
	if err != nil {
		t.Fatal(err)
	}
	full, err := history.Replay(ctx, h.log, "scratch", ref.ID, nil, func(ev *log.Event) bool { return ev.Version > info.Version }, nil)
	if err != nil {
		t.Fatal(err)
	}
	fullTables, err := full.SQL().Dump(ctx)
	full.Close()
	if err != nil || !reflect.DeepEqual(past.Tables, fullTables) {
		t.Fatalf("tables at v%d: from the checkpoint %+v, replayed %+v (%v)", info.Version, past.Tables, fullTables, err)
	}
	h.close()

	cases := []struct {
		every    int
		readsMax uint64
	}{{every, last % uint64(every)}, {-1, last}}
	if *sqlCkptEvents > 0 {
		// Reading 100,000 events outlasts a call's deadline on a loaded
		// machine: the scaled run checks the checkpoint case only.
		cases = cases[:1]
	}
	for _, c := range cases {
		h2 := newHarnessOn(t, srv, withSQLDir(t.TempDir()), withEvery(c.every))
		h2.must("s", func(c *Ctx, _ *scratch) (any, error) { _, _, err := c.Storage().Get("none"); return nil, err })
		before := h2.log.Stats().Read
		got := sqlImageOf(h2, "s")
		reads := h2.log.Stats().Read - before
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("every %d: a new node's SQL\n%+v\nwant\n%+v", c.every, got, want)
		}
		if reads != c.readsMax {
			t.Fatalf("every %d: building the SQL file read %d events, want %d (%d events)", c.every, reads, c.readsMax, last)
		}
		t.Logf("checkpoints every %d: building the SQL file of an object with %d events read %d", c.every, last, reads)
		h2.close()
	}
}

// TestRestoreSQLSchema: restore sets tables, rows, indexes and views back
// to a past version (an index or view added since is dropped, one dropped
// since comes back, a table whose schema changed is recreated with its
// indexes), and the restore can be undone.
func TestRestoreSQLSchema(t *testing.T) {
	h := newHarness(t, withSQLDir(t.TempDir()))
	ctx := context.Background()
	ref := h.ref("scratch", "r")
	exec := func(q string) {
		h.t.Helper()
		h.must("r", func(c *Ctx, _ *scratch) (any, error) { _, err := c.SQL().Exec(q); return nil, err })
	}
	images := map[uint64]sqlImage{}
	snap := func() {
		img := sqlImageOf(h, "r")
		slices.Sort(img.Schema) // creation order differs after a restore
		images[h.lastVersion("scratch", "r")] = img
	}
	exec(`CREATE TABLE t(a, b); CREATE INDEX t_a ON t(a); CREATE VIEW v1 AS SELECT a FROM t;
		INSERT INTO t VALUES(1, 'x'), (2, 'y')`)
	snap()
	exec(`INSERT INTO t VALUES(3, 'z'); CREATE INDEX t_b ON t(b); DROP VIEW v1; CREATE VIEW v2 AS SELECT b FROM t WHERE a > 1;
		CREATE TABLE u(k PRIMARY KEY, v); CREATE UNIQUE INDEX u_v ON u(v); INSERT INTO u VALUES('k', 'v')`)
	snap()
	exec(`DROP TABLE t; CREATE TABLE t(a, b, c); CREATE INDEX t_c ON t(c); INSERT INTO t VALUES(9, 9, 9);
		DROP INDEX u_v; CREATE VIEW v3 AS SELECT * FROM u`)
	snap()
	for _, to := range []uint64{1, 3, 2, 3} {
		if _, err := h.rt.Restore(ctx, ref, history.At{Version: to}, Cause{}); err != nil {
			t.Fatalf("restore to v%d: %v", to, err)
		}
		got := sqlImageOf(h, "r")
		slices.Sort(got.Schema)
		if !reflect.DeepEqual(got, images[to]) {
			t.Fatalf("after restore to v%d:\n%+v\nwant\n%+v", to, got, images[to])
		}
	}
}

// TestSQLWithRetention: a class that drops its events older than each
// checkpoint can still build an object's SQL file on a node that never
// had it (before checkpoints carried SQL state, it could not), and time
// travel reads the tables from the newest checkpoint.
func TestSQLWithRetention(t *testing.T) {
	const every = 10
	srv := startServer(t)
	cfg := func(c *Config) {
		c.Checkpoints = CheckpointConfig{Every: every, Retain: map[string]bool{"scratch": true}}
	}
	h := newHarnessWith(t, srv, log.Config{AllowRetention: true}, withSQLDir(t.TempDir()), cfg)
	sqlWorkload(h, "r", 34)
	ctx := context.Background()
	if err := h.rt.FlushCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	want := sqlImageOf(h, "r")
	ref := h.ref("scratch", "r")
	if first := h.firstVersion("scratch", "r"); first != 30 {
		t.Fatalf("the retained log starts at version %d, want 30", first)
	}
	past, err := h.rt.StateAt(ctx, ref, history.At{Version: 34, SQL: true})
	if err != nil || !reflect.DeepEqual(past.Tables, want.Tables) {
		t.Fatalf("tables at v34 from the checkpoint: %+v %v, want %+v", past.Tables, err, want.Tables)
	}
	h.close()
	h2 := newHarnessWith(t, srv, log.Config{AllowRetention: true}, withSQLDir(t.TempDir()), cfg)
	if got := sqlImageOf(h2, "r"); !reflect.DeepEqual(got, want) {
		t.Fatalf("a new node's SQL\n%+v\nwant\n%+v", got, want)
	}
}

// TestRestoreKeepsAutoincrement: restore sets rows back but not a table's
// AUTOINCREMENT counter, so an id handed out since is not handed out
// again (SQLite's promise for AUTOINCREMENT), unless the restore created
// the table again (its schema changed), which counts from the rows it put
// back.
func TestRestoreKeepsAutoincrement(t *testing.T) {
	h := newHarness(t, withSQLDir(t.TempDir()))
	ctx := context.Background()
	ref := h.ref("scratch", "ai")
	insert := func(table string) int64 {
		h.t.Helper()
		return h.must("ai", func(c *Ctx, _ *scratch) (any, error) {
			cur, err := c.SQL().Exec("INSERT INTO " + table + "(v) VALUES('x') RETURNING id")
			if err != nil {
				return nil, err
			}
			return cur.Raw()[0][0], nil
		}).(int64)
	}
	h.must("ai", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec(`CREATE TABLE same(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
			CREATE TABLE changed(id INTEGER PRIMARY KEY AUTOINCREMENT, v)`)
		return nil, err
	})
	insert("same")
	insert("changed")
	v := h.lastVersion("scratch", "ai")
	insert("same")
	insert("changed")
	h.must("ai", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec(`DELETE FROM same WHERE id = 2; DROP TABLE changed;
			CREATE TABLE changed(id INTEGER PRIMARY KEY AUTOINCREMENT, v, w); INSERT INTO changed(id, v) VALUES(2, 'x')`)
		return nil, err
	})
	if _, err := h.rt.Restore(ctx, ref, history.At{Version: v}, Cause{}); err != nil {
		t.Fatal(err)
	}
	if got := sqlRows(h, "ai", "SELECT id FROM same UNION ALL SELECT id FROM changed"); !reflect.DeepEqual(got, [][]any{{int64(1)}, {int64(1)}}) {
		t.Fatalf("rows after the restore: %v", got)
	}
	if id := insert("same"); id != 3 {
		t.Fatalf("same's next id %d, want 3: an id given out since the restored version came back", id)
	}
	if id := insert("changed"); id != 2 {
		t.Fatalf("changed's next id %d, want 2: the table created again counts from its restored rows", id)
	}
}
