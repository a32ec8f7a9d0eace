package jsclass_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/gateway"
)

// TestClassRoutes: deploy, list, rollback over HTTP, with bad input
// refused with a 4xx JSON error and nothing changed.
func TestClassRoutes(t *testing.T) {
	n := startJS(t, nil)
	u := n.URL + "/v1/classes/jcounter"
	st, got := do(t, "PUT", u, `{"source":`+quoteJSON(counterTS)+`,"filename":"counter.ts"}`)
	if st != 201 || !strings.Contains(got, `"version":1`) || !strings.Contains(got, `"export":"Counter"`) {
		t.Fatalf("deploy: %d %s", st, got)
	}
	for _, c := range []struct {
		method, url, body string
		status            int
		code              string
	}{
		{"PUT", u, `{"source":"export class {","filename":"c.js"}`, 400, "bad_input"},
		{"PUT", u, `{"source":"x: number = ;","filename":"c.ts"}`, 400, "bad_input"},
		{"PUT", u, `{"source":"export const a = 1"}`, 400, "bad_input"},
		{"PUT", u, `not json`, 400, "bad_input"},
		{"PUT", u, `{"source":"export class A {}","turn_timeout":"forever"}`, 400, "bad_input"},
		{"PUT", n.URL + "/v1/classes/Bad_Name", `{"source":"export class A {}"}`, 400, "invalid_class"},
		{"PUT", n.URL + "/v1/classes/kv", `{"source":"export class A {}"}`, 400, "bad_input"},
		{"POST", u + "/rollback", `{"version":9}`, 404, "unknown_class_version"},
		{"POST", u + "/rollback", `{"version":0}`, 400, "bad_input"},
		{"GET", n.URL + "/v1/classes/nosuch", ``, 404, "unknown_class_version"},
		{"POST", n.URL + "/v1/objects/nosuch/a/rpc/x", ``, 404, "unknown_class"},
	} {
		st, got := do(t, c.method, c.url, c.body)
		if st != c.status || errCode(t, got) != c.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.url, c.body, st, got, c.status, c.code)
		}
	}
	if vs := n.Reg.ClassVersions("jcounter"); len(vs) != 1 {
		t.Fatalf("bad deploys changed the versions: %d", len(vs))
	}
	// v2, then a rollback to v1 as v3.
	v2 := strings.Replace(counterTS, "+ by;", "+ by * 10;", 1)
	if st, got := do(t, "PUT", u, `{"source":`+quoteJSON(v2)+`,"filename":"counter.ts","turn_timeout":"2s"}`); st != 201 || !strings.Contains(got, `"version":2`) || !strings.Contains(got, `"turn_timeout_ms":2000`) {
		t.Fatalf("deploy v2: %d %s", st, got)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/a/rpc/increment", "[1]"); st != 200 || got != "10" {
		t.Fatalf("v2: %d %s", st, got)
	}
	if st, got := do(t, "POST", u+"/rollback", `{"version":1}`); st != 201 || !strings.Contains(got, `"version":3`) || !strings.Contains(got, `"rollback_of":1`) {
		t.Fatalf("rollback: %d %s", st, got)
	}
	if st, got := do(t, "POST", n.URL+"/v1/objects/jcounter/a/rpc/increment", "[1]"); st != 200 || got != "11" {
		t.Fatalf("after rollback: %d %s", st, got)
	}
	if st, got := do(t, "GET", n.URL+"/v1/classes", ""); st != 200 || !strings.Contains(got, `"version":3,"versions":3`) {
		t.Fatalf("list: %d %s", st, got)
	}
	st, got = do(t, "GET", n.URL+"/v1/objects/jcounter/a/history", "")
	if st != 200 || !strings.Contains(got, `"class_version":2`) || !strings.Contains(got, `"class_version":3`) {
		t.Fatalf("history: %d %s", st, got)
	}
}

// TestClassRoutesNeedAdmin: with auth on, a call token cannot deploy or
// roll back, a read token can list, an admin token can deploy.
func TestClassRoutesNeedAdmin(t *testing.T) {
	n := startJS(t, nil)
	tokens, err := n.Log.OpenTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tokens.Close)
	secrets := map[string]string{}
	for _, scope := range []string{"call", "read", "admin"} {
		rec, secret, err := gateway.NewToken("", scope, []string{scope}, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := tokens.CreateToken(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		secrets[scope] = secret
	}
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, Classes: n.Reg, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	send := func(method, path, token, body string) int {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"source":` + quoteJSON(counterTS) + `,"filename":"counter.ts"}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"PUT", "/v1/classes/jcounter", "", body, 401},
		{"PUT", "/v1/classes/jcounter", secrets["call"], body, 403},
		{"PUT", "/v1/classes/jcounter", secrets["read"], body, 403},
		{"GET", "/v1/classes", secrets["call"], "", 403},
		{"GET", "/v1/classes", secrets["read"], "", 200},
		{"PUT", "/v1/classes/jcounter", secrets["admin"], body, 201},
		{"POST", "/v1/classes/jcounter/rollback", secrets["call"], `{"version":1}`, 403},
		{"POST", "/v1/classes/jcounter/replay", secrets["read"], body, 403},
		{"POST", "/v1/objects/jcounter/a/rpc/increment", secrets["call"], "[1]", 200},
	} {
		if got := send(c.method, c.path, c.token, c.body); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
}

const alarmJS = `import { DurableObject } from "strata";
export class Reminder extends DurableObject {
  async arm(ms) { await this.ctx.storage.setAlarm(Date.now() + ms); return await this.ctx.storage.getAlarm() !== null; }
  async alarm(info) {
    const n = ((await this.ctx.storage.get("fired")) ?? 0) + 1;
    await this.ctx.storage.put("fired", n);
    console.log("alarm fired", n, info.retryCount);
  }
  async fired() { return [(await this.ctx.storage.get("fired")) ?? 0, await this.ctx.storage.getAlarm()]; }
}
`

func TestAlarm(t *testing.T) {
	n := startJS(t, nil)
	n.deploy(t, "reminder", "r.js", alarmJS)
	u := n.URL + "/v1/objects/reminder/a/rpc/"
	if st, got := do(t, "POST", u+"arm", "[50]"); st != 200 || got != "true" {
		t.Fatalf("arm: %d %s", st, got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, got := do(t, "POST", u+"fired", "")
		if st == 200 && got == "[1,null]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alarm did not fire: %d %s", st, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
