package jsclass_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/objects"
)

// sqlExampleTS is the shape of Cloudflare's SQL API example (a table made
// in the constructor under blockConcurrencyWhile, inserts with bindings and
// RETURNING, a select iterated with for…of, one()), with only the import
// line changed.
const sqlExampleTS = `import { DurableObject } from "strata";

export class MyDurableObject extends DurableObject {
  sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(` + "`" + `CREATE TABLE IF NOT EXISTS artist(
        artistid    INTEGER PRIMARY KEY,
        artistname  TEXT
      );` + "`" + `);
    });
  }

  async addArtist(id: number, name: string) {
    const row = this.sql
      .exec("INSERT INTO artist (artistid, artistname) VALUES (?, ?) RETURNING artistid", id, name)
      .one();
    return row.artistid;
  }

  async artistNames() {
    const names: string[] = [];
    let cursor = this.sql.exec("SELECT * FROM artist WHERE artistid >= ? ORDER BY artistid", 0);
    for (let row of cursor) {
      names.push(row.artistname as string);
    }
    return names;
  }

  async sayHello() {
    let result = this.ctx.storage.sql.exec("SELECT 'Hello, World!' as greeting").one();
    return result.greeting;
  }
}
`

func TestSQLCloudflareExample(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "artists", "artists.ts", sqlExampleTS)
	u := n.URL + "/v1/objects/artists/gallery/rpc/"
	for i, name := range []string{"Alice", "Bob", "Charlie"} {
		id := []string{"123", "456", "789"}[i]
		if st, got := do(t, "POST", u+"addArtist", "["+id+","+quoteJSON(name)+"]"); st != 200 || got != id {
			t.Fatalf("addArtist %s: %d %s", name, st, got)
		}
	}
	if st, got := do(t, "POST", u+"artistNames", ""); st != 200 || got != `["Alice","Bob","Charlie"]` {
		t.Fatalf("artistNames: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"sayHello", ""); st != 200 || got != `"Hello, World!"` {
		t.Fatalf("sayHello: %d %s", st, got)
	}
	// A primary key taken twice: SQLite's message, 400, and nothing kept.
	st, got := do(t, "POST", u+"addArtist", `[123,"Dup"]`)
	if st != 400 || !strings.Contains(got, "UNIQUE constraint failed: artist.artistid") {
		t.Fatalf("duplicate: %d %s", st, got)
	}
	// A new version constructs the class again (the constructor's CREATE
	// TABLE IF NOT EXISTS runs again): the rows are the object's.
	n.deploy(t, "artists", "artists.ts", sqlExampleTS)
	if st, got := do(t, "POST", u+"artistNames", ""); st != 200 || got != `["Alice","Bob","Charlie"]` {
		t.Fatalf("artistNames after a redeploy: %d %s", st, got)
	}
}

const sqlTypesJS = `import { DurableObject } from "strata";
export class T extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS v(k TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, n)");
  }
  async types() {
    const sql = this.ctx.storage.sql;
    const w = sql.exec("INSERT INTO v VALUES (?,?,?,?,?,?), (?,?,?,?,?,?)",
      "a", 42, 1.5, "text", new Uint8Array([1, 2, 255]), null,
      "b", -7, 2, "more", new Uint8Array([9]).buffer, true);
    const c = sql.exec("SELECT k, i, r, t, b, n FROM v ORDER BY k");
    const cols = c.columnNames;
    const first = c.next().value;
    const rest = c.raw().toArray();
    const again = sql.exec("SELECT count(*) AS c FROM v").one().c;
    let oneErr = "";
    try { sql.exec("SELECT * FROM v").one(); } catch (e) { oneErr = e.message; }
    let caught = "";
    try { sql.exec("SELECT * FROM nope"); } catch (e) { caught = e.message; }
    const it = sql.exec("SELECT k FROM v ORDER BY k")[Symbol.iterator]();
    const ks = [it.next().value.k, it.next().value.k, it.next().done];
    return {
      written: w.rowsWritten, read: c.rowsRead, cols, first: { ...first, b: Array.from(new Uint8Array(first.b)) },
      blob: first.b instanceof ArrayBuffer, types: [typeof first.i, typeof first.r, typeof first.t, first.n],
      rest: rest.map(r => r.map(x => x instanceof ArrayBuffer ? Array.from(new Uint8Array(x)) : x)),
      again, oneErr, caught, ks, size: sql.databaseSize > 0,
    };
  }
  async fail() {
    this.ctx.storage.sql.exec("INSERT INTO v(k) VALUES ('gone')");
    throw new Error("after the insert");
  }
  async count() { return this.ctx.storage.sql.exec("SELECT count(*) AS c FROM v").one().c; }
  async bad(kind) {
    const sql = this.ctx.storage.sql;
    if (kind === "binding") sql.exec("SELECT ?", {});
    if (kind === "syntax") sql.exec("SELEC 1");
    return "no error";
  }
}
`

