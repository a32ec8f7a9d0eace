package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/objects"
)

// send makes one request with the given headers ("Host" sets the Host
// header) and returns the status, the error code of a JSON error, and the
// response headers.
func (f *fixture) send(method, path, body string, hdr map[string]string) (int, string, http.Header) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error struct{ Code string } }
	json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code, resp.Header
}

// lastVersion is the object's newest version in the log.
func (f *fixture) lastVersion(class, name string) uint64 {
	f.t.Helper()
	rec, err := f.node.Log.Last(context.Background(), class, objects.IDFromName(class, name))
	if err != nil {
		f.t.Fatal(err)
	}
	return rec.Event.Version
}

// TestCrossSiteWritesRefused: the writes a foreign page can send without
// a preflight (text/plain, form and multipart bodies), with a foreign
// Origin, a "null" one, or none but marked cross-site, are refused 403 and
// write nothing.
func TestCrossSiteWritesRefused(t *testing.T) {
	f := start(t)
	for i := 0; i < 2; i++ {
		if code, body := f.post("/v1/objects/kv/victim/rpc/put", `{"key":"a","value":1}`); code != 200 {
			t.Fatal(code, body)
		}
	}
	routes := []struct{ path, body string }{
		{"/v1/objects/kv/victim/rpc/delete-all", `{}`},
		{"/v1/objects/kv/victim/restore", `{"version":1}`},
		{"/v1/objects/kv/victim/rpc/put", `{"key":"b","value":2}`},
	}
	origins := []map[string]string{
		{"Origin": "http://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://127.0.0.1:1"}, // another port is another origin
		{"Sec-Fetch-Site": "cross-site"},
	}
	for _, rt := range routes {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
			for _, o := range origins {
				hdr := map[string]string{"Content-Type": ct}
				for k, v := range o {
					hdr[k] = v
				}
				code, ecode, h := f.send(http.MethodPost, rt.path, rt.body, hdr)
				if code != http.StatusForbidden || ecode != "forbidden_origin" || h.Get("Access-Control-Allow-Origin") != "" {
					t.Errorf("POST %s %v: %d %s ACAO=%q, want 403 forbidden_origin and no CORS", rt.path, hdr, code, ecode, h.Get("Access-Control-Allow-Origin"))
				}
			}
		}
	}
	if v := f.lastVersion("kv", "victim"); v != 2 {
		t.Fatalf("a refused cross-site request wrote: the object is at version %d, want 2", v)
	}
	// The gateway's own pages (same origin) still write.
	if code, ecode, _ := f.send(http.MethodPost, "/v1/objects/kv/victim/rpc/delete-all", `{}`, map[string]string{"Origin": f.url, "Content-Type": "text/plain"}); code != 200 {
		t.Fatalf("same-origin write: %d %s", code, ecode)
	}
	if code, _, _ := f.send(http.MethodGet, "/ui/chat", "", map[string]string{"Sec-Fetch-Site": "cross-site"}); code != 200 {
		t.Fatalf("following a link to the chat page: %d", code)
	}
}

// TestForeignHostRefused: a Host that is not a loopback name (DNS
// rebinding) cannot read history; listed hosts can.
func TestForeignHostRefused(t *testing.T) {
	f := startWith(t, func(c *gateway.Config) {
		c.AllowedHosts = []string{"strata.internal", "*.nodes.example", "192.0.2.7"}
	})
	if code, body := f.post("/v1/objects/kv/secret/rpc/put", `{"key":"a","value":1}`); code != 200 {
		t.Fatal(code, body)
	}
	for host, want := range map[string]int{
		"evil.example":                 403,
		"evil.example:8080":            403,
		"127.0.0.1.evil.example":       403,
		"localhost.evil.example":       403,
		"nodes.example":                403, // the wildcard names subdomains only
		"192.0.2.8":                    403,
		"10.0.0.1:8080":                403,
		"localhost":                    200,
		"LOCALHOST:8080":               200,
		"127.0.0.2:9":                  200,
		"[::1]:8080":                   200,
		"strata.internal":              200,
		"strata.internal:443":          200,
		"a.nodes.example":              200,
		"192.0.2.7:8080":               200,
		"strata.internal.evil.example": 403,
	} {
		code, ecode, _ := f.send(http.MethodGet, "/v1/objects/kv/secret/history", "", map[string]string{"Host": host})
		if code != want || (want == 403 && ecode != "forbidden_host") {
			t.Errorf("Host %q: %d %s, want %d", host, code, ecode, want)
		}
	}
	// An unspecified listen address serves any IP literal, never a name.
	g := startWith(t, func(c *gateway.Config) { c.AllowedHosts = []string{"0.0.0.0"} })
	if code, _, _ := g.send(http.MethodGet, "/healthz", "", map[string]string{"Host": "10.0.0.1:8080"}); code != 200 {
		t.Errorf("IP host with 0.0.0.0 allowed: %d", code)
	}
	if code, ecode, _ := g.send(http.MethodGet, "/healthz", "", map[string]string{"Host": "rebind.evil.example"}); code != 403 || ecode != "forbidden_host" {
		t.Errorf("name host with 0.0.0.0 allowed: %d %s", code, ecode)
	}
}

// TestCORSListedOrigin: a listed origin's preflight is answered and its
// requests carry the CORS headers; an unlisted origin's preflight is
// refused.
func TestCORSListedOrigin(t *testing.T) {
	const app = "https://app.example"
	f := startWith(t, func(c *gateway.Config) { c.CORSOrigins = []string{app} })
	pre := map[string]string{"Origin": app, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
	code, _, h := f.send(http.MethodOptions, "/v1/objects/kv/shared/rpc/put", "", pre)
	if code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != app || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight of a listed origin: %d %v", code, h)
	}
	code, ecode, h := f.send(http.MethodPost, "/v1/objects/kv/shared/rpc/put", `{"key":"a","value":1}`, map[string]string{"Origin": app, "Content-Type": "application/json"})
	if code != 200 || h.Get("Access-Control-Allow-Origin") != app || !strings.Contains(h.Get("Vary"), "Origin") {
		t.Fatalf("request of a listed origin: %d %s %v", code, ecode, h)
	}
	if v := f.lastVersion("kv", "shared"); v != 1 {
		t.Fatalf("version %d after the listed origin's write", v)
	}
	pre["Origin"] = "https://evil.example"
	if code, ecode, h := f.send(http.MethodOptions, "/v1/objects/kv/shared/rpc/put", "", pre); code != 403 || ecode != "forbidden_origin" || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight of an unlisted origin: %d %s %v", code, ecode, h)
	}
	// Same origin: no CORS headers needed or given.
	if code, _, h := f.send(http.MethodGet, "/healthz", "", map[string]string{"Origin": f.url}); code != 200 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same origin: %d %v", code, h)
	}
	for _, bad := range []string{"app.example", "ftp://app.example", "https://app.example/path"} {
		if _, err := gateway.New(gateway.Config{Backend: f.node.Runtime, CORSOrigins: []string{bad}}); err == nil {
			t.Errorf("CORS origin %q accepted", bad)
		}
	}
}
