package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
)

// The console's files are embedded and served with a strict CSP; GET /
// redirects to them; nothing else under /console exists.
func TestConsoleFiles(t *testing.T) {
	f := startAuth(t)
	for _, c := range []struct {
		path, wantType string
		code           int
	}{
		{"/console/", "text/html", 200},
		{"/console/app.js", "javascript", 200},
		{"/console/api.js", "javascript", 200},
		{"/console/console.css", "text/css", 200},
		{"/console/nothing.js", "", 404},
		{"/", "", 302},
		{"/console", "", 301},
	} {
		rec := httptest.NewRecorder()
		f.gw.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+c.path, nil))
		if rec.Code != c.code {
			t.Errorf("GET %s: %d, want %d", c.path, rec.Code, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, c.wantType) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.wantType)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); csp != consoleCSP {
			t.Errorf("GET %s: CSP %q", c.path, csp)
		}
		if body := rec.Body.String(); strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "innerHTML") {
			t.Errorf("GET %s: inline script, inline style or innerHTML, which the CSP or the console's rule forbids", c.path)
		}
	}
	// Another site's page cannot read the console's API through a browser.
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v1/classes", nil)
	r.Header.Set("Origin", "https://evil.example")
	r.Header.Set("Authorization", f.secret["admin"])
	rec := httptest.NewRecorder()
	f.gw.ServeHTTP(rec, r)
	if rec.Code != http.StatusForbidden {
		t.Errorf("cross-origin GET /v1/classes: %d, want 403", rec.Code)
	}
}

// GET …/live tells whether an object has a live activation here and how
// many WebSockets it holds; the class's list says active per object.
func TestLiveRoute(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := New(Config{Backend: n.Runtime, Inspect: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, httptest.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(`{}`)))
		return rec
	}
	if rec := do("GET", "/v1/objects/counter/live-x/live"); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":false,"websockets":0}` {
		t.Fatalf("before any turn: %d %s", rec.Code, rec.Body)
	}
	if rec := do("POST", "/v1/objects/counter/live-x/rpc/increment"); rec.Code != 200 {
		t.Fatalf("increment: %d %s", rec.Code, rec.Body)
	}
	if rec := do("GET", "/v1/objects/counter/live-x/live"); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"active":true,"websockets":0}` {
		t.Fatalf("after a turn: %d %s", rec.Code, rec.Body)
	}
	// The list reads the snapshot: wait for the projector.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := do("GET", "/v1/objects/counter")
		if rec.Code == 200 && strings.Contains(rec.Body.String(), `"name":"live-x","version":1,`) && strings.Contains(rec.Body.String(), `"active":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %d %s, want live-x active at version 1", rec.Code, rec.Body)
		}
	}
	if rec := do("POST", "/v1/objects/counter/live-x/live"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST live: %d, want 405", rec.Code)
	}
	if rec := do("GET", "/v1/objects/counter/live-x/live/more"); rec.Code != http.StatusNotFound {
		t.Errorf("GET live/more: %d, want 404", rec.Code)
	}
}
