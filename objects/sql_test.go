package objects

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/strata-objects/strata/log"
)

func withSQLDir(dir string) harnessOpt { return func(c *Config) { c.SQLDir = dir } }

// rows runs a read in a turn and returns its raw rows.
func sqlRows(h *harness, name, q string, args ...any) [][]any {
	h.t.Helper()
	return h.must(name, func(c *Ctx, _ *scratch) (any, error) {
		cur, err := c.SQL().Exec(q, args...)
		if err != nil {
			return nil, err
		}
		return cur.Raw(), nil
	}).([][]any)
}

// The Durable Objects SQL examples: create a table, insert with bindings,
// RETURNING, select with bindings, cursor iteration, one().
func TestSQLExamples(t *testing.T) {
	h := newHarness(t, withSQLDir(t.TempDir()))
	h.must("a", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec(`CREATE TABLE IF NOT EXISTS artist(artistid INTEGER PRIMARY KEY, artistname TEXT);
			INSERT INTO artist (artistid, artistname) VALUES (123, 'Alice'), (456, 'Bob'), (789, 'Charlie');`)
		return nil, err
	})
	id := h.must("a", func(c *Ctx, _ *scratch) (any, error) {
		cur, err := c.SQL().Exec("INSERT INTO artist(artistname) VALUES(?) RETURNING artistid", "Dee")
		if err != nil {
			return nil, err
		}
		row, err := cur.One()
		if err != nil {
			return nil, err
		}
		if cur.RowsWritten() != 1 {
			t.Errorf("RowsWritten %d", cur.RowsWritten())
		}
		return row["artistid"], nil
	})
	if id != int64(790) {
		t.Fatalf("RETURNING id %v", id)
	}
	names := h.must("a", func(c *Ctx, _ *scratch) (any, error) {
		cur, err := c.SQL().Exec("SELECT artistname FROM artist WHERE artistid > ? ORDER BY artistid", 200)
		if err != nil {
			return nil, err
		}
		var out []string
		for cur.Next() {
			var n string
			if err := cur.Scan(&n); err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		size, err := c.SQL().DatabaseSize()
		if err != nil || size <= 0 {
			t.Errorf("DatabaseSize %d %v", size, err)
		}
		return out, nil
	})
	if !reflect.DeepEqual(names, []string{"Bob", "Charlie", "Dee"}) {
		t.Fatalf("names %v", names)
	}
	// The event recorded rows, not statements.
	h.flush()
}

// A failed turn discards its SQL and its KV writes together; a failed
// Storage.Transaction discards both and the turn goes on.
func TestSQLSharesTheTurnsTransaction(t *testing.T) {
	h := newHarness(t, withSQLDir(t.TempDir()))
	h.must("x", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec("CREATE TABLE t(v)")
		return nil, err
	})
	boom := errors.New("boom")
	if _, err := h.do("x", func(c *Ctx, _ *scratch) (any, error) {
		if _, err := c.SQL().Exec("INSERT INTO t VALUES(1)"); err != nil {
			return nil, err
		}
		return nil, errors.Join(c.Storage().Put("k", []byte("v")), boom)
	}); !errors.Is(err, boom) {
		t.Fatalf("turn: %v", err)
	}
	h.must("x", func(c *Ctx, _ *scratch) (any, error) {
		err := c.Storage().Transaction(func(tx *Storage) error {
			if _, err := c.SQL().Exec("INSERT INTO t VALUES(2)"); err != nil {
				return err
			}
			if err := tx.Put("k2", []byte("v")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("transaction: %v", err)
		}
		_, err = c.SQL().Exec("INSERT INTO t VALUES(3)")
		return nil, err
	})
	got := sqlRows(h, "x", "SELECT v FROM t")
	if !reflect.DeepEqual(got, [][]any{{int64(3)}}) {
		t.Fatalf("rows %v, want only 3", got)
	}
	kv := h.must("x", func(c *Ctx, _ *scratch) (any, error) { return c.Storage().List(ListOptions{}) })
	if len(kv.([]KV)) != 0 {
		t.Fatalf("keys %v", kv)
	}
	// Bad input changes nothing and says why.
	for _, q := range []string{"SELEC 1", "INSERT INTO nope VALUES(1)", "ATTACH 'x' AS y", "PRAGMA synchronous=OFF", "CREATE TABLE c AS SELECT 1"} {
		_, err := h.do("x", func(c *Ctx, _ *scratch) (any, error) { return c.SQL().Exec(q) })
		if !errors.Is(err, ErrSQL) && !errors.Is(err, ErrSQLRefused) {
			t.Errorf("%s: %v", q, err)
		}
	}
	if v := h.lastVersion("scratch", "x"); v != 2 {
		t.Fatalf("version %d after refusals, want 2", v)
	}
}

// Rows written with random() and datetime('now') come back the same on
// another node: from its own file caught up from the log, and replayed
// from the log alone.
func TestSQLReplayIsExact(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	h1 := newHarnessOn(t, srv, withSQLDir(dir))
	h1.must("r", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec("CREATE TABLE t(r, at, b)")
		return nil, err
	})
	for i := 0; i < 5; i++ {
		h1.must("r", func(c *Ctx, _ *scratch) (any, error) {
			_, err := c.SQL().Exec("INSERT INTO t VALUES(random(), datetime('now'), randomblob(4))")
			return nil, err
		})
	}
	want := sqlRows(h1, "r", "SELECT rowid, * FROM t ORDER BY rowid")
	h1.close()
	for _, d := range []string{dir, ""} {
		h2 := newHarnessOn(t, srv, withSQLDir(d))
		got := sqlRows(h2, "r", "SELECT rowid, * FROM t ORDER BY rowid")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("dir %q: replayed %v, want %v", d, got, want)
		}
		h2.must("r", func(c *Ctx, _ *scratch) (any, error) {
			_, err := c.SQL().Exec("UPDATE t SET r = r + 1")
			return nil, err
		})
		for _, row := range want {
			row[1] = row[1].(int64) + 1
		}
		h2.close()
	}
	_ = context.Background()
}

