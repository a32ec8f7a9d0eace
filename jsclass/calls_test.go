package jsclass_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/objects"
)

// relay is a Go class that calls any object's method: Go → JavaScript.
type relay struct{}

type relayInput struct {
	Class  string          `json:"class"`
	Name   string          `json:"name"`
	Method string          `json:"method"`
	Args   json.RawMessage `json:"args"`
}

func (relay) Forward(ctx *objects.Ctx, in relayInput) (json.RawMessage, error) {
	var out json.RawMessage
	err := ctx.Object(in.Class, in.Name).Call(ctx, in.Method, in.Args, &out)
	return out, err
}

// Post sends the same as a durable message (objects.Stub.Send).
func (relay) Post(ctx *objects.Ctx, in relayInput) error {
	return ctx.Object(in.Class, in.Name).Send(in.Method, in.Args)
}

// TestMessageToJavaScript: a Go class's durable message runs a method of
// a deployed JavaScript class (Send does not know a deployed class's
// methods: its code answers).
func TestMessageToJavaScript(t *testing.T) {
	rc := objects.Define("jrelay", func() *relay { return &relay{} })
	n := startJSWith(t, []*objects.Class{rc}, nil)
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	if st, got := do(t, "POST", n.URL+"/v1/objects/jrelay/r/rpc/post", `{"class":"jcounter","name":"m","method":"increment","args":[4]}`); st != 200 {
		t.Fatalf("post: %d %s", st, got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// increment by 0 reads the value without changing it.
		st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/m/rpc/increment", `[0]`)
		if st == 200 && got == "4" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message did not reach jcounter/m: %d %s", st, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const callerJS = `import { DurableObject } from "strata";
export class Caller extends DurableObject {
  async bump(name, by) {
    await this.ctx.storage.put("before", by);
    const v = await this.env.JCOUNTER.getByName(name).increment(by);
    const id = this.env.JCOUNTER.idFromName(name);
    const again = await this.env.JCOUNTER.get(id).increment(1);
    await this.ctx.storage.put("last", again);
    return [v, again, id.toString().length, id.name, "JCOUNTER" in this.env, this.env.lowercase === undefined];
  }
  async goCounter(name, by) {
    const r = await this.env.COUNTER.getByName(name).increment({ by });
    await this.ctx.storage.put("go", r.value);
    return r;
  }
  async ping(from) { return "pong " + from; }
  async deny() { const e = new Error("not you"); e.status = 403; e.code = "forbidden"; throw e; }
  async askDeny(other, uncaught) {
    try { await this.env.JCALLER.getByName(other).deny(); } catch (e) { if (uncaught) throw e; return [e.code, e.status, e.message]; }
  }
  async loop(other) {
    try { return await this.env.JCALLER.getByName(other).back(this.ctx.id.name); }
    catch (e) { return { code: e.code, message: e.message }; }
  }
  async back(name) { return await this.env.JCALLER.getByName(name).ping("back"); }
  async self() { return await this.env.JCALLER.getByName(this.ctx.id.name).ping("me"); }
  async refused() {
    try { await this.env.COUNTER.getByName("x").increment({ by: "two" }); } catch (e) { return [e.code, e.status]; }
  }
  async unknown() {
    try { await this.env.NO_SUCH_CLASS.getByName("x").go(); } catch (e) { return [e.code, e.message.includes("unknown class")]; }
  }
  async inTx() {
    return await this.ctx.storage.transaction(async () => {
      try { await this.env.JCOUNTER.getByName("t").increment(1); } catch (e) { return e.message; }
    });
  }
}
`

// TestCalls: a JavaScript class calls JavaScript and Go classes through
// env bindings, a Go class calls a JavaScript class, errors of the callee
// (call_cycle, a refusal) reject the caller's promise, and the callee's
// history names its caller.
func TestCalls(t *testing.T) {
	rc := objects.Define("jrelay", func() *relay { return &relay{} })
	n := startJSWith(t, []*objects.Class{rc}, nil)
	n.deploy(t, "jcounter", "counter.ts", counterTS)
	n.deploy(t, "jcaller", "caller.js", callerJS)
	u := n.URL + "/v1/objects/jcaller/a/rpc/"

	// JS → JS.
	if st, got := do(t, "POST", u+"bump", `["alice",5]`); st != 200 || got != `[5,6,64,"alice",true,true]` {
		t.Fatalf("bump: %d %s", st, got)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/alice/rpc/increment", `[0]`); st != 200 || got != "6" {
		t.Fatalf("jcounter after the calls: %d %s", st, got)
	}
	// JS → Go.
	if st, got := do(t, "POST", u+"goCounter", `["g",7]`); st != 200 || got != `{"value":7}` {
		t.Fatalf("goCounter: %d %s", st, got)
	}
	// Go → JS.
	if st, got := do(t, "POST", n.URL+"/v1/objects/jrelay/r/rpc/forward", `{"class":"jcounter","name":"alice","method":"increment","args":[10]}`); st != 200 || got != "16" {
		t.Fatalf("relay: %d %s", st, got)
	}
	// A cycle: a → b.back → a.ping is refused in b; a's promise rejects.
	st, got := do(t, "POST", u+"loop", `"b"`)
	if st != 200 || !strings.Contains(got, `"code":"call_cycle"`) {
		t.Fatalf("loop: %d %s", st, got)
	}
	// Uncaught, the callee's error is the turn's: 409 call_cycle.
	st, got = do(t, "POST", u+"self", ``)
	if st != 409 || errCode(t, got) != "call_cycle" {
		t.Fatalf("self: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"askDeny", `["c",false]`); st != 200 || !strings.HasPrefix(got, `["forbidden",403,"`) || !strings.Contains(got, "not you") {
		t.Fatalf("askDeny: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"askDeny", `["c",true]`); st != 403 || errCode(t, got) != "forbidden" {
		t.Fatalf("askDeny uncaught: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"refused", ``); st != 200 || got != `["bad_input",null]` {
		t.Fatalf("refused: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"unknown", ``); st != 200 || got != `["error",true]` {
		t.Fatalf("unknown class: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"inTx", ``); st != 200 || !strings.Contains(got, "call inside Storage.Transaction") {
		t.Fatalf("inTx: %d %s", st, got)
	}

	// The callee's history names its callers: jcaller/a, then jrelay/r.
	st, got = do(t, "GET", n.URL+"/v1/objects/jcounter/alice/history", "")
	if st != 200 {
		t.Fatalf("history: %d %s", st, got)
	}
	var callers []string
	for _, line := range strings.Split(got, "\n") {
		var e struct {
			Turns []struct {
				Caller *struct{ Class, ID string } `json:"caller"`
			} `json:"turns"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("history line %s: %v", line, err)
		}
		for _, tn := range e.Turns {
			if tn.Caller != nil {
				callers = append(callers, tn.Caller.Class+"/"+tn.Caller.ID[:8])
			} else {
				callers = append(callers, "-")
			}
		}
	}
	a, r := objects.IDFromName("jcaller", "a").String()[:8], objects.IDFromName("jrelay", "r").String()[:8]
	if want := []string{"jcaller/" + a, "jcaller/" + a, "-", "jrelay/" + r}; strings.Join(callers, " ") != strings.Join(want, " ") {
		t.Fatalf("callers in jcounter/alice's history: %v, want %v\n%s", callers, want, got)
	}

	// Replay of the caller: the same code replays with the recorded
	// answers, calling nothing (the counter does not move); code that calls
	// with other arguments is reported.
	rep, err := n.Reg.Replay(context.Background(), "jcaller", "caller.js", []byte(callerJS), "", []string{"a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Skipped: the uncaught askDeny, a turn that failed after its call
	// (its record is the continued part's; it has no answer to compare).
	if len(rep.Diffs) != 0 || rep.Turns != 5 || rep.Skipped != 1 {
		t.Fatalf("replay of the same code: %+v", rep)
	}
	changed := strings.Replace(callerJS, "getByName(name).increment(by)", "getByName(name).increment(by * 2)", 1)
	rep, err = n.Reg.Replay(context.Background(), "jcaller", "caller.js", []byte(changed), "", []string{"a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diffs) != 1 || !strings.Contains(strings.Join(rep.Diffs[0].Lines, "\n"), "call 1 jcounter.increment: the new code's arguments differ") {
		t.Fatalf("replay of changed code: %+v", rep)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/alice/rpc/increment", `[0]`); st != 200 || got != "16" {
		t.Fatalf("jcounter after the replays: %d %s (a replay called it)", st, got)
	}
}
