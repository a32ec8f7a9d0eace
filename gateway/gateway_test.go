package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// echo is a test class with a Fetch handler and methods that fail.
type echo struct{ hits int }

func (e *echo) Fetch(ctx *objects.Ctx, w http.ResponseWriter, r *http.Request) {
	e.hits++
	body, _ := io.ReadAll(r.Body)
	if r.Method == http.MethodPut {
		if err := ctx.Storage().Put("body", body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	stored, _, _ := ctx.Storage().Get("body")
	w.Header().Set("X-Echo-Path", r.URL.Path)
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "%s %s hits=%d stored=%s", r.Method, r.URL.Path, e.hits, stored)
}

func (e *echo) Fail(ctx *objects.Ctx) error {
	ctx.Storage().Put("never", []byte("x"))
	return errors.New("the handler's own message")
}

func (e *echo) Refuse(ctx *objects.Ctx) error {
	return objects.Errorf(http.StatusConflict, "taken", "name already taken")
}

func (e *echo) Crash(ctx *objects.Ctx) error { panic("boom") }

type fixture struct {
	t    *testing.T
	node *testnode.Node
	url  string
}

func start(t *testing.T) *fixture { return startWith(t, nil) }

// startWith starts a node and its gateway; edit adjusts the gateway's config.
func startWith(t *testing.T, edit func(*gateway.Config)) *fixture {
	cls := append(classes.All(), objects.Define("echo", func() *echo { return &echo{} }))
	n := testnode.Start(t, cls, nil)
	cfg := gateway.Config{Backend: n.Runtime}
	if edit != nil {
		edit(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return &fixture{t: t, node: n, url: srv.URL}
}

func (f *fixture) do(method, path, body string) (int, string, http.Header) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

func (f *fixture) post(path, body string) (int, string) {
	f.t.Helper()
	code, b, _ := f.do(http.MethodPost, path, body)
	return code, b
}

func TestRPC(t *testing.T) {
	f := start(t)
	steps := []struct{ path, body, want string }{
		{"/v1/objects/counter/alice/rpc/increment", `{"by":2}`, `{"value":2}`},
		{"/v1/objects/counter/alice/rpc/increment", ``, `{"value":3}`},
		{"/v1/objects/counter/alice/rpc/get", ``, `{"value":3}`},
		{"/v1/objects/counter/id/" + objects.IDFromName("counter", "alice").String() + "/rpc/get", ``, `{"value":3}`},
		{"/v1/objects/kv/settings/rpc/put", `{"key":"theme","value":"dark"}`, `{"count":1}`},
		{"/v1/objects/kv/settings/rpc/put", `{"key":"tz","value":{"name":"UTC"}}`, `{"count":1}`},
		{"/v1/objects/kv/settings/rpc/put", `{"key":"lang","value":["en"]}`, `{"count":1}`},
		{"/v1/objects/kv/settings/rpc/list", `{"prefix":"t"}`, `{"entries":[{"key":"theme","value":"dark"},{"key":"tz","value":{"name":"UTC"}}]}`},
		{"/v1/objects/kv/settings/rpc/list", `{"reverse":true,"limit":1}`, `{"entries":[{"key":"tz","value":{"name":"UTC"}}]}`},
		{"/v1/objects/kv/settings/rpc/get", `{"key":"theme"}`, `{"key":"theme","value":"dark","found":true}`},
		{"/v1/objects/kv/settings/rpc/get", `{"key":"nope"}`, `{"key":"nope","value":null,"found":false}`},
		{"/v1/objects/kv/settings/rpc/delete", `{"key":"theme"}`, `{"deleted":true}`},
		{"/v1/objects/kv/settings/rpc/get-many", `{"keys":["theme","lang"]}`, `{"entries":[{"key":"lang","value":["en"]}]}`},
		{"/v1/objects/kv/settings/rpc/delete-all", ``, `{}`},
		{"/v1/objects/kv/settings/rpc/list", `{}`, `{"entries":[]}`},
		{"/v1/objects/kv/a%2Fb/rpc/put", `{"key":"k","value":1}`, `{"count":1}`}, // an escaped slash in a name
		{"/v1/objects/kv/a%2Fb/rpc/get", `{"key":"k"}`, `{"key":"k","value":1,"found":true}`},
	}
	for _, s := range steps {
		code, got := f.post(s.path, s.body)
		if code != http.StatusOK || got != s.want {
			t.Fatalf("POST %s %s\n got %d %s\nwant 200 %s", s.path, s.body, code, got, s.want)
		}
	}
	if code, got, _ := f.do(http.MethodGet, "/healthz", ""); code != 200 || got != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", code, got)
	}
}

func TestFetch(t *testing.T) {
	f := start(t)
	code, body, hdr := f.do(http.MethodPut, "/v1/objects/echo/e1/fetch/some/path?q=1", "hello")
	if code != http.StatusAccepted || body != "PUT /some/path hits=1 stored=hello" || hdr.Get("X-Echo-Path") != "/some/path" {
		t.Fatalf("fetch PUT: %d %q %v", code, body, hdr)
	}
	code, body, _ = f.do(http.MethodGet, "/v1/objects/echo/e1/fetch/", "")
	if code != http.StatusAccepted || body != "GET / hits=2 stored=hello" {
		t.Fatalf("fetch GET: %d %q", code, body)
	}
	// kv has no Fetch handler.
	if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/x/fetch/", ""); code != 404 || !strings.Contains(body, "unknown_method") {
		t.Fatalf("fetch on a class without Fetch: %d %s", code, body)
	}
}

// TestBadInput: each malformed request gets its 4xx with a JSON error that
// says what was wrong, and no event reaches the log.
func TestBadInput(t *testing.T) {
	f := start(t)
	big := strings.Repeat("x", 200<<10)
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/objects/Bad_Class/x/rpc/get", "", 400, "invalid_class"},
		{"POST", "/v1/objects/nosuch/x/rpc/get", "", 404, "unknown_class"},
		{"POST", "/v1/objects/kv/" + strings.Repeat("n", 300) + "/rpc/get", `{"key":"a"}`, 400, "invalid_name"},
		{"POST", "/v1/objects/kv/%01ctl/rpc/get", `{"key":"a"}`, 400, "invalid_name"},
		{"POST", "/v1/objects/kv/id/abc/rpc/get", `{"key":"a"}`, 400, "invalid_id"},
		{"POST", "/v1/objects/kv/id/" + strings.Repeat("A", 64) + "/rpc/get", `{"key":"a"}`, 400, "invalid_id"},
		{"POST", "/v1/objects/kv/bad/rpc/nosuch", "{}", 404, "unknown_method"},
		{"POST", "/v1/objects/kv/bad/rpc/", "{}", 404, "unknown_method"},
		{"POST", "/v1/objects/kv/bad/other/x", "{}", 404, "not_found"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"a","value":1,"extra":2}`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"a","value":1} trailing`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"a"}`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"","value":1}`, 400, "invalid_key"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"` + strings.Repeat("k", 3000) + `","value":1}`, 413, "too_large"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"a","value":"` + big + `"}`, 413, "too_large"},
		{"POST", "/v1/objects/kv/bad/rpc/put", `{"key":"a","value":"` + strings.Repeat("y", 3<<20) + `"}`, 413, "too_large"},
		{"POST", "/v1/objects/counter/bad/rpc/increment", `{"by":"two"}`, 400, "bad_input"},
		{"GET", "/v1/objects/kv/bad/rpc/get", "", 405, "method_not_allowed"},
		{"POST", "/v1/objects/echo/bad/rpc/refuse", "", 409, "taken"},
		{"POST", "/v1/objects/echo/bad/rpc/fail", "", 500, "handler_error"},
		{"POST", "/v1/objects/echo/bad/rpc/crash", "", 500, "handler_error"},
		{"GET", "/v2/nothing", "", 404, "not_found"},
	}
	for _, c := range cases {
		code, body, _ := f.do(c.method, c.path, c.body)
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("%s %s: body is not a JSON error: %q", c.method, c.path[:min(len(c.path), 80)], body[:min(len(body), 200)])
		}
		if code != c.status || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s %.80s: got %d %s %q, want %d %s", c.method, c.path, code, e.Error.Code, e.Error.Message, c.status, c.code)
		}
	}
	if code, body := f.post("/v1/objects/echo/bad/rpc/fail", ""); !strings.Contains(body, "the handler's own message") {
		t.Errorf("handler error hides the handler's message: %d %s", code, body)
	}
	for _, ref := range []struct{ class, name string }{{"kv", "bad"}, {"counter", "bad"}, {"echo", "bad"}} {
		_, err := f.node.Log.Last(context.Background(), ref.class, objects.IDFromName(ref.class, ref.name))
		if !errors.Is(err, log.ErrNotFound) {
			t.Errorf("%s/%s: bad input reached the log (%v)", ref.class, ref.name, err)
		}
	}
}