// A forged event that adds a row (the right next version, another
// PrevHash) is reported by audit, and never served as a row.
func TestSQLAuditDetectsAForgedRow(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, withSQLDir(t.TempDir()))
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER)")
		return nil, err
	})
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec("INSERT INTO acct VALUES(1, 10)")
		return nil, err
	})
	id := IDFromName("scratch", "f")
	last, err := h.log.Last(ctx, "scratch", id)
	if err != nil {
		t.Fatal(err)
	}
	ev := *last.Event
	ev.Version++
	ev.PrevHash = log.Hash{0xfe}
	ev.Turns = []log.Turn{{Cause: log.Cause{Via: log.ViaRPC}, SQL: []log.SQLChange{{Op: log.OpSQLUpdate, Table: "acct", RowID: 1, NewRowID: 1, Old: []any{int64(1), int64(10)}, New: []any{int64(1), int64(1000000)}}}}}
	data, err := log.Encode(&ev)
	if err != nil {
		t.Fatal(err)
	}
	seq := forge(t, h, "scratch", id, data)
	rep, err := h.rt.Verify(ctx, h.ref("scratch", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.BrokenAt != seq {
		t.Fatalf("audit: %+v, want broken at %d", rep, seq)
	}
	h2 := newHarnessOn(t, h.srv, withSQLDir(t.TempDir()))
	if _, err := h2.do("f", func(c *Ctx, _ *scratch) (any, error) { return c.SQL().Exec("SELECT balance FROM acct") }); !errors.Is(err, ErrCorruptLog) {
		t.Fatalf("the forged row's object answered %v, want ErrCorruptLog", err)
	}
}

// The file commits once per sqlCommitEvents acknowledged events, not per
// event; the activation's end commits the rest, and the next activation
// opens the file at the last event without reading the log.
func TestSQLCommitsInBatches(t *testing.T) {
	h := newHarness(t, withSQLDir(t.TempDir()))
	h.must("b", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec("CREATE TABLE t(v)")
		return nil, err
	})
	n := sqlCommitEvents + 3
	for i := 1; i < n; i++ {
		h.must("b", func(c *Ctx, _ *scratch) (any, error) {
			_, err := c.SQL().Exec("INSERT INTO t VALUES(?)", i)
			return nil, err
		})
	}
	file := func() [2]uint64 {
		return h.must("b", func(c *Ctx, _ *scratch) (any, error) {
			if _, err := c.SQL().Exec("SELECT 1"); err != nil {
				return nil, err
			}
			st := c.t.a.sql
			return [2]uint64{st.fileV, st.ackV}, nil
		}).([2]uint64)
	}
	if got, want := file(), [2]uint64{sqlCommitEvents, uint64(n)}; got != want {
		t.Fatalf("file at v%d with v%d acknowledged, want v%d and v%d", got[0], got[1], want[0], want[1])
	}
	if ok, err := h.rt.Release(context.Background(), "scratch", IDFromName("scratch", "b")); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if got, want := file(), [2]uint64{uint64(n), uint64(n)}; got != want {
		t.Fatalf("after the activation's end: file at v%d, acknowledged v%d; want v%d", got[0], got[1], want[0])
	}
	if rows := sqlRows(h, "b", "SELECT count(*) FROM t"); rows[0][0] != int64(n-1) {
		t.Fatalf("rows %v, want %d", rows, n-1)
	}
}

