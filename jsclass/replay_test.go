package jsclass_test

import (
	"context"
	"strings"
	"testing"
)

const counterV2Write = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by: number = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by * 2;
    await this.ctx.storage.put("value", v);
    return v - by;
  }
}
`

const counterV2Response = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by: number = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by;
    await this.ctx.storage.put("value", v);
    return { value: v };
  }
}
`

// A class whose turns observe time and randomness: replay gives them back.
const stampJS = `import { DurableObject } from "strata";
export class Stamp extends DurableObject {
  async stamp() {
    const id = crypto.randomUUID(), r = Math.random(), t = Date.now();
    await this.ctx.storage.put("last", { id, r, t, d: new Date() });
    return id;
  }
}
`

func TestReplay(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	n.deploy(t, "stamp", "stamp.js", stampJS)
	for _, obj := range []string{"a", "b"} {
		for i := 0; i < 3; i++ {
			if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/"+obj+"/rpc/increment", "[2]"); st != 200 {
				t.Fatalf("increment: %d %s", st, got)
			}
		}
		if st, got := do(t, "POST", n.URL+"/v1/objects/stamp/"+obj+"/rpc/stamp", ""); st != 200 {
			t.Fatalf("stamp: %d %s", st, got)
		}
	}
	ctx := context.Background()
	// Identical code: no difference, on named and on sampled objects.
	rep, err := n.Reg.Replay(ctx, "jcounter", "counter.ts", []byte(counterTS), "", []string{"a"}, 0)
	if err != nil || rep.Turns != 3 || len(rep.Diffs) != 0 {
		t.Fatalf("identical code: %+v %v", rep, err)
	}
	rep, err = n.Reg.Replay(ctx, "jcounter", "counter.ts", []byte(counterTS), "", nil, 10)
	if err != nil || rep.Objects != 2 || rep.Turns != 6 || len(rep.Diffs) != 0 {
		t.Fatalf("identical code, sampled: %+v %v", rep, err)
	}
	rep, err = n.Reg.Replay(ctx, "stamp", "stamp.js", []byte(stampJS), "", []string{"a", "b"}, 0)
	if err != nil || rep.Turns != 2 || len(rep.Diffs) != 0 {
		t.Fatalf("time and randomness are not given back: %+v %v", rep, err)
	}
	// A changed write (and so a changed answer).
	rep, err = n.Reg.Replay(ctx, "jcounter", "counter.ts", []byte(counterV2Write), "", []string{"a"}, 0)
	if err != nil || rep.Turns != 3 || len(rep.Diffs) != 3 {
		t.Fatalf("changed write: %+v %v", rep, err)
	}
	d := rep.Diffs[0]
	if d.Version != 1 || d.Method != "increment" || d.ClassVersion != 1 || !strings.Contains(strings.Join(d.Lines, "\n"), `write "value": recorded "2", new "4"`) {
		t.Fatalf("changed write: first diff %+v", d)
	}
	// A changed answer only.
	rep, err = n.Reg.Replay(ctx, "jcounter", "counter.ts", []byte(counterV2Response), "", []string{"b"}, 0)
	if err != nil || len(rep.Diffs) != 3 || len(rep.Diffs[1].Lines) != 1 || rep.Diffs[1].Lines[0] != `response: recorded "4", new "{\"value\":4}"` {
		t.Fatalf("changed response: %+v %v", rep, err)
	}
	// Over HTTP, with bad input refused.
	st, got := do(t, "POST", n.URL+"/v1/classes/jcounter/replay", `{"source":`+quoteJSON(counterV2Write)+`,"filename":"c.ts","objects":["a"]}`)
	if st != 200 || !strings.Contains(got, `"turns":3`) || !strings.Contains(got, `write \"value\"`) {
		t.Fatalf("replay over HTTP: %d %s", st, got)
	}
	for _, body := range []string{`{"source":"export class {"}`, `{"source":"x","objects":["a/b"]}`, `nope`} {
		if st, got := do(t, "POST", n.URL+"/v1/classes/jcounter/replay", body); st != 400 {
			t.Fatalf("replay %s: %d %s", body, st, got)
		}
	}
	if st, got := do(t, "POST", n.URL+"/v1/classes/nosuch/replay", `{"source":"export class A {}"}`); st != 404 {
		t.Fatalf("replay of an unknown class: %d %s", st, got)
	}
}

