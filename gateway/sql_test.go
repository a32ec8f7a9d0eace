package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// The built-in sql class over HTTP: exec and batch return columns and
// rows; SQL errors and refused statements are 400 with SQLite's message,
// and change nothing.
func TestSQLClass(t *testing.T) {
	f := start(t)
	steps := []struct{ path, body, want string }{
		{"/v1/objects/sql/db/rpc/exec", `{"query":"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, photo BLOB)"}`, `{"columns":[],"rows":[],"rows_read":0,"rows_written":0}`},
		{"/v1/objects/sql/db/rpc/exec", `{"query":"INSERT INTO users(name, photo) VALUES(?, ?) RETURNING id","params":["ann",{"base64":"AAE="}]}`, `{"columns":["id"],"rows":[[1]],"rows_read":1,"rows_written":1}`},
		{"/v1/objects/sql/db/rpc/batch", `{"queries":[{"query":"INSERT INTO users(name) VALUES(?)","params":["bob"]},{"query":"SELECT name, photo FROM users WHERE id >= ? ORDER BY id","params":[1]}]}`,
			`{"results":[{"columns":[],"rows":[],"rows_read":0,"rows_written":1},{"columns":["name","photo"],"rows":[["ann",{"base64":"AAE="}],["bob",null]],"rows_read":2,"rows_written":0}]}`},
	}
	for _, s := range steps {
		code, got := f.post(s.path, s.body)
		if code != http.StatusOK || got != s.want {
			t.Fatalf("POST %s %s\n got %d %s\nwant 200 %s", s.path, s.body, code, got, s.want)
		}
	}
	bad := []struct{ body, code, msg string }{
		{`{"query":"SELEC 1"}`, "sql_error", "syntax error"},
		{`{"query":"INSERT INTO users(id) VALUES(1)"}`, "sql_error", "UNIQUE constraint failed"},
		{`{"query":"ATTACH DATABASE 'x.db' AS x"}`, "sql_refused", "ATTACH"},
		{`{"query":"SELECT load_extension('x')"}`, "sql_refused", "load_extension"},
		{`{"query":"PRAGMA synchronous=OFF"}`, "sql_refused", "synchronous"},
		{`{"query":"VACUUM INTO 'copy.db'"}`, "sql_error", "VACUUM"},
		{`{"query":"SELECT ?","params":[{"x":1}]}`, "bad_input", "binding"},
	}
	for _, b := range bad {
		code, got := f.post("/v1/objects/sql/db/rpc/exec", b.body)
		if code != http.StatusBadRequest || !strings.Contains(got, `"code":"`+b.code+`"`) || !strings.Contains(got, b.msg) {
			t.Errorf("%s: %d %s, want 400 %s with %q", b.body, code, got, b.code, b.msg)
		}
	}
	// A batch is one turn: a failing query undoes the ones before it.
	if code, got := f.post("/v1/objects/sql/db/rpc/batch", `{"queries":[{"query":"INSERT INTO users(name) VALUES('cy')"},{"query":"SELEC"}]}`); code != http.StatusBadRequest {
		t.Fatalf("failing batch: %d %s", code, got)
	}
	code, got := f.post("/v1/objects/sql/db/rpc/exec", `{"query":"SELECT count(*) AS n FROM users"}`)
	if code != 200 || got != `{"columns":["n"],"rows":[[2]],"rows_read":1,"rows_written":0}` {
		t.Fatalf("after refusals: %d %s", code, got)
	}
}

// Tables travel in time: history shows row diffs, state and sql/query
// read a past version, restore sets tables back (and is undone by a
// restore to the version before it), audit verifies the chain.
func TestSQLTimeTravel(t *testing.T) {
	f := start(t)
	must := func(path, body string) string {
		t.Helper()
		code, got := f.post(path, body)
		if code != http.StatusOK {
			t.Fatalf("POST %s %s: %d %s", path, body, code, got)
		}
		return got
	}
	exec := "/v1/objects/sql/tt/rpc/exec"
	must(exec, `{"query":"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)"}`)    // v1
	must(exec, `{"query":"INSERT INTO users(id, name) VALUES(7, 'ann'), (8, 'bob')"}`) // v2
	must(exec, `{"query":"UPDATE users SET name = 'anna' WHERE id = 7"}`)              // v3
	must(exec, `{"query":"DELETE FROM users WHERE id = 8"}`)                           // v4

	code, hist, _ := f.do(http.MethodGet, "/v1/objects/sql/tt/history", "")
	if code != 200 || !strings.Contains(hist, `table users: rowid=7 name \"ann\" → \"anna\"`) || !strings.Contains(hist, `schema: CREATE TABLE users`) {
		t.Fatalf("history: %d %s", code, hist)
	}
	code, st, _ := f.do(http.MethodGet, "/v1/objects/sql/tt/state?version=2", "")
	if code != 200 || !strings.Contains(st, `"rows":[[7,"ann"],[8,"bob"]]`) {
		t.Fatalf("state v2: %d %s", code, st)
	}
	got := must("/v1/objects/sql/tt/sql/query?version=3", `{"query":"SELECT name FROM users WHERE id >= ? ORDER BY id","params":[7]}`)
	if got != `{"columns":["name"],"rows":[["anna"],["bob"]],"version":3}` {
		t.Fatalf("query v3: %s", got)
	}
	if code, got := f.post("/v1/objects/sql/tt/sql/query?version=3", `{"query":"DELETE FROM users"}`); code != 400 || !strings.Contains(got, "read-only") {
		t.Fatalf("writing the past: %d %s", code, got)
	}
	must("/v1/objects/sql/tt/restore", `{"version":2}`) // v5
	if got := must(exec, `{"query":"SELECT id, name FROM users ORDER BY id"}`); !strings.Contains(got, `"rows":[[7,"ann"],[8,"bob"]]`) {
		t.Fatalf("after restore to v2: %s", got)
	}
	must("/v1/objects/sql/tt/restore", `{"version":4}`) // undo: v6
	if got := must(exec, `{"query":"SELECT id, name FROM users ORDER BY id"}`); !strings.Contains(got, `"rows":[[7,"anna"]]`) {
		t.Fatalf("after undoing the restore: %s", got)
	}
	code, audit, _ := f.do(http.MethodGet, "/v1/objects/sql/tt/audit", "")
	if code != 200 || !strings.Contains(audit, `"ok":true`) {
		t.Fatalf("audit: %d %s", code, audit)
	}
}