// A turn's first statement runs in the turn's own savepoint, or in the
// transaction when few changes are pending (the turn's undo is then a
// rollback and the pending changes applied again): when it fails half
// way, what it did goes, the turn goes on, and its later statements are
// kept; on a new object (the turn begins the transaction), with few
// changes pending and with many (a savepoint). A turn that fails after
// its statements ran leaves nothing either. Replay from the log agrees.
func TestSQLFirstStatementFails(t *testing.T) {
	srv := startServer(t)
	h := newHarnessOn(t, srv, withSQLDir(t.TempDir()))
	fail := func(c *Ctx, q string) {
		if _, err := c.SQL().Exec(q); !errors.Is(err, ErrSQL) {
			t.Errorf("%s: %v, want ErrSQL", q, err)
		}
	}
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		if c.t.a.sql != nil && c.t.a.sql.inTxn {
			t.Error("a new object's first turn found a transaction open")
		}
		fail(c, "CREATE TABLE t(v UNIQUE); INSERT INTO nope VALUES(1)")
		if _, err := c.SQL().Exec("SELECT * FROM t"); !errors.Is(err, ErrSQL) {
			t.Errorf("table t after its failed query: %v", err)
		}
		if _, err := c.SQL().Exec("CREATE TABLE t(v UNIQUE)"); err != nil {
			return nil, err
		}
		_, err := c.SQL().Exec("INSERT INTO t VALUES(1)")
		return nil, err
	})
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		if st := c.t.a.sql; !st.inTxn || st.rows == 0 || st.rows > sqlLooseRowsMax {
			t.Errorf("%d changes pending: the undo of a turn without a savepoint is not tested", st.rows)
		}
		fail(c, "INSERT INTO t VALUES(2); INSERT INTO t VALUES(1)")
		_, err := c.SQL().Exec("INSERT INTO t VALUES(3)")
		return nil, err
	})
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		_, err := c.SQL().Exec(fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO t SELECT i FROM n", 100+sqlLooseRowsMax))
		return nil, err
	})
	h.must("f", func(c *Ctx, _ *scratch) (any, error) {
		if st := c.t.a.sql; st.rows <= sqlLooseRowsMax {
			t.Errorf("%d changes pending: the turn's savepoint is not tested", st.rows)
		}
		fail(c, "INSERT INTO t VALUES(7); INSERT INTO t VALUES(100)")
		_, err := c.SQL().Exec("INSERT INTO t VALUES(6)")
		return nil, err
	})
	boom := errors.New("boom")
	if _, err := h.do("f", func(c *Ctx, _ *scratch) (any, error) {
		fail(c, "INSERT INTO t VALUES(4); INSERT INTO t VALUES(3)")
		if _, err := c.SQL().Exec("INSERT INTO t VALUES(5)"); err != nil {
			return nil, err
		}
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failing turn: %v", err)
	}
	const q = "SELECT v FROM t WHERE v < 100 UNION ALL SELECT count(*) FROM t"
	want := [][]any{{int64(1)}, {int64(3)}, {int64(6)}, {int64(3 + sqlLooseRowsMax + 1)}}
	rowsLiveAndReplayed(t, h, srv, "f", q, want)
}

