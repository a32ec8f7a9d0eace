package sqlstore

import (
	"context"
	"reflect"
	"testing"
)

// TestReturningFromCaptureMatchesSQLite: a RETURNING clause read from the
// capture returns what SQLite's own returns (columns, rows, row count,
// changes), statement by statement, over tables of every affinity, values
// of every type, upserts, REPLACE, a column added after rows were written,
// several rows per statement, and statements that return no rows; and the
// statements it should take are taken.
func TestReturningFromCaptureMatchesSQLite(t *testing.T) {
	ctx := context.Background()
	fast, slow := open(t), open(t)
	slow.returningAsWritten = true
	for _, d := range []*DB{fast, slow} {
		if err := d.Begin(ctx); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		q       string
		args    []any
		capture bool // read from the capture
	}{
		{q: "CREATE TABLE t(id INTEGER PRIMARY KEY, i INTEGER, n NUMERIC, x TEXT, b BLOB, u, k TEXT UNIQUE)"},
		{q: "CREATE TABLE r(id INTEGER PRIMARY KEY, f REAL)"},
		{q: "CREATE TABLE counter(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"},
		{q: "INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v", args: []any{int64(1)}, capture: true},
		{q: "INSERT INTO counter(k, v) VALUES('value', ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v RETURNING v", args: []any{int64(5)}, capture: true},
		{q: "insert into counter(k, v) values('other', 2) returning K, \"v\", [k]", capture: true},
		{q: "INSERT INTO t(i, n, x, b, u, k) VALUES(1, 1.0, 2, x'0102', 1.5, 'a'), ('7', '2.50', 3.25, '', 'txt', 'b'), (NULL, '0x10', NULL, x'', x'ff', 'c') RETURNING id, i, n, x, b, u, k", capture: true},
		{q: "INSERT INTO t(i, n, x, b, u, k) VALUES(?, ?, ?, ?, ?, ?) RETURNING id,i,n,x,b,u,k;", args: []any{int64(9), 3.0, "s", []byte{}, nil, "d"}, capture: true},
		{q: "UPDATE t SET i = i + 1, n = n * 2, u = u || 'z' WHERE id <= 3 RETURNING id, i, n, u", capture: true},
		{q: "UPDATE t SET i = 0 WHERE id > 100 RETURNING id", capture: true},
		{q: "REPLACE INTO t(id, i, k) VALUES(5, 50, 'a') RETURNING id, i, k", capture: true},
		{q: "INSERT OR REPLACE INTO t(id, i, k) VALUES(2, 20, 'z') RETURNING id, i, k", capture: true},
		{q: "INSERT INTO t(k) VALUES('b') ON CONFLICT(k) DO NOTHING RETURNING id", capture: true},
		{q: "ALTER TABLE t ADD COLUMN late TEXT DEFAULT 'dflt'"},
		{q: "UPDATE t SET i = -1 WHERE id = 3 RETURNING late, id", capture: true},
		{q: "DELETE FROM t WHERE id IN (2, 3) RETURNING id, k, late", capture: true},
		{q: "INSERT INTO r(f) VALUES(1), (2.5), (-0.0), (1e300), ('7') RETURNING f, id", capture: true},
		{q: "UPDATE r SET f = f * 2 RETURNING f", capture: true},
		{q: "INSERT INTO r(f) VALUES(3) RETURNING id", capture: true},
		{q: "UPDATE t SET i = 1 RETURNING i + 1"},
		{q: "UPDATE t SET i = 2 RETURNING *"},
		{q: "UPDATE t SET i = 3 RETURNING i AS j"},
		{q: "WITH w AS (SELECT 1) UPDATE t SET i = 4 RETURNING i"},
		{q: "UPDATE t SET i = 5 RETURNING rowid"},
		{q: "INSERT INTO t(i, k) SELECT v, 'from ' || k FROM counter RETURNING id, i, k", capture: true},
		{q: "SELECT id AS \"returning\" FROM t WHERE k = 'returning' ORDER BY id"},
		{q: "CREATE TABLE g(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2))"},
		{q: "INSERT INTO g(a) VALUES(1) RETURNING a"},
		{q: "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, x ANY) STRICT"},
		{q: "INSERT INTO a(x) VALUES(1), ('two'), (3.5) RETURNING id, x", capture: true},
		{q: "DELETE FROM a WHERE id = 2 RETURNING x", capture: true},
		{q: "INSERT INTO a(x) VALUES(x'00') RETURNING id", capture: true},
		{q: "DELETE FROM t RETURNING id", capture: true},
	}
	for _, s := range steps {
		rf, cf, ef := fast.Query(ctx, s.q, s.args...)
		rs, cs, es := slow.Query(ctx, s.q, s.args...)
		if ef != nil || es != nil {
			t.Fatalf("%s: errors %v, %v", s.q, ef, es)
		}
		if !reflect.DeepEqual(rf, rs) {
			t.Fatalf("%s:\n from the capture %#v\n SQLite's         %#v", s.q, rf, rs)
		}
		if !reflect.DeepEqual(cf, cs) {
			t.Fatalf("%s: changes\n %#v\n %#v", s.q, cf, cs)
		}
		us := fast.user[s.q]
		if got := us != nil && us.ret != nil; got != s.capture {
			t.Fatalf("%s: read from the capture %v, want %v", s.q, got, s.capture)
		}
	}
}

func TestReturningClause(t *testing.T) {
	for _, c := range []struct {
		q     string
		names []string
	}{
		{"INSERT INTO t(a) VALUES(1) RETURNING a", []string{"a"}},
		{"update t set returning = 1 returning a , \"b c\" ; -- done", []string{"a", "b c"}},
		{"update t set returning = 1 returning a , \"b\"\"c\" ;", []string{"a", `b"c`}},
		{"UPDATE t SET a = 1 WHERE b = 'x RETURNING y' RETURNING [a]", []string{"a"}},
		{"UPDATE t SET a = 1 WHERE b = returning", nil},
		{"UPDATE t SET a = (SELECT 1 RETURNING) RETURNING", nil},
		{"DELETE FROM t RETURNING a, returning", nil},
		{"DELETE FROM t RETURNING a b", nil},
		{"DELETE FROM t RETURNING a, ", nil},
		{"SELECT a returning FROM t", nil},
		{"WITH x AS (SELECT 1) DELETE FROM t RETURNING a", nil},
		{"INSERT INTO t VALUES(1) RETURNING a + 1", nil},
		{"INSERT INTO t VALUES(1) RETURNING *", nil},
	} {
		_, names, _, ok := returningClause(c.q)
		if ok != (c.names != nil) || !reflect.DeepEqual(names, c.names) && c.names != nil {
			t.Errorf("%q: names %q ok %v, want %q", c.q, names, ok, c.names)
		}
	}
}
