package jsclass_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/jsclass"
)

// counterTS is Cloudflare's counter example with only the import line
// changed.
const counterTS = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by: number = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by;
    await this.ctx.storage.put("value", v);
    return v;
  }
  async fetch(request: Request) { return new Response(String(await this.ctx.storage.get("value") ?? 0)); }
}
`

func TestCounterRPCAndFetch(t *testing.T) {
	n := startJS(t, nil)
	cv := n.deploy(t, "jcounter", "counter.ts", counterTS)
	if cv.Version != 1 || cv.Export != "Counter" {
		t.Fatalf("deployed %+v", cv)
	}
	for i, want := range []string{"2", "3", "13"} {
		body := []string{"[2]", "", "10"}[i]
		st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/alice/rpc/increment", body)
		if st != 200 || got != want {
			t.Fatalf("increment %q: %d %s, want %s", body, st, got, want)
		}
	}
	st, got := do(t, "GET", n.URL+"/v1/objects/jcounter/alice/fetch/", "")
	if st != 200 || got != "13" {
		t.Fatalf("fetch: %d %s", st, got)
	}
	st, got = do(t, "POST", n.URL+"/v1/objects/jcounter/alice/rpc/nope", "")
	if st != 404 || errCode(t, got) != "unknown_method" {
		t.Fatalf("unknown method: %d %s", st, got)
	}
	st, got = do(t, "POST", n.URL+"/v1/objects/jcounter/alice/rpc/increment", "[1,")
	if st != 400 {
		t.Fatalf("bad JSON: %d %s", st, got)
	}
	// The events record the class version.
	st, got = do(t, "GET", n.URL+"/v1/objects/jcounter/alice/history", "")
	if st != 200 || !strings.Contains(got, `"class_version":1`) {
		t.Fatalf("history: %d %s", st, got)
	}
}

const typesJS = `import { DurableObject } from "strata";
export class Types extends DurableObject {
  async store() {
    const s = this.ctx.storage;
    await s.put("d", new Date(1700000000123));
    await s.put("b", new Uint8Array([1, 2, 255]));
    await s.put({ n: 1.5, s: "x", t: true, z: null, a: [1, "two", { three: 3 }], o: { k: "v" } });
    return "ok";
  }
  async check() {
    const s = this.ctx.storage;
    const d = await s.get("d"), b = await s.get("b");
    const m = await s.get(["n", "s", "t", "z", "a", "o", "missing"]);
    const l = await s.list({ prefix: "", limit: 3 });
    const r = await s.list({ reverse: true, limit: 1 });
    return {
      date: d instanceof Date && d.getTime() === 1700000000123,
      bytes: b instanceof Uint8Array && b.length === 3 && b[2] === 255,
      n: m.get("n"), s: m.get("s"), t: m.get("t"), z: m.get("z"), a: m.get("a"), o: m.get("o"),
      missing: m.has("missing"), list: [...l.keys()], last: [...r.keys()],
    };
  }
  async tx(fail) {
    const s = this.ctx.storage;
    try {
      await s.transaction(async (txn) => {
        await txn.put("in-tx", 1);
        if (fail) throw new Error("boom");
      });
    } catch (e) { return "caught " + e.message + " " + (await s.get("in-tx")); }
    return "kept " + (await s.get("in-tx"));
  }
  async bad() { await this.ctx.storage.put("f", () => 1); }
  async rand() { return [Math.random(), crypto.randomUUID(), Date.now()]; }
}
`

func TestStorageTypes(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "types", "types.js", typesJS)
	u := n.URL + "/v1/objects/types/a/rpc/"
	if st, got := do(t, "POST", u+"store", ""); st != 200 || got != `"ok"` {
		t.Fatalf("store: %d %s", st, got)
	}
	st, got := do(t, "POST", u+"check", "")
	want := `{"date":true,"bytes":true,"n":1.5,"s":"x","t":true,"z":null,"a":[1,"two",{"three":3}],"o":{"k":"v"},"missing":false,"list":["a","b","d"],"last":["z"]}`
	if st != 200 || got != want {
		t.Fatalf("check: %d\n got %s\nwant %s", st, got, want)
	}
	if st, got := do(t, "POST", u+"tx", "[true]"); st != 200 || got != `"caught boom undefined"` {
		t.Fatalf("failed transaction: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"tx", "[false]"); st != 200 || got != `"kept 1"` {
		t.Fatalf("transaction: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"bad", ""); st != 400 {
		t.Fatalf("storing a function: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"rand", ""); st != 200 || !strings.HasPrefix(got, "[0.") {
		t.Fatalf("rand: %d %s", st, got)
	}
}

func TestBadDeploys(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	for _, c := range []struct{ name, class, file, src, msg string }{
		{"syntax", "jcounter", "c.js", "export class A extends DurableObject { increment( { }", "Expected"},
		{"typescript", "jcounter", "c.ts", "export class A { x: number = ; }", "Unexpected"},
		{"no class", "jcounter", "c.js", "export const x = 1;", "exports no class"},
		{"throws on load", "jcounter", "c.js", "throw new Error('at load'); export class A {}", "at load"},
		{"built-in name", "counter", "c.js", "export class A {}", "built-in"},
		{"bad name", "Bad_Name", "c.js", "export class A {}", "class name"},
		{"runaway load", "jcounter", "c.js", "while(true){}; export class A {}", "interrupted"},
	} {
		_, err := n.Reg.Deploy(context.Background(), jsclass.DeployRequest{Class: c.class, Filename: c.file, Source: []byte(c.src)})
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", c.name, err, c.msg)
		}
	}
	// The old version still serves.
	if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/a/rpc/increment", "[5]"); st != 200 || got != "5" {
		t.Fatalf("after bad deploys: %d %s", st, got)
	}
}

const runawayJS = `import { DurableObject } from "strata";
export class Runaway extends DurableObject {
  async spin() { while (true) {} }
  async spinLater() { await this.ctx.storage.get("x"); for (;;) {} }
  async grow() { const a = []; for (;;) a.push(new Array(1 << 16).fill("xxxxxxxx")); }
  async ok() { this.n = (this.n || 0) + 1; return this.n; }
}
`

func TestRunawayInterrupted(t *testing.T) {
	n := startJS(t, func(c *jsclass.Config) {
		c.TurnTimeout = 300 * time.Millisecond
		c.MemoryLimit = 64 << 20
	})
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	n.deploy(t, "runaway", "r.js", runawayJS)
	u := n.URL + "/v1/objects/runaway/a/rpc/"
	if st, got := do(t, "POST", u+"ok", ""); st != 200 || got != "1" {
		t.Fatalf("ok: %d %s", st, got)
	}
	for _, m := range []string{"spin", "spinLater", "grow"} {
		st, got := do(t, "POST", u+m, "")
		if st != 500 || !strings.Contains(got, "interrupted") {
			t.Fatalf("%s: %d %s", m, st, got)
		}
		// Other objects keep serving meanwhile and after.
		if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/b/rpc/increment", ""); st != 200 {
			t.Fatalf("other object after %s: %d %s", m, st, got)
		}
	}
	// The activation's JavaScript state was reset.
	if st, got := do(t, "POST", u+"ok", ""); st != 200 || got != "1" {
		t.Fatalf("ok after reset: %d %s", st, got)
	}
	if !errors.Is(jsclass.ErrLimit, jsclass.ErrLimit) {
		t.Fatal()
	}
}