// TestSQLOrRollback: a statement whose conflict clause is ROLLBACK rolls
// back SQLite's whole transaction, which holds the changes of earlier
// acknowledged turns not yet committed to the file. The turn fails (400
// with SQLite's error); what the earlier turns wrote stays, live and
// replayed, with few changes pending (no savepoint per turn) and with
// many (a savepoint per turn).
func TestSQLOrRollback(t *testing.T) {
	srv := startServer(t)
	h := newHarnessOn(t, srv, withSQLDir(t.TempDir()))
	exec := func(q string) {
		t.Helper()
		h.must("r", func(c *Ctx, _ *scratch) (any, error) {
			_, err := c.SQL().Exec(q)
			return nil, err
		})
	}
	rollback := func(q string) {
		t.Helper()
		if _, err := h.do("r", func(c *Ctx, _ *scratch) (any, error) {
			_, err := c.SQL().Exec(q)
			return nil, err
		}); !errors.Is(err, ErrSQL) {
			t.Fatalf("%s: %v, want ErrSQL", q, err)
		}
	}
	// inTransactions runs OR ROLLBACK inside Storage.Transaction, which
	// SQLite answers by rolling back its whole transaction: the turn's
	// changes before it, its savepoints and the pending changes. The
	// statement fails alone; the turn goes on with what it held.
	inTransactions := func(v int) {
		t.Helper()
		// The transaction returns the error: the turn fails with it (a
		// 400), and nothing of the turn stays.
		if _, err := h.do("r", func(c *Ctx, _ *scratch) (any, error) {
			if _, err := c.SQL().Exec(fmt.Sprintf("INSERT INTO t VALUES(%d)", v)); err != nil {
				return nil, err
			}
			return nil, c.Storage().Transaction(func(*Storage) error {
				_, err := c.SQL().Exec(fmt.Sprintf("INSERT OR ROLLBACK INTO t VALUES(%d), (1)", v+1))
				return err
			})
		}); !errors.Is(err, ErrSQL) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("a turn whose transaction returned OR ROLLBACK's error: %v, want ErrSQL", err)
		}
		// The error is caught, in a transaction and in one nested in it:
		// the rest of the turn is kept.
		h.must("r", func(c *Ctx, _ *scratch) (any, error) {
			sql := func(format string, args ...any) error {
				_, err := c.SQL().Exec(fmt.Sprintf(format, args...))
				return err
			}
			if err := sql("INSERT INTO t VALUES(%d)", v+2); err != nil {
				return nil, err
			}
			err := c.Storage().Transaction(func(tx *Storage) error {
				if err := sql("INSERT INTO t VALUES(%d)", v+3); err != nil {
					return err
				}
				if err := sql("INSERT OR ROLLBACK INTO t VALUES(%d), (1)", v+4); !errors.Is(err, ErrSQL) {
					return fmt.Errorf("OR ROLLBACK in a transaction: %v, want ErrSQL", err)
				}
				if err := sql("INSERT INTO t VALUES(%d)", v+5); err != nil {
					return err
				}
				inner := tx.Transaction(func(*Storage) error {
					if err := sql("INSERT INTO t VALUES(%d)", v+6); err != nil {
						return err
					}
					return sql("INSERT OR ROLLBACK INTO t VALUES(%d), (2)", v+7)
				})
				if !errors.Is(inner, ErrSQL) {
					return fmt.Errorf("OR ROLLBACK in a nested transaction: %v, want ErrSQL", inner)
				}
				return sql("INSERT INTO t VALUES(%d)", v+8)
			})
			if err != nil {
				return nil, err
			}
			// Outside a transaction, after the turn's first statement
			// (which rolls back as a failed turn does): the same.
			if err := sql("INSERT OR ROLLBACK INTO t VALUES(%d), (1)", v+1); !errors.Is(err, ErrSQL) {
				return nil, fmt.Errorf("OR ROLLBACK after other statements: %v, want ErrSQL", err)
			}
			return nil, sql("INSERT INTO t VALUES(%d)", v+9)
		})
	}
	exec("CREATE TABLE t(v UNIQUE)")
	exec("INSERT INTO t VALUES(1)")
	exec("INSERT INTO t VALUES(2)")
	rollback("INSERT OR ROLLBACK INTO t VALUES(3), (1)")
	exec("INSERT INTO t VALUES(4)")
	inTransactions(10) // few changes pending: turns run in the transaction itself
	exec(fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO t SELECT i FROM n", 1000+sqlLooseRowsMax))
	exec("INSERT INTO t VALUES(5)")
	rollback("INSERT OR ROLLBACK INTO t VALUES(6), (2)")
	exec("INSERT INTO t VALUES(7)")
	inTransactions(20) // many pending: each turn in a savepoint
	const q = "SELECT v FROM t WHERE v < 1000 UNION ALL SELECT count(*) FROM t"
	var want [][]any
	for _, v := range []int64{1, 2, 4, 5, 7, 12, 13, 15, 18, 19, 22, 23, 25, 28, 29} {
		want = append(want, []any{v})
	}
	want = append(want, []any{int64(len(want) + sqlLooseRowsMax + 1)})
	rowsLiveAndReplayed(t, h, srv, "r", q, want)
}

// rowsLiveAndReplayed checks that q on name answers want, then closes h
// and checks it again on a new harness without SQL files, which builds
// the database from the log.
func rowsLiveAndReplayed(t *testing.T, h *harness, srv *log.Server, name, q string, want [][]any) {
	t.Helper()
	if got := sqlRows(h, name, q); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	h.close()
	h2 := newHarnessOn(t, srv, withSQLDir(""))
	if got := sqlRows(h2, name, q); !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed rows %v, want %v", got, want)
	}
}
