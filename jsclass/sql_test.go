package jsclass_test

import (
	"strings"
	"testing"
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
    if (kind === "tx") await this.ctx.storage.transaction(async () => { sql.exec("SELECT 1"); });
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
	for kind, want := range map[string]string{"binding": "cannot be bound", "syntax": "syntax error", "tx": "inside storage.transaction()"} {
		st, got := do(t, "POST", u+"bad", quoteJSON(kind))
		if st != 400 || !strings.Contains(got, want) {
			t.Fatalf("bad %s: %d %s, want 400 with %q", kind, st, got, want)
		}
	}
}
