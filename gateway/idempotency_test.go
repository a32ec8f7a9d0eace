package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// doKeyed sends a request with Idempotency-Key headers (none if keys is
// empty), each on a new connection, as a client retrying after a lost
// answer would.
func (f *fixture) doKeyed(method, path, body string, keys ...string) (int, string, http.Header) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Close = true
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, strings.TrimSpace(b.String()), resp.Header
}

func (f *fixture) version(class, name string) uint64 {
	f.t.Helper()
	rec, err := f.node.Log.Last(context.Background(), class, objects.IDFromName(class, name))
	if err != nil {
		return 0
	}
	return rec.Event.Version
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

func TestIdempotencyKeyRPC(t *testing.T) {
	f := start(t)
	const inc = "/v1/objects/counter/alice/rpc/increment"
	for i := range 3 {
		code, body, hdr := f.doKeyed(http.MethodPost, inc, `{"by":5}`, "order-1")
		if code != http.StatusOK || body != `{"value":5}` {
			t.Fatalf("attempt %d: %d %s, want 200 {\"value\":5}", i, code, body)
		}
		if replayed := hdr.Get("Idempotent-Replayed") == "true"; replayed != (i > 0) {
			t.Fatalf("attempt %d: Idempotent-Replayed %q", i, hdr.Get("Idempotent-Replayed"))
		}
	}
	if v := f.version("counter", "alice"); v != 1 {
		t.Fatalf("three attempts under one key made %d events, want 1", v)
	}
	code, body, _ := f.doKeyed(http.MethodPost, inc, `{"by":6}`, "order-1")
	if code != http.StatusUnprocessableEntity || errorCode(t, body) != "idempotency_key_reused" {
		t.Fatalf("same key, other body: %d %s, want 422 idempotency_key_reused", code, body)
	}
	code, body, _ = f.doKeyed(http.MethodPost, "/v1/objects/counter/alice/rpc/get", ``, "order-1")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "first used for rpc increment") {
		t.Fatalf("same key on another method: %d %s, want 422 naming the first", code, body)
	}
	bad := map[string][]string{
		"empty":       {""},
		"too long":    {strings.Repeat("k", 257)},
		"tab":         {"a\tb"},
		"not utf-8":   {"\xff"},
		"two headers": {"a", "b"},
	}
	for name, keys := range bad {
		code, body, _ := f.doKeyed(http.MethodPost, inc, `{"by":1}`, keys...)
		if code != http.StatusBadRequest || errorCode(t, body) != "invalid_idempotency_key" {
			t.Fatalf("key %s: %d %s, want 400 invalid_idempotency_key", name, code, body)
		}
	}
	if code, body, _ := f.doKeyed(http.MethodPost, inc, `{"by":1}`, strings.Repeat("k", 256)); code != 200 || body != `{"value":6}` {
		t.Fatalf("a 256-byte key: %d %s", code, body)
	}
	if v := f.version("counter", "alice"); v != 2 {
		t.Fatalf("log at v%d after refused keys, want 2", v)
	}
	// History shows the key and the answer's status.
	code, hist, _ := f.do(http.MethodGet, "/v1/objects/counter/alice/history?to=1", "")
	if code != 200 || !strings.Contains(hist, `"idempotency_key":"order-1","status":200,`) {
		t.Fatalf("history of the keyed turn: %d %s", code, hist)
	}
}

func TestIdempotencyKeyFetch(t *testing.T) {
	f := start(t)
	const p = "/v1/objects/echo/e1/fetch/p?q=1"
	code, first, _ := f.doKeyed(http.MethodPut, p, "hello", "put-1")
	if code != http.StatusAccepted || first != "PUT /p hits=1 stored=hello" {
		t.Fatalf("first: %d %q", code, first)
	}
	code, again, hdr := f.doKeyed(http.MethodPut, p, "hello", "put-1")
	if code != http.StatusAccepted || again != first || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %q, want 202 %q", code, again, first)
	}
	if code, body, _ := f.doKeyed(http.MethodPut, "/v1/objects/echo/e1/fetch/p?q=2", "hello", "put-1"); code != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other query: %d %s, want 422", code, body)
	}
	if v := f.version("echo", "e1"); v != 1 {
		t.Fatalf("log at v%d, want 1", v)
	}
}

func TestIdempotencyKeyAlarm(t *testing.T) {
	f := start(t)
	const p = "/v1/objects/kv/k1/alarm"
	code, first, _ := f.doKeyed(http.MethodPut, p, `{"in":"1h"}`, "alarm-1")
	if code != http.StatusOK {
		t.Fatalf("first: %d %s", code, first)
	}
	code, again, _ := f.doKeyed(http.MethodPut, p, `{"in":"1h"}`, "alarm-1")
	if code != http.StatusOK || again != first {
		t.Fatalf("retry of a relative alarm: %d %s, want the first answer %s", code, again, first)
	}
	if v := f.version("kv", "k1"); v != 1 {
		t.Fatalf("log at v%d, want 1", v)
	}
	code, del1, _ := f.doKeyed(http.MethodDelete, p, ``, "del-1")
	code2, del2, _ := f.doKeyed(http.MethodDelete, p, ``, "del-1")
	if code != 200 || code2 != 200 || del1 != `{"deleted":true,"name":""}` || del2 != del1 {
		t.Fatalf("keyed delete twice: %d %s, %d %s; want the first's answer twice", code, del1, code2, del2)
	}
}

// slow waits for its caller's deadline: its requests time out.
type slow struct{}

func (slow) Wait(ctx *objects.Ctx) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestRetryableNeedsKey: an error whose outcome is unknown (here a 504
// timeout) says retryable only when the request carried an
// Idempotency-Key; without one a retry could run the request twice.
func TestRetryableNeedsKey(t *testing.T) {
	n := testnode.Start(t, []*objects.Class{objects.Define("slow", func() *slow { return &slow{} })}, nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, RequestTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, node: n, url: srv.URL}
	for _, c := range []struct {
		keys      []string
		retryable bool
	}{{nil, false}, {[]string{"k1"}, true}} {
		code, body, hdr := f.doKeyed(http.MethodPost, "/v1/objects/slow/s/rpc/wait", "", c.keys...)
		var e struct {
			Error struct {
				Code      string
				Retryable bool
			} `json:"error"`
		}
		json.Unmarshal([]byte(body), &e)
		if code != http.StatusGatewayTimeout || e.Error.Code != "timeout" || e.Error.Retryable != c.retryable || (hdr.Get("Retry-After") != "") != c.retryable {
			t.Fatalf("keys %v: %d %s Retry-After %q; want 504 timeout, retryable %v", c.keys, code, body, hdr.Get("Retry-After"), c.retryable)
		}
	}
}
