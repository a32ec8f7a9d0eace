package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// fuzzGateway is a real node and its gateway, shared by one fuzz run.
func fuzzGateway(f *testing.F) http.Handler {
	cls := append(classes.All(), objects.Define("echo", func() *echo { return &echo{} }))
	n := testnode.Start(f, cls, nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, Alarms: n.Alarms, Outbox: n.Runtime})
	if err != nil {
		f.Fatal(err)
	}
	return gw
}

// checkAnswer: no 5xx but the ones that say "try later", and every answer
// the gateway writes itself is a JSON value (fetch answers are the
// object's own, and path-cleaning redirects the mux's).
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder, fetch bool) {
	t.Helper()
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusNotImplemented && rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body.String())
	}
	ct := rec.Header().Get("Content-Type")
	if fetch || ct == "application/x-ndjson" {
		return
	}
	if rec.Code == http.StatusTemporaryRedirect || rec.Code == http.StatusMovedPermanently {
		return // net/http's ServeMux sends an unclean path (//, /./) to its clean form
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s: %d answer is not JSON: %q", what, rec.Code, rec.Body.String())
	}
}

// FuzzRoute: any path and query, read with GET (so nothing is written),
// is answered with a JSON status and never a panic or an internal error.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"/v1/objects/kv/a/rpc/get", "/v1/objects/kv/id/" + strings.Repeat("ab", 32) + "/history", "/v1/objects/kv/a%2Fb/state?version=1",
		"/v1/objects/kv/a/state?at=1442-05-18T00:00:00Z", "/v1/objects/kv/a/state?version=0", "/v1/objects/kv/%ff/audit",
		"/v1/objects/kv/a/history?from=1&from=2", "/v1/objects/kv?limit=5&prefix=a", "/v1/objects/kv/a/alarm?name=x",
		"/v1/objects/echo/e/fetch/a/b?c=1&c=2", "/v1/objects//x/rpc/y", "/v1/objects/kv/id//rpc/get", "/v1/alarms?class=kv",
		"/v1/objects/kv/a/ws", "/v1/objects/kv/a/%zz/rpc", "/v1/objects/kv/a/restore", "/v1/cluster", "/healthz", "/v1/tail?class=Bad",
	} {
		f.Add(s)
	}
	gw := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n#") || strings.HasPrefix(u.Path, "/v1/tail") && u.Query().Get("class") != "Bad" {
			return // not a request line a client can send; a tail never ends
		}
		if strings.Contains(u.Path, "/history") && strings.Contains(u.RawQuery, "follow") {
			return // a follow never ends either
		}
		if u.Path == "/" || u.Path == "/console" || strings.HasPrefix(u.Path, "/console/") {
			return // the console's pages and its redirect are HTML (TestConsoleFiles)
		}
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+u.RequestURI(), nil)
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, r)
		checkAnswer(t, "GET "+target, rec, strings.Contains(u.Path+"/", "/fetch/"))
	})
}

// FuzzRPCBody: any body posted to kv's read methods (which write nothing)
// is answered 200 with JSON or refused with a 4xx; a body that is not
// UTF-8 is always refused.
func FuzzRPCBody(f *testing.F) {
	for _, s := range []string{
		`{"key":"a"}`, `{"keys":["a","b"]}`, `{"prefix":"a","limit":2,"reverse":true}`, `{"key":"\u00e9"}`, "{\"key\":\"\xff\"}",
		`{"key":"a","extra":1}`, `{"key":"a"} {}`, `{"key":` + strings.Repeat("[", 10000), `{"key":"\ud800"}`, ``, `null`,
	} {
		f.Add("get", []byte(s))
		f.Add("list", []byte(s))
	}
	gw := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, method string, body []byte) {
		switch method {
		case "get", "get-many", "list":
		default:
			method = "get"
		}
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/v1/objects/kv/fuzz/rpc/"+method, strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, r)
		checkAnswer(t, method+" "+string(body), rec, false)
		if !utf8.Valid(body) && rec.Code != http.StatusBadRequest {
			t.Fatalf("%s with invalid UTF-8 %q: %d", method, body, rec.Code)
		}
	})
}
