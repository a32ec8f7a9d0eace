package integration

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/testcerts"
)

// TestGatewayTLS: serve --tls-cert/--tls-key answers HTTPS with a
// certificate its CA vouches for, refuses plain HTTP, and serves a new
// certificate once the files are replaced, without a restart.
func TestGatewayTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "gw")
	cert, key := ca.Issue("gateway", "first")
	p := serve(t, t.TempDir(), "--tls-cert", cert, "--tls-key", key)
	base := strings.Replace(p.url, "http://", "https://", 1)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DisableKeepAlives: true}}
	served := func() string {
		t.Helper()
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("healthz over https: %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "first" {
		t.Fatalf("serves %q, want first", cn)
	}
	if resp, err := client.Get(p.url + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain http to the https gateway: %d", resp.StatusCode)
		}
	}
	ca.Issue("gateway", "second")
	deadline := time.Now().Add(30 * time.Second)
	for cn := served(); cn != "second"; cn = served() {
		if time.Now().After(deadline) {
			t.Fatalf("still serving %q 30 s after the files changed:\n%s", cn, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.output(), "tls: certificate reloaded") {
		t.Fatalf("no reload logged:\n%s", p.output())
	}
}