func TestSQLValuesAndErrors(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "sqltypes", "t.js", sqlTypesJS)
	u := n.URL + "/v1/objects/sqltypes/one/rpc/"
	st, got := do(t, "POST", u+"types", "")
	want := `{"written":2,"read":2,"cols":["k","i","r","t","b","n"],"first":{"k":"a","i":42,"r":1.5,"t":"text","b":[1,2,255],"n":null},` +
		`"blob":true,"types":["number","number","string",null],"rest":[["b",-7,2,"more",[9],1]],"again":2,` +
		`"oneErr":"Expected exactly one result from SQL query, but got multiple results.",` +
		`"caught":"SQL error: SQL logic error: no such table: nope (1)","ks":["a","b",true],"size":true}`
	if st != 200 || got != want {
		t.Fatalf("types: %d\n got %s\nwant %s", st, got, want)
	}
	// A turn that fails after an insert keeps none of its rows.
	if st, got := do(t, "POST", u+"fail", ""); st != 500 || !strings.Contains(got, "after the insert") {
		t.Fatalf("fail: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"count", ""); st != 200 || got != "2" {
		t.Fatalf("count after a failed turn: %d %s", st, got)
	}
	for kind, want := range map[string]string{"binding": "cannot be bound", "syntax": "syntax error"} {
		st, got := do(t, "POST", u+"bad", quoteJSON(kind))
		if st != 400 || !strings.Contains(got, want) {
			t.Fatalf("bad %s: %d %s, want 400 with %q", kind, st, got, want)
		}
	}
}

const sqlTxJS = `import { DurableObject } from "strata";
export class T extends DurableObject {
  get sql() { return this.ctx.storage.sql; }
  rows() { return this.sql.exec("SELECT k FROM r ORDER BY k").toArray().map(x => x.k); }
  async setup() { this.sql.exec("CREATE TABLE r(k TEXT PRIMARY KEY)"); }
  async tx(k, how) {
    const s = this.ctx.storage;
    let caught = "";
    try {
      await s.transaction(async (txn) => {
        this.sql.exec("INSERT INTO r VALUES (?)", k);
        await txn.put(k, 1);
        if (how === "throw") throw new Error("boom");
        if (how === "rollback") txn.rollback();
        if (how === "nested") {
          await txn.transaction(async (inner) => { this.sql.exec("INSERT INTO r VALUES (?)", k + "-kept"); });
          try {
            await txn.transaction(async (inner) => { this.sql.exec("INSERT INTO r VALUES (?)", k + "-gone"); await inner.put(k + "-gone", 1); throw new Error("inner"); });
          } catch (e) {}
        }
      });
    } catch (e) { caught = e.message; }
    return [caught, this.rows(), (await s.get(k)) ?? null];
  }
  async fresh() {
    // SQL first used inside a transaction that throws: the table goes too.
    try { await this.ctx.storage.transaction(async () => { this.sql.exec("CREATE TABLE f(x)"); throw new Error("no"); }); } catch (e) {}
    return this.sql.exec("SELECT count(*) AS n FROM sqlite_master WHERE name = 'f'").one().n;
  }
  async leaveOpen() {
    // A transaction still open when the turn ends is rolled back.
    this.ctx.storage.transaction(async () => { this.sql.exec("INSERT INTO r VALUES ('open')"); await new Promise(() => {}); });
    return "returned";
  }
  async beside() {
    const s = this.ctx.storage;
    const a = s.transaction(async (txn) => { await txn.put("a", 1); await txn.put("a2", 1); });
    try { await s.transaction(async () => {}); } catch (e) { await a; return [e.message, await s.get("a2")]; }
    return "no error";
  }
}
`

// TestSQLInTransaction: sql.exec inside storage.transaction() runs in its
// savepoint: a transaction that throws or calls rollback() loses its rows
// with its keys, a nested one that throws only its own, one left open at
// the end of the turn is rolled back; and the log agrees with the live
// database (the rows replayed from history are the same).
func TestSQLInTransaction(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "sqltx", "t.js", sqlTxJS)
	u := n.URL + "/v1/objects/sqltx/one/rpc/"
	if st, got := do(t, "POST", u+"setup", ""); st != 200 {
		t.Fatalf("setup: %d %s", st, got)
	}
	for _, c := range []struct{ args, want string }{
		{`["a","commit"]`, `["",["a"],1]`},
		{`["b","throw"]`, `["boom",["a"],null]`},
		{`["c","rollback"]`, `["",["a"],null]`},
		{`["d","nested"]`, `["",["a","d","d-kept"],1]`},
	} {
		if st, got := do(t, "POST", u+"tx", c.args); st != 200 || got != c.want {
			t.Fatalf("tx %s: %d %s, want %s", c.args, st, got, c.want)
		}
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/sqltx/two/rpc/fresh", ""); st != 200 || got != "0" {
		t.Fatalf("fresh: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"leaveOpen", ""); st != 200 || got != `"returned"` {
		t.Fatalf("leaveOpen: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"beside", ""); st != 200 || !strings.Contains(got, "beside an open transaction") {
		t.Fatalf("beside: %d %s", st, got)
	}
	want := `["",["a","d","d-kept","e"],1]`
	if st, got := do(t, "POST", u+"tx", `["e","commit"]`); st != 200 || got != want {
		t.Fatalf("after leaveOpen: %d %s, want %s", st, got, want)
	}
	// The log holds exactly the live rows.
	res, _, err := n.Runtime.QueryAt(context.Background(), objects.Ref{Class: "sqltx", ID: objects.IDFromName("sqltx", "one")}, objects.PastAt{Time: time.Now()}, "SELECT k FROM r ORDER BY k", nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range res.Rows {
		keys = append(keys, fmt.Sprint(r[0]))
	}
	if strings.Join(keys, ",") != "a,d,d-kept,e" {
		t.Fatalf("rows in the log: %v", keys)
	}
}
