package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/jsclass"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// jsMember is a member that serves deployed JavaScript classes.
type jsMember struct {
	*member
	reg *jsclass.Registry
}

// startJSMember is startCaller with a jsclass registry over the shared
// class store.
func startJSMember(t *testing.T, srv *log.Server, name string) *jsMember {
	t.Helper()
	jm := &jsMember{}
	var cls *log.Classes
	jm.member = startMemberWith(t, srv, name, false, func(oc *objects.Config, m *member) {
		var err error
		if cls, err = oc.Log.OpenClasses(context.Background()); err != nil {
			t.Fatal(err)
		}
		if jm.reg, err = jsclass.New(jsclass.Config{Classes: cls, Log: oc.Log, Logger: quiet}); err != nil {
			t.Fatal(err)
		}
		oc.Resolve = jm.reg.Resolve
		oc.Calls, oc.Codec = m.router, jsonCodec{}
	})
	t.Cleanup(cls.Close) // before the member stops
	return jm
}

const jsCounter = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by) {
    const v = ((await this.ctx.storage.get("value")) ?? 0) + by;
    await this.ctx.storage.put("value", v);
    return v;
  }
  async fetch(request) { return new Response("value " + ((await this.ctx.storage.get("value")) ?? 0)); }
}
`

const jsHop = `import { DurableObject } from "strata";
export class Hop extends DurableObject {
  async bump(counter, by) {
    const stub = this.env.JCOUNTER.getByName(counter);
    const v = await stub.increment(by);
    const page = await (await stub.fetch("/value")).text();
    return [v, page];
  }
  async post(counter, n) {
    for (let i = 1; i <= n; i++) this.ctx.outbox.sendWithReply(this.env.JCOUNTER.getByName(counter), "increment", [i], "replied");
    await this.ctx.storage.put("posted", n);
  }
  async replied(r) {
    const got = (await this.ctx.storage.get("replies")) ?? [];
    got.push(r.out);
    await this.ctx.storage.put("replies", got);
  }
  async replies() { return (await this.ctx.storage.get("replies")) ?? []; }
  async loop(other) {
    try { return await this.env.JHOP.getByName(other).back(this.ctx.id.name); } catch (e) { return e.code; }
  }
  async back(name) { return await this.env.JHOP.getByName(name).replies(); }
}
`

// TestJSCallsAcrossNodes: on three nodes, a JavaScript object owned by one
// node calls (RPC and fetch) a JavaScript object owned by another, sends it
// durable messages whose replies come back in order, and a cycle through
// two nodes rejects with call_cycle; the callee's event names its caller.
func TestJSCallsAcrossNodes(t *testing.T) {
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	nodes := []string{"a", "b", "c"}
	ms := make([]*jsMember, len(nodes))
	for i, n := range nodes {
		ms[i] = startJSMember(t, srv, n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range ms {
		for len(m.router.Nodes()) != len(nodes) {
			if time.Now().After(deadline) {
				t.Fatalf("view %v, want %v", m.router.Nodes(), nodes)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for class, src := range map[string]string{"jcounter": jsCounter, "jhop": jsHop} {
		if _, err := ms[0].reg.Deploy(ctx, jsclass.DeployRequest{Class: class, Filename: class + ".js", Source: []byte(src)}); err != nil {
			t.Fatal(err)
		}
	}
	on := func(class, node, prefix string) string {
		for i := 0; ; i++ {
			name := fmt.Sprint(prefix, i)
			if cluster.Owner(objects.IDFromName(class, name), nodes) == node {
				return name
			}
		}
	}
	hop, counter, hop2 := on("jhop", "a", "h"), on("jcounter", "b", "c"), on("jhop", "b", "h")
	call := func(via *jsMember, class, name, method, args string) string {
		t.Helper()
		ref, err := via.rt.RefByName(class, name)
		if err != nil {
			t.Fatal(err)
		}
		out, err := via.router.Call(ctx, ref, method, []byte(args), jsonCodec{}, objects.Cause{})
		if err != nil {
			t.Fatalf("%s/%s.%s via %s: %v", class, name, method, via.router.Status().Node, err)
		}
		return string(out)
	}

	// Asked on c, run on a, calling b.
	before := ms[1].router.Status().Stats.Served
	if got := call(ms[2], "jhop", hop, "bump", fmt.Sprintf(`[%q,5]`, counter)); got != `[5,"value 5"]` {
		t.Fatalf("bump: %s", got)
	}
	if served := ms[1].router.Status().Stats.Served - before; served < 2 {
		t.Fatalf("b served %d forwarded requests, want the call and the fetch", served)
	}
	rec, err := ms[1].log.Last(ctx, "jcounter", objects.IDFromName("jcounter", counter))
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Cause.Caller; c == nil || c.Class != "jhop" || c.ID != objects.IDFromName("jhop", hop) {
		t.Fatalf("the callee's cause names %+v, want jhop/%s", c, hop)
	}

	// Durable messages a → b, replies b → a, in send order.
	call(ms[1], "jhop", hop, "post", fmt.Sprintf(`[%q,3]`, counter))
	for {
		got := call(ms[0], "jhop", hop, "replies", "")
		if got == "[6,8,11]" {
			break
		}
		var rs []int
		if json.Unmarshal([]byte(got), &rs) != nil || len(rs) >= 3 || time.Now().After(deadline.Add(30*time.Second)) {
			t.Fatalf("replies: %s, want [6,8,11]", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A cycle a → b → a is refused at once, across the nodes.
	if got := call(ms[2], "jhop", hop, "loop", fmt.Sprintf(`[%q]`, hop2)); !strings.Contains(got, "call_cycle") {
		t.Fatalf("loop: %s", got)
	}
}