const ledgerJS = `import { DurableObject } from "strata";
export class Ledger extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS entry(id INTEGER PRIMARY KEY, who TEXT, amount INTEGER)");
  }
  total() { return this.ctx.storage.sql.exec("SELECT sum(amount) AS t FROM entry").one().t; }
  async add(who, amount) {
    this.ctx.storage.sql.exec("INSERT INTO entry(who, amount) VALUES (?, ?)", who, amount);
    await this.ctx.storage.put("total", this.total());
    return this.total();
  }
  async fix(who, amount) {
    await this.ctx.storage.transaction(async () => {
      this.ctx.storage.sql.exec("UPDATE entry SET amount = ? WHERE who = ?", amount, who);
    });
    try {
      await this.ctx.storage.transaction(async () => { this.ctx.storage.sql.exec("DELETE FROM entry"); throw new Error("undo"); });
    } catch (e) {}
    return this.total();
  }
  async addAndCall(who, amount) {
    // A call between two statements: the turn spans two events.
    this.ctx.storage.sql.exec("INSERT INTO entry(who, amount) VALUES (?, ?)", who, amount);
    const c = await this.env.JCOUNTER.getByName("n").increment(amount);
    this.ctx.storage.sql.exec("UPDATE entry SET amount = amount + ? WHERE who = ?", c, who);
    return this.total();
  }
}
`

// TestReplaySQL: turns that used SQL storage are replayed against the
// object's SQL state as of their event (rebuilt in memory from the log),
// and their row changes compared: identical code reports nothing, code
// that writes another row reports that turn, with both rows.
func TestReplaySQL(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "ledger", "ledger.js", ledgerJS)
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	u := n.URL + "/v1/objects/ledger/l/rpc/"
	for _, c := range []struct{ method, args, want string }{
		{"add", `["ann",10]`, "10"},
		{"add", `["bob",5]`, "15"},
		{"fix", `["bob",7]`, "17"},
		{"add", `["cy",1]`, "18"},
		{"addAndCall", `["dee",2]`, "22"},
	} {
		if st, got := do(t, "POST", u+c.method, c.args); st != 200 || got != c.want {
			t.Fatalf("%s %s: %d %s, want %s", c.method, c.args, st, got, c.want)
		}
	}
	ctx := context.Background()
	rep, err := n.Reg.Replay(ctx, "ledger", "ledger.js", []byte(ledgerJS), "", []string{"l"}, 0)
	if err != nil || rep.Turns != 5 || rep.Skipped != 0 || len(rep.Diffs) != 0 {
		t.Fatalf("identical code: %+v %v", rep, err)
	}
	changed := strings.Replace(ledgerJS, "SET amount = ? WHERE", "SET amount = ? + 1 WHERE", 1)
	rep, err = n.Reg.Replay(ctx, "ledger", "ledger.js", []byte(changed), "", []string{"l"}, 0)
	if err != nil || rep.Turns != 5 || len(rep.Diffs) != 1 {
		t.Fatalf("changed code: %+v %v", rep, err)
	}
	d := rep.Diffs[0]
	want := []string{
		`response: recorded "17", new "18"`,
		`sql 1: recorded table entry: rowid=2 amount 5 → 7, new table entry: rowid=2 amount 5 → 8`,
	}
	if d.Version != 3 || d.Method != "fix" || strings.Join(d.Lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changed code: %+v, want the lines\n%s", d, strings.Join(want, "\n"))
	}
	// The turn split by its call: replayed whole, from before its insert.
	changed = strings.Replace(ledgerJS, "amount + ? WHERE", "amount + ? * 2 WHERE", 1)
	rep, err = n.Reg.Replay(ctx, "ledger", "ledger.js", []byte(changed), "", []string{"l"}, 0)
	if err != nil || rep.Turns != 5 || len(rep.Diffs) != 1 || rep.Diffs[0].Method != "addAndCall" {
		t.Fatalf("changed code after the call: %+v %v", rep, err)
	}
	want = []string{
		`response: recorded "22", new "24"`,
		`sql 2: recorded table entry: rowid=4 amount 2 → 4, new table entry: rowid=4 amount 2 → 6`,
	}
	if got := strings.Join(rep.Diffs[0].Lines, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("changed code after the call:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}
