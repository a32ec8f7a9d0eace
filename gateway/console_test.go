package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
