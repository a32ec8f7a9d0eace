package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/gateway"
)

// TestOutboxRoutes: a durable transfer (account.send-transfer) is pending
// in the sender's outbox until it is deposited and answered; history shows
// the message on both sides; bad input sends nothing; the routes refuse
// what they do not serve.
func TestOutboxRoutes(t *testing.T) {
	f := startWith(t, func(c *gateway.Config) { c.Outbox = c.Backend.(gateway.OutboxAdmin) })
	f.post("/v1/objects/account/a/rpc/deposit", `{"amount":100}`)
	before := f.events("account", "a")
	for _, body := range []string{`{"to":"b","amount":0}`, `{"to":"a","amount":5}`, `{"to":"","amount":5}`} {
		if code, resp, _ := f.do(http.MethodPost, "/v1/objects/account/a/rpc/send-transfer", body); code != http.StatusBadRequest {
			t.Fatalf("send-transfer %s: %d %s, want 400", body, code, resp)
		}
	}
	if got := f.events("account", "a"); got != before {
		t.Fatalf("refused transfers wrote: %d events, had %d", got, before)
	}
	f.post("/v1/objects/account/a/rpc/send-transfer", `{"to":"b","amount":30}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, counts, _ := f.do(http.MethodPost, "/v1/objects/account/a/rpc/counts", "")
		_, out, _ := f.do(http.MethodGet, "/v1/objects/account/a/outbox", "")
		if strings.Contains(counts, `"credited":1`) && strings.TrimSpace(out) == `{"messages":[]}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled after 30 s: counts %s, outbox %s", counts, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, b, _ := f.do(http.MethodPost, "/v1/objects/account/b/rpc/balance", ""); !strings.Contains(b, `"balance":30`) {
		t.Fatalf("b's balance: %s", b)
	}
	_, ha, _ := f.do(http.MethodGet, "/v1/objects/account/a/history", "")
	_, hb, _ := f.do(http.MethodGet, "/v1/objects/account/b/history", "")
	if !strings.Contains(ha, `"sends":[{"class":"account"`) || !strings.Contains(ha, `"settles":[{"version":`) || !strings.Contains(ha, `"kind":"reply"`) {
		t.Fatalf("a's history shows no message, settle or reply:\n%s", ha)
	}
	if !strings.Contains(hb, `"kind":"message"`) {
		t.Fatalf("b's history shows no message applied:\n%s", hb)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/v1/objects/account/a/outbox", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/objects/account/a/outbox/x", http.StatusNotFound},
		{http.MethodGet, "/v1/objects/nope/a/outbox", http.StatusNotFound},
	} {
		if code, body, _ := f.do(c.method, c.path, ""); code != c.want || !strings.Contains(body, `"error"`) {
			t.Fatalf("%s %s: %d %s, want %d with an error body", c.method, c.path, code, body, c.want)
		}
	}
	if code, body, _ := f.do(http.MethodGet, "/v1/outbox/dead", ""); code != http.StatusOK || strings.TrimSpace(body) != `{"messages":[]}` {
		t.Fatalf("dead letters: %d %s", code, body)
	}
	if code, body, _ := f.do(http.MethodPost, "/v1/outbox/dead/retry", ""); code != http.StatusOK || !strings.Contains(body, `"retried":0`) {
		t.Fatalf("retry: %d %s", code, body)
	}
}
