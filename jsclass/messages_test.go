package jsclass_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

const senderJS = `import { DurableObject } from "strata";
export class Sender extends DurableObject {
  async go(n) {
    const log = this.env.JLOG.getByName("t");
    for (let i = 1; i <= n; i++) this.ctx.outbox.send(log, "add", "m" + i);                    // JS → JS
    this.ctx.outbox.sendWithReply(this.env.COUNTER.getByName("gc"), "increment", [{ by: n }], "replied"); // JS → Go, with a reply
    this.ctx.outbox.sendWithReply(log, "add", ["r"], "replied");                               // JS → JS, with a reply
    this.ctx.outbox.sendWithReply(log, "nope", [], "replied");                                 // a refusal comes back as the reply
    await this.ctx.storage.put("sent", n);
    return "sent";
  }
  async replied(reply) {
    const rs = (await this.ctx.storage.get("replies")) ?? [];
    rs.push(reply.error ? reply.method + " " + reply.error.code : reply.method + " " + JSON.stringify(reply.out));
    await this.ctx.storage.put("replies", rs);
  }
  async replies() { return (await this.ctx.storage.get("replies")) ?? []; }
  async failing() { this.ctx.outbox.send(this.env.JLOG.getByName("t"), "add", "never"); throw new Error("after the send"); }
  async inFailedTx() {
    try {
      await this.ctx.storage.transaction(async () => { this.ctx.outbox.send(this.env.JLOG.getByName("t"), "add", "never in tx"); throw new Error("undo"); });
    } catch (e) { return e.message; }
  }
  async bad(kind) {
    try {
      if (kind === "reply") this.ctx.outbox.sendWithReply(this.env.JLOG.getByName("t"), "add", [], "noSuchMethod");
      if (kind === "args") this.ctx.outbox.sendWithReply(this.env.JLOG.getByName("t"), "add", "x", "replied");
      if (kind === "go") this.ctx.outbox.send(this.env.COUNTER.getByName("gc"), "increment", 1, 2);
      if (kind === "notstub") this.ctx.outbox.send({ id: this.env.JLOG.idFromName("t") }, "add", 1);
    } catch (e) { return e.message; }
    return "no error";
  }
  // A target's own method named send is an RPC method of its stub.
  async rpcSend(x) { return await this.env.JLOG.getByName("t").send(x); }
}
`

const logJS = `import { DurableObject } from "strata";
export class Log extends DurableObject {
  async add(x) { const l = (await this.ctx.storage.get("l")) ?? []; l.push(x); await this.ctx.storage.put("l", l); return l.length; }
  async list() { return (await this.ctx.storage.get("l")) ?? []; }
  async send(x) { return "rpc send " + x; }
}
`

// TestMessages: a JavaScript class sends durable messages to a JavaScript
// and a Go class (ctx.outbox.send, sendWithReply); they are applied once,
// in send order; the replies (an answer, a refusal) run the sender's reply
// method, once each; a failed turn or transaction sends nothing; replay
// compares the messages a turn sends.
func TestMessages(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "jlog", "log.js", logJS)
	n.deploy(t, "jsender", "sender.js", senderJS)
	u := n.URL + "/v1/objects/jsender/s/rpc/"
	if st, got := do(t, "POST", u+"failing", ""); st != 500 || !strings.Contains(got, "after the send") {
		t.Fatalf("failing: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"inFailedTx", ""); st != 200 || got != `"undo"` {
		t.Fatalf("inFailedTx: %d %s", st, got)
	}
	for kind, want := range map[string]string{
		"reply":   `has no RPC method \"noSuchMethod\"`,
		"args":    "args is an array",
		"go":      "a Go class's method takes one argument, not 2",
		"notstub": "the first argument is a stub",
	} {
		if st, got := do(t, "POST", u+"bad", quoteJSON(kind)); st != 200 || !strings.Contains(got, want) {
			t.Fatalf("bad %s: %d %s, want %q", kind, st, got, want)
		}
	}
	n.deploy(t, "jctor", "ctor.js", `export class C extends DurableObject {
  constructor(ctx, env) { super(ctx, env); try { ctx.outbox.sendWithReply(env.JLOG.getByName("t"), "add", [], "err"); } catch (e) { this.e = e.message; } }
  async err() { return this.e; }
}`)
	if st, got := do(t, "POST", n.URL+"/v1/objects/jctor/c/rpc/err", ""); st != 200 || !strings.Contains(got, "sendWithReply in the constructor") {
		t.Fatalf("sendWithReply in a constructor: %d %s", st, got)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/jsender/s2/rpc/rpcSend", `["x"]`); st != 200 || got != `"rpc send x"` {
		t.Fatalf("a method named send through a stub: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"go", "[3]"); st != 200 || got != `"sent"` {
		t.Fatalf("go: %d %s", st, got)
	}
	wantReplies := `["increment {\"value\":3}","add 4","nope unknown_method"]`
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, got := do(t, "POST", u+"replies", "")
		if got == wantReplies {
			break
		}
		if time.Now().After(deadline) || len(got) > len(wantReplies) {
			t.Fatalf("replies: %s, want %s", got, wantReplies)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every message was settled before the last reply: each applied once,
	// in order, and none of the failed turn or transaction.
	if st, got := do(t, "POST", n.URL+"/v1/objects/jlog/t/rpc/list", ""); st != 200 || got != `["m1","m2","m3","r"]` {
		t.Fatalf("jlog/t: %d %s", st, got)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/counter/gc/rpc/increment", `{"by":0}`); st != 200 || got != `{"value":3}` {
		t.Fatalf("counter/gc: %d %s", st, got)
	}

	// Replay: the same code sends the same messages (and replays the
	// replies from their recorded input); other messages are reported.
	ctx := context.Background()
	rep, err := n.Reg.Replay(ctx, "jsender", "sender.js", []byte(senderJS), "", []string{"s"}, 0)
	if err != nil || len(rep.Diffs) != 0 || rep.Turns != 4 {
		t.Fatalf("replay of the same code: %+v %v", rep, err)
	}
	changed := strings.Replace(senderJS, `this.ctx.outbox.send(log, "add", "m" + i)`, `this.ctx.outbox.send(log, "add", "n" + i)`, 1)
	rep, err = n.Reg.Replay(ctx, "jsender", "sender.js", []byte(changed), "", []string{"s"}, 0)
	if err != nil || len(rep.Diffs) != 1 || rep.Diffs[0].Method != "go" {
		t.Fatalf("replay of changed code: %+v %v", rep, err)
	}
	if lines := strings.Join(rep.Diffs[0].Lines, "\n"); !strings.Contains(lines, `message 1: recorded jlog/`) || !strings.Contains(lines, `.add("[\"n1\"]")`) {
		t.Fatalf("replay of changed code: %s", lines)
	}
}
