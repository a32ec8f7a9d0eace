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
