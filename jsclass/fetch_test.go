package jsclass_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/strata-objects/strata/objects"
)

// goPage is a Go class with a Fetch handler: a stub's fetch reaches it.
type goPage struct{}

func (goPage) Fetch(ctx *objects.Ctx, w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := ctx.Storage().Put("last", body); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("X-Go", "yes")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
}

const echoJS = `import { DurableObject } from "strata";
export class Echo extends DurableObject {
  async fetch(request) {
    const body = await request.text();
    await this.ctx.storage.put("last", body);
    if (request.headers.get("x-fail")) { const e = new Error("refused here"); e.status = 422; e.code = "nope"; throw e; }
    return Response.json({ method: request.method, url: request.url, h: request.headers.get("x-h"), body }, { status: 202, headers: { "x-echo": "1" } });
  }
}
`

const fetcherJS = `import { DurableObject } from "strata";
export class Fetcher extends DurableObject {
  async viaJS(name) {
    await this.ctx.storage.put("before", 1);
    const r = await this.env.JECHO.getByName(name).fetch("https://any.host/path/x?q=1", { method: "POST", headers: { "x-h": "v" }, body: "hello" });
    const j = await r.json();
    await this.ctx.storage.put("after", j.body);
    return [r.status, r.headers.get("x-echo"), r instanceof Response, j];
  }
  async viaRequest(name) {
    const r = await this.env.JECHO.get(this.env.JECHO.idFromName(name)).fetch(new Request("/rel", { method: "PUT", body: new Uint8Array([104, 105]) }));
    return (await r.json()).url + " " + (await this.env.JECHO.getByName(name).fetch("/again")).status;
  }
  async viaGo(name) {
    const r = await this.env.GOPAGE.getByName(name).fetch("https://x/go", { method: "POST", body: "to go" });
    return [r.status, r.headers.get("x-go"), await r.text()];
  }
  async refused(name) {
    try { await this.env.JECHO.getByName(name).fetch("/", { headers: { "x-fail": "1" } }); } catch (e) { return [e.code, e.status, e.message.includes("refused here")]; }
  }
  async self() {
    // Refused before it left (not among the turn's recorded calls), then
    // a call that leaves: replay pairs each answer with its call.
    let code = "";
    try { await this.env.JFETCHER.getByName(this.ctx.id.name).fetch("/"); } catch (e) { code = e.code; }
    const r = await this.env.JECHO.getByName("s").fetch("/after");
    await this.ctx.storage.put("self", code + " " + r.status);
    return code;
  }
  async bad() {
    try { await this.env.JECHO.getByName("x").fetch("ftp://x/"); } catch (e) { return e.message; }
  }
  async inTx() {
    return await this.ctx.storage.transaction(async () => {
      try { await this.env.JECHO.getByName("e").fetch("/"); } catch (e) { return e.message; }
    });
  }
  async noFetch() {
    try { await this.env.COUNTER.getByName("x").fetch("/"); } catch (e) { return e.code; }
  }
}
`

// TestStubFetch: env.X.get(id).fetch(request | url, init) reaches the
// other object's fetch handler, JavaScript or Go, and resolves to its
// Response; its errors reject; the callee's turn names the caller; replay
// gives the recorded response back and reports a changed request.
func TestStubFetch(t *testing.T) {
	pc := objects.Define("gopage", func() *goPage { return &goPage{} })
	n := startJSWith(t, []*objects.Class{pc}, nil)
	n.deploy(t, "jecho", "echo.js", echoJS)
	n.deploy(t, "jfetcher", "fetcher.js", fetcherJS)
	u := n.URL + "/v1/objects/jfetcher/f/rpc/"
	for _, c := range []struct{ method, args, want string }{
		{"viaJS", `["e"]`, `[202,"1",true,{"method":"POST","url":"https://any.host/path/x?q=1","h":"v","body":"hello"}]`},
		{"viaRequest", `["e"]`, `"https://object/rel 202"`},
		{"viaGo", `["g"]`, `[201,"yes","POST /go to go"]`},
		{"refused", `["e"]`, `["nope",422,true]`},
		{"self", ``, `"call_cycle"`},
		{"bad", ``, `"bad input: jecho fetch: URL \"ftp://x/\" is neither an http(s) URL nor a path"`},
		{"noFetch", ``, `"unknown_method"`},
		{"inTx", ``, `"call inside Storage.Transaction: jecho.fetch"`},
	} {
		if st, got := do(t, "POST", u+c.method, c.args); st != 200 || got != c.want {
			t.Fatalf("%s: %d %s, want %s", c.method, st, got, c.want)
		}
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/gopage/g/rpc/x", ""); st != 404 {
		t.Fatalf("gopage has no RPC: %d %s", st, got)
	}
	// The callee's history names the caller.
	st, got := do(t, "GET", n.URL+"/v1/objects/jecho/e/history", "")
	if st != 200 {
		t.Fatalf("history: %d %s", st, got)
	}
	first := strings.SplitN(got, "\n", 2)[0]
	var e struct {
		Turns []struct {
			Via    string                      `json:"via"`
			Caller *struct{ Class, ID string } `json:"caller"`
		} `json:"turns"`
	}
	if err := json.Unmarshal([]byte(first), &e); err != nil || len(e.Turns) != 1 || e.Turns[0].Caller == nil ||
		e.Turns[0].Caller.Class != "jfetcher" || e.Turns[0].Caller.ID != objects.IDFromName("jfetcher", "f").String() {
		t.Fatalf("jecho/e's first event: %s (%v)", first, err)
	}

	// Replay: the recorded responses come back; a changed request is
	// reported; nothing is fetched again.
	ctx := context.Background()
	rep, err := n.Reg.Replay(ctx, "jfetcher", "fetcher.js", []byte(fetcherJS), "", []string{"f"}, 0)
	if err != nil || len(rep.Diffs) != 0 || rep.Turns == 0 {
		t.Fatalf("replay of the same code: %+v %v", rep, err)
	}
	changed := strings.Replace(fetcherJS, `body: "hello"`, `body: "bye"`, 1)
	rep, err = n.Reg.Replay(ctx, "jfetcher", "fetcher.js", []byte(changed), "", []string{"f"}, 0)
	if err != nil || len(rep.Diffs) != 1 || !strings.Contains(strings.Join(rep.Diffs[0].Lines, "\n"), "call 1 jecho.fetch: the new code's arguments differ") {
		t.Fatalf("replay of changed code: %+v %v", rep, err)
	}
}
