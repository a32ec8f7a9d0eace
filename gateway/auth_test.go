package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// authFixture is a real node with auth on: tokens in the log's bucket.
type authFixture struct {
	t      *testing.T
	node   *testnode.Node
	gw     *Gateway
	url    string
	tokens *log.Tokens
	secret map[string]string // credential name -> Authorization value
}

// fetchEcho is a class with a Fetch handler that writes.
type fetchEcho struct{}

func (fetchEcho) Fetch(ctx *objects.Ctx, w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ctx.Storage().Put("body", body)
	fmt.Fprintf(w, "auth header %q", r.Header.Get("Authorization"))
}

// WebSocketConnect tells the client what of the request it saw.
func (fetchEcho) WebSocketConnect(ctx *objects.Ctx, ws *objects.WebSocket, r *http.Request) error {
	return ws.Send(r.Header.Get("Authorization") + "|" + r.Header.Get("Sec-Websocket-Protocol") + "|" + r.URL.RawQuery)
}

func startAuth(t *testing.T) *authFixture { return startAuthWith(t, nil) }

// startAuthWith is startAuth with the gateway's configuration changed by
// edit.
func startAuthWith(t *testing.T, edit func(*Config)) *authFixture {
	t.Helper()
	cls := append(classes.All(), objects.Define("echo", func() *fetchEcho { return &fetchEcho{} }))
	n := testnode.Start(t, cls, nil)
	store, err := n.Log.OpenTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cfg := Config{Backend: n.Runtime, Alarms: n.Alarms, Outbox: n.Runtime, Tokens: store}
	if edit != nil {
		edit(&cfg)
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	f := &authFixture{t: t, node: n, gw: gw, url: srv.URL, tokens: store, secret: map[string]string{}}
	for _, c := range []struct {
		name   string
		scopes []string
	}{
		{"admin", []string{"admin"}},
		{"read", []string{"read"}},
		{"call", []string{"call"}},
		{"call-count", []string{"call:count*"}},
		{"revoked", []string{"admin"}},
	} {
		f.secret[c.name] = "Bearer " + f.mint(c.name, c.scopes)
	}
	if _, err := store.RevokeToken(context.Background(), "revoked", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The admin token's id with another secret.
	_, other, _ := NewToken("admin", "", []string{"admin"}, "", time.Now())
	f.secret["wrong"] = "Bearer " + other
	f.secret["garbage"] = "Bearer nonsense"
	f.secret["none"] = ""
	return f
}

// mint stores a token with id and scopes and returns its secret.
func (f *authFixture) mint(id string, scopes []string) string {
	f.t.Helper()
	rec, secret, err := NewToken(id, id, scopes, "test", time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.tokens.CreateToken(context.Background(), rec); err != nil {
		f.t.Fatal(err)
	}
	return secret
}

// do sends a request with a credential and returns the status and body.
// A streaming answer (tail) is cut once its status is known.
func (f *authFixture) do(cred, method, path, body string) (int, string, http.Header) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if a := f.secret[cred]; a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(path, "/v1/tail") && resp.StatusCode == http.StatusOK { // a tail never ends by itself
		return resp.StatusCode, "", resp.Header
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

// written is what any write changes: the last sequence of every shard,
// and the number of token records.
func (f *authFixture) written() string {
	f.t.Helper()
	var seqs []uint64
	for s := range f.node.Log.Shards() {
		seq, err := f.node.Log.LastSeq(context.Background(), s)
		if err != nil {
			f.t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	return fmt.Sprint(seqs, len(f.tokens.Tokens()))
}

// authRoutes is one request per route and per action of the object
// route; TestAuthRoutesCovered checks that nothing is missing.
var authRoutes = []struct {
	method, path, body string
}{
	{"GET", "/healthz", ""},
	{"GET", "/ui/chat", ""},
	{"GET", "/nowhere", ""},
	{"POST", "/v1/objects/counter/m/rpc/increment", `{"by":1}`},
	{"POST", "/v1/objects/kv/m/rpc/put", `{"key":"k","value":1}`},
	{"PUT", "/v1/objects/echo/e/fetch/x", "hello"},
	{"GET", "/v1/objects/counter/m/alarm", ""},
	{"PUT", "/v1/objects/counter/m/alarm", `{"in":"1h"}`},
	{"DELETE", "/v1/objects/counter/m/alarm", ""},
	{"GET", "/v1/objects/chat/r/ws", ""},
	{"GET", "/v1/objects/counter/m/history", ""},
	{"GET", "/v1/objects/counter/m/state?version=1", ""},
	{"GET", "/v1/objects/counter/m/audit", ""},
	{"GET", "/v1/objects/counter/m/live", ""},
	{"POST", "/v1/objects/counter/m/restore", `{"version":1}`},
	{"POST", "/v1/objects/counter/m/sql/query?version=1", `{"query":"SELECT 1"}`},
	{"GET", "/v1/objects/counter/m/trace?version=1", ""},
	{"GET", "/v1/objects/counter", ""},
	{"GET", "/v1/tail", ""},
	{"GET", "/v1/cluster", ""},
	{"GET", "/v1/cluster/raft", ""},
	{"GET", "/v1/alarms", ""},
	{"GET", "/v1/alarms/dead", ""},
	{"POST", "/v1/alarms/dead/retry", ""},
	{"GET", "/v1/objects/counter/m/outbox", ""},
	{"GET", "/v1/outbox/dead", ""},
	{"POST", "/v1/outbox/dead/retry", ""},
	{"GET", "/v1/tokens", ""},
	{"POST", "/v1/tokens", `{"scopes":["read"]}`},
	{"DELETE", "/v1/tokens/nosuch", ""},
	{"GET", "/", ""},
	{"GET", "/console", ""},
	{"GET", "/console/", ""},
	{"GET", "/v1/classes", ""},
	{"GET", "/v1/node", ""},
}

// Every route × every credential: 401 without a valid token in force, 403
// without the scope, and nothing written either way; with the scope, in.
func TestAuthMatrix(t *testing.T) {
	f := startAuth(t)
	// An object with two versions, so restore and state have something.
	for range 2 {
		if code, body, _ := f.do("admin", "POST", "/v1/objects/counter/m/rpc/increment", `{"by":1}`); code != 200 {
			t.Fatalf("seed: %d %s", code, body)
		}
	}
	creds := []string{"none", "garbage", "wrong", "revoked", "read", "call-count", "call", "admin"}
	for _, rt := range authRoutes {
		req := httptest.NewRequest(rt.method, rt.path, nil)
		need, class, _ := f.gw.need(req)
		for _, cred := range creds {
			var want int // 0: let in
			switch {
			case need == accessOpen:
			case cred == "none" || cred == "garbage" || cred == "wrong" || cred == "revoked":
				want = http.StatusUnauthorized
			default:
				rec, _ := f.tokens.Token(cred)
				if !allows(rec.Scopes, need, class) {
					want = http.StatusForbidden
				}
			}
			before := f.written()
			code, body, hdr := f.do(cred, rt.method, rt.path, rt.body)
			name := fmt.Sprintf("%s %s with %s", rt.method, rt.path, cred)
			switch want {
			case 0:
				if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
					t.Errorf("%s: %d %s, want it let in", name, code, body)
				}
				continue
			case http.StatusUnauthorized:
				if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: no WWW-Authenticate: %v", name, hdr)
				}
			}
			var e errorBody
			json.Unmarshal([]byte(body), &e)
			wantCode := map[int]string{401: "unauthorized", 403: "forbidden"}[want]
			if code != want || e.Error.Code != wantCode {
				t.Errorf("%s: %d %s, want %d %s", name, code, body, want, wantCode)
			}
			if after := f.written(); after != before {
				t.Errorf("%s: refused, yet written: %s -> %s", name, before, after)
			}
		}
	}
	// The check above can see a write: a let-in write moves it.
	before := f.written()
	f.do("call", "POST", "/v1/objects/counter/m/rpc/increment", `{"by":1}`)
	if f.written() == before {
		t.Fatal("an accepted write did not change written()")
	}
}

// The routes of authRoutes reach every registered pattern and every action.
func TestAuthRoutesCovered(t *testing.T) {
	f := startAuth(t)
	patterns := map[string]bool{}
	actions := map[string]bool{}
	for _, rt := range authRoutes {
		req := httptest.NewRequest(rt.method, rt.path, nil)
		_, p := f.gw.mux.Handler(req)
		patterns[p] = true
		if op, err := splitObjectPath(req); err == nil && strings.HasPrefix(rt.path, "/v1/objects/") {
			actions[op.action] = true
		}
	}
	for _, p := range f.gw.patterns {
		if !patterns[p] {
			t.Errorf("route %q has no case in authRoutes", p)
		}
	}
	for a := range actionAccess {
		if !actions[a] {
			t.Errorf("action %q has no case in authRoutes", a)
		}
		if !isAction(a) {
			t.Errorf("actionAccess has %q, which is no action", a)
		}
	}
	for _, a := range []string{"rpc", "fetch", "alarm", "ws", "outbox", "history", "state", "audit", "restore", "trace", "live"} {
		if isAction(a) && actionAccess[a] == 0 {
			t.Errorf("action %q has no row in actionAccess", a)
		}
	}
	// A route registered without a row fails New.
	g := &Gateway{mux: http.NewServeMux()}
	g.handle("GET /v1/unlisted", func(http.ResponseWriter, *http.Request) {})
	if len(g.routeErrs) != 1 {
		t.Fatalf("a route without a scope was accepted: %v", g.routeErrs)
	}
}

// Each turn's cause names the token it came with: history and tail show it.
func TestAuthPrincipalRecorded(t *testing.T) {
	f := startAuth(t)
	if code, body, _ := f.do("call-count", "POST", "/v1/objects/counter/p/rpc/increment", `{"by":1}`); code != 200 {
		t.Fatalf("increment: %d %s", code, body)
	}
	code, body, _ := f.do("read", "GET", "/v1/objects/counter/p/history", "")
	if code != 200 || !strings.Contains(body, `"principal":"call-count"`) {
		t.Fatalf("history: %d %s", code, body)
	}
	// The class never sees the credential.
	code, body, _ = f.do("call", "PUT", "/v1/objects/echo/e/fetch/x", "hi")
	if code != 200 || body != `auth header ""` {
		t.Fatalf("fetch: %d %s", code, body)
	}
}

// Token routes: create (shown once), use, list (no secret), revoke (refused
// at once on this node).
func TestAuthTokenRoutes(t *testing.T) {
	f := startAuth(t)
	code, body, _ := f.do("admin", "POST", "/v1/tokens", `{"name":"ci","scopes":["call:counter"]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var v TokenView
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Token == "" || v.CreatedBy != "admin" {
		t.Fatalf("create: %s %v", body, err)
	}
	f.secret["new"] = "Bearer " + v.Token
	if code, body, _ := f.do("new", "POST", "/v1/objects/counter/n/rpc/increment", `{}`); code != 200 {
		t.Fatalf("use: %d %s", code, body)
	}
	if code, _, _ := f.do("new", "POST", "/v1/objects/kv/n/rpc/get", `{"key":"k"}`); code != 403 {
		t.Fatalf("another class: %d", code)
	}
	code, body, _ = f.do("admin", "GET", "/v1/tokens", "")
	if code != 200 || !strings.Contains(body, `"id":"`+v.ID+`"`) || strings.Contains(body, "strata_") {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, bad := range []string{`{"scopes":[]}`, `{"scopes":["root"]}`, `{"scopes":["call:Bad/Class"]}`, `{"scopes":["read"],"x":1}`, `not json`} {
		before := f.written()
		if code, body, _ := f.do("admin", "POST", "/v1/tokens", bad); code != 400 || f.written() != before {
			t.Errorf("create %s: %d %s", bad, code, body)
		}
	}
	code, body, _ = f.do("admin", "DELETE", "/v1/tokens/"+v.ID, "")
	if code != 200 || !strings.Contains(body, `"revoked_by":"admin"`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _, _ := f.do("new", "POST", "/v1/objects/counter/n/rpc/increment", `{}`); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	if code, _, _ := f.do("admin", "DELETE", "/v1/tokens/nosuch", ""); code != 404 {
		t.Fatalf("revoke unknown: %d", code)
	}
}

// A browser's WebSocket cannot set headers: the token comes as a
// subprotocol (answered with "strata") or as ?access_token=.
func TestAuthWebSocketToken(t *testing.T) {
	f := startAuth(t)
	secret := strings.TrimPrefix(f.secret["call"], "Bearer ")
	wsURL := "ws" + strings.TrimPrefix(f.url, "http") + "/v1/objects/chat/room/ws?name=ann"
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}

	c, resp, err := d.Dial(wsURL, http.Header{"Sec-Websocket-Protocol": {"strata, strata.token." + secret}})
	if err != nil {
		t.Fatalf("subprotocol: %v %v", err, resp)
	}
	if got := c.Subprotocol(); got != "strata" {
		t.Errorf("answered subprotocol %q, want strata", got)
	}
	c.Close()
	c, resp, err = d.Dial(wsURL+"&access_token="+secret, nil)
	if err != nil {
		t.Fatalf("query: %v %v", err, resp)
	}
	c.Close()
	// The object never sees the token, however it came.
	echoURL := "ws" + strings.TrimPrefix(f.url, "http") + "/v1/objects/echo/e/ws?x=1"
	for _, h := range []http.Header{
		{"Authorization": {f.secret["call"]}},
		{"Sec-Websocket-Protocol": {"strata, strata.token." + secret}},
		{"Sec-Websocket-Protocol": {"strata.token." + secret}},
		nil,
	} {
		u := echoURL
		if h == nil {
			u += "&access_token=" + secret
		}
		c, resp, err := d.Dial(u, h)
		if err != nil {
			t.Fatalf("echo %v: %v %v", h, err, resp)
		}
		_, seen, err := c.ReadMessage()
		c.Close()
		if err != nil || strings.Contains(string(seen), secret) || !strings.HasSuffix(string(seen), "|x=1") {
			t.Fatalf("echo %v: the object saw %q (%v)", h, seen, err)
		}
	}
	for _, bad := range []string{"&access_token=nonsense", ""} {
		_, resp, err = d.Dial(wsURL+bad, nil)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("dial %q: %v %v", bad, err, resp)
		}
	}
	// The query parameter is for WebSockets only.
	req, _ := http.NewRequest("GET", f.url+"/v1/objects/counter/m/history?access_token="+secret, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("query token on history: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

func TestAllowsAndScopes(t *testing.T) {
	cases := []struct {
		scopes []string
		need   access
		class  string
		want   bool
	}{
		{[]string{"admin"}, accessCall, "kv", true},
		{[]string{"admin"}, accessRead, "", true},
		{[]string{"read"}, accessCall, "kv", false},
		{[]string{"read"}, accessAdmin, "", false},
		{[]string{"call"}, accessCall, "kv", true},
		{[]string{"call"}, accessRead, "", false},
		{[]string{"call:chat-*"}, accessCall, "chat-room", true},
		{[]string{"call:chat-*"}, accessCall, "chat", false},
		{[]string{"call:counter", "read"}, accessCall, "counter", true},
		{[]string{"call:counter"}, accessCall, "counters", false},
		{[]string{"read"}, accessToken, "", true},
	}
	for _, c := range cases {
		if got := allows(c.scopes, c.need, c.class); got != c.want {
			t.Errorf("allows(%v, %s, %q) = %v", c.scopes, c.need.scope(), c.class, got)
		}
	}
	rec, secret, err := NewToken("", "n", []string{"read"}, "by", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, raw, ok := splitToken(secret)
	if !ok || id != rec.ID || len(raw) != tokenSecretBytes {
		t.Fatalf("splitToken(%q) = %q %x %v", secret, id, raw, ok)
	}
	for _, bad := range []string{"", "strata_", "strata_id_", "strata__" + strings.Repeat("a", 64), "strata_id_" + strings.Repeat("a", 63), "other_id_" + strings.Repeat("a", 64)} {
		if _, _, ok := splitToken(bad); ok {
			t.Errorf("splitToken(%q) accepted", bad)
		}
	}
	keys := make([]string, 0, len(routeAccess))
	for k := range routeAccess {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !slices.Contains(keys, "GET /healthz") || routeAccess["GET /healthz"] != accessOpen {
		t.Fatal("/healthz must stay open")
	}
}

// BenchmarkAuthorize is the wrapper's cost per request: finding the
// route's scope, the token's record, its SHA-256 and the scope check.
func BenchmarkAuthorize(b *testing.B) {
	n := testnode.Start(b, classes.All(), nil)
	store, err := n.Log.OpenTokens(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	gw, err := New(Config{Backend: n.Runtime, Tokens: store})
	if err != nil {
		b.Fatal(err)
	}
	rec, secret, _ := NewToken("bench", "", []string{"call:counter"}, "", time.Now())
	if err := store.CreateToken(context.Background(), rec); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/v1/objects/counter/c/rpc/increment", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		req.Header.Set("Authorization", "Bearer "+secret)
		if _, ok := gw.authorize(w, req); !ok {
			b.Fatal("refused")
		}
	}
}

// A socket opened with a token that is then revoked is closed (1008) at
// its next message, which writes nothing.
func TestAuthWebSocketRevoked(t *testing.T) {
	f := startAuth(t)
	secret := f.mint("chatter", []string{"call:chat"})
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(f.url, "http")+"/v1/objects/chat/rev/ws?name=ann", http.Header{"Authorization": {"Bearer " + secret}})
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil { // the welcome
		t.Fatal(err)
	}
	before := f.written()
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, m, err := c.ReadMessage(); err != nil || !strings.Contains(string(m), "hello") {
		t.Fatalf("echo of the message: %q %v", m, err)
	}
	if f.written() == before {
		t.Fatal("the message wrote nothing")
	}
	if _, err := f.tokens.RevokeToken(context.Background(), "chatter", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	before = f.written()
	if err := c.WriteMessage(websocket.TextMessage, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for {
		_, m, err := c.ReadMessage()
		if err == nil {
			if strings.Contains(string(m), "after") {
				t.Fatalf("a revoked token's message was posted: %s", m)
			}
			continue
		}
		if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Fatalf("socket ended with %v, want close 1008", err)
		}
		break
	}
	if after := f.written(); after != before {
		t.Fatalf("written after revocation: %s -> %s", before, after)
	}
}

// TestAuthRevokedTokenEndsStreams: what a token opened and outlives its
// request ends when the token is revoked, whether or not anything crosses
// it: a tail and a followed history end with a token_revoked line, a
// socket that only listens gets no more broadcasts and is closed (1008),
// and an idle one is closed at its next ping.
func TestAuthRevokedTokenEndsStreams(t *testing.T) {
	f := startAuthWith(t, func(c *Config) { c.WebSocket.PingInterval = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	watcher := "Bearer " + f.mint("watcher", []string{"read", "call:chat"})
	idler := "Bearer " + f.mint("idler", []string{"call:chat"})

	stream := func(path string) *bufio.Scanner {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
		req.Header.Set("Authorization", watcher)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %v %v", path, resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewScanner(resp.Body)
	}
	if code, body, _ := f.do("admin", "POST", "/v1/objects/kv/watched/rpc/put", `{"key":"a","value":"1"}`); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	tail := stream("/v1/tail")
	follow := stream("/v1/objects/kv/watched/history?follow=true")
	if !follow.Scan() || !strings.Contains(follow.Text(), `"version":1`) {
		t.Fatalf("the followed history's first line: %q %v", follow.Text(), follow.Err())
	}
	dial := func(cred, room string) *websocket.Conn {
		d := websocket.Dialer{HandshakeTimeout: 30 * time.Second}
		c, resp, err := d.Dial("ws"+strings.TrimPrefix(f.url, "http")+"/v1/objects/chat/"+room+"/ws?name=ann", http.Header{"Authorization": {cred}})
		if err != nil {
			t.Fatalf("dial: %v %v", err, resp)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil { // the welcome
			t.Fatal(err)
		}
		return c
	}
	listener := dial(watcher, "lobby")
	idle := dial(idler, "quiet")

	// Before: the tail sees a write. (Its headers come before its
	// subscription, so a write right after them may not be in it: write
	// until one is.)
	tailLines := make(chan string, 1024)
	go func() {
		defer close(tailLines)
		for tail.Scan() {
			tailLines <- tail.Text()
		}
	}()
	seen := false
	for i := 0; !seen; i++ {
		if code, body, _ := f.do("admin", "POST", "/v1/objects/kv/watched/rpc/put", fmt.Sprintf(`{"key":"a","value":"%d"}`, i)); code != http.StatusOK {
			t.Fatalf("put: %d %s", code, body)
		}
		select {
		case line := <-tailLines:
			seen = strings.Contains(line, `"class":"kv"`)
		case <-time.After(time.Second):
		case <-ctx.Done():
			t.Fatal("the tail shows no write")
		}
	}
	for _, id := range []string{"watcher", "idler"} {
		if _, err := f.tokens.RevokeToken(ctx, id, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if code, body, _ := f.do("admin", "POST", "/v1/objects/chat/lobby/rpc/post", `{"name":"bob","text":"after the revocation"}`); code != http.StatusOK {
		t.Fatalf("post: %d %s", code, body)
	}
	var last string
	for line := range tailLines {
		last = line
	}
	if !strings.Contains(last, `"token_revoked"`) {
		t.Fatalf("the tail after its token's revocation ended with %q (%v), want a token_revoked line", last, tail.Err())
	}
	last = ""
	for follow.Scan() {
		last = follow.Text()
	}
	if !strings.Contains(last, `"token_revoked"`) {
		t.Fatalf("the follow after its token's revocation ended with %q (%v), want a token_revoked line", last, follow.Err())
	}
	for name, c := range map[string]*websocket.Conn{"listening": listener, "idle": idle} {
		for {
			_, m, err := c.ReadMessage()
			if err == nil {
				if strings.Contains(string(m), "after the revocation") {
					t.Fatalf("the %s socket of a revoked token got a broadcast: %s", name, m)
				}
				continue
			}
			if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				t.Fatalf("the %s socket of a revoked token ended with %v, want close 1008", name, err)
			}
			break
		}
	}
}