func TestRequestID(t *testing.T) {
	f := start(t)
	req, _ := http.NewRequest(http.MethodPost, f.url+"/v1/objects/counter/r/rpc/increment", bytes.NewReader(nil))
	req.Header.Set("X-Request-Id", "req-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "req-123" {
		t.Fatalf("request id echoed as %q", got)
	}
	rec, err := f.node.Log.Last(context.Background(), "counter", objects.IDFromName("counter", "r"))
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Cause; c.RequestID != "req-123" || c.Method != "increment" || c.Via != log.ViaRPC {
		t.Fatalf("cause recorded as %+v", c)
	}
	if rec.Event.Name != "r" {
		t.Fatalf("first event names the object %q", rec.Event.Name)
	}
}

// TestSameIDOtherClass (issue 15, defect 1): anyone who knows a name can
// write under its id in another class; that must not deny the object's own
// writes (their message ids once collided, and counter/alice's increments
// failed as conflicts for the duplicate window).
func TestSameIDOtherClass(t *testing.T) {
	f := start(t)
	hex := objects.IDFromName("counter", "alice").String()
	for _, path := range []string{"/v1/objects/kv/id/" + hex + "/rpc/put", "/v1/objects/kv/id/" + hex + "/rpc/put"} {
		if code, got := f.post(path, `{"key":"k","value":1}`); code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, got)
		}
	}
	for want := 1; want <= 3; want++ {
		code, got := f.post("/v1/objects/counter/alice/rpc/increment", ``)
		if code != http.StatusOK || got != fmt.Sprintf(`{"value":%d}`, want) {
			t.Fatalf("increment %d after kv wrote under alice's id: %d %s", want, code, got)
		}
	}
}
