package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// TestCallsOverHTTP: the account class's transfer calls another account;
// the callee's history names the caller, the caller's records the call; a
// refused deposit is refunded; a cycle is 409 call_cycle.
func TestCallsOverHTTP(t *testing.T) {
	f := start(t)
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/deposit", `{"amount":100}`); code != 200 {
		t.Fatalf("deposit: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/transfer", `{"to":"bob","amount":30}`); code != 200 || body != `{"balance":70}` {
		t.Fatalf("transfer: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/bob/rpc/balance", ``); code != 200 || body != `{"balance":30}` {
		t.Fatalf("bob: %d %s", code, body)
	}
	// bob's deposit names alice's event that records the call.
	_, hist, _ := f.do("GET", "/v1/objects/account/bob/history", "")
	var line struct {
		Turns []struct {
			Caller *struct {
				Class   string `json:"class"`
				ID      string `json:"id"`
				Version uint64 `json:"version"`
			} `json:"caller"`
		} `json:"turns"`
	}
	if err := json.Unmarshal([]byte(strings.Split(hist, "\n")[0]), &line); err != nil {
		t.Fatal(err)
	}
	alice := objects.IDFromName("account", "alice").String()
	if c := line.Turns[0].Caller; c == nil || c.Class != "account" || c.ID != alice || c.Version != 3 {
		t.Fatalf("bob's history %s: want the caller alice at v3", hist)
	}
	_, hist, _ = f.do("GET", "/v1/objects/account/alice/history?from=3", "")
	if !strings.Contains(hist, `"calls":[{"class":"account","id":"`+objects.IDFromName("account", "bob").String()+`","method":"deposit"}]`) {
		t.Fatalf("alice's v3 %s: want the call to bob", hist)
	}
	// A deposit bob refuses (his balance would pass the limit) is refunded.
	if code, body, _ := f.do("POST", "/v1/objects/account/bob/rpc/deposit", `{"amount":1125899906842594}`); code != 200 {
		t.Fatalf("bob to his limit: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/transfer", `{"to":"bob","amount":1}`); code != 409 || !strings.Contains(body, `"balance_limit"`) {
		t.Fatalf("transfer bob refuses: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/transfer", `{"to":"","amount":1}`); code != 400 || !strings.Contains(body, `"invalid_name"`) {
		t.Fatalf("transfer to an invalid name: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/transfer", `{"to":"carol","amount":1000}`); code != 409 || !strings.Contains(body, `"insufficient_funds"`) {
		t.Fatalf("overdraft: %d %s", code, body)
	}
	if code, body, _ := f.do("POST", "/v1/objects/account/alice/rpc/balance", ``); code != 200 || body != `{"balance":70}` {
		t.Fatalf("alice after refusals: %d %s", code, body)
	}
}

// looper calls the object its input names, which calls back: a cycle.
type looper struct{}

type LoopIn struct {
	To string `json:"to"`
}

func (*looper) Ping(c *objects.Ctx, in LoopIn) error {
	if in.To == "" {
		return nil
	}
	return c.Object("looper", in.To).Call(c, "ping", LoopIn{To: c.Name()}, nil)
}

func TestCallCycleOverHTTP(t *testing.T) {
	f := startClasses(t, objects.Define("looper", func() *looper { return &looper{} }))
	code, body, _ := f.do("POST", "/v1/objects/looper/a/rpc/ping", `{"to":"b"}`)
	if code != http.StatusConflict || !strings.Contains(body, `"code":"call_cycle"`) {
		t.Fatalf("a→b→a: %d %s, want 409 call_cycle", code, body)
	}
	for _, n := range []string{"a", "b"} {
		if code, body, _ := f.do("POST", "/v1/objects/looper/"+n+"/rpc/ping", `{}`); code != 200 {
			t.Fatalf("%s after the cycle: %d %s", n, code, body)
		}
	}
}

func startClasses(t *testing.T, extra ...*objects.Class) *fixture {
	n := testnode.Start(t, append(classes.All(), extra...), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return &fixture{t: t, node: n, url: srv.URL}
}
