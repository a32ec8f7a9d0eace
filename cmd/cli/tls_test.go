package cli

import (
	"crypto/tls"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/testcerts"
)

// servedCN is the common name of the certificate an HTTPS server presents
// to a client that trusts ca.
func servedCN(t *testing.T, url string, ca *testcerts.CA) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].Subject.CommonName
}

// waitCN polls until the server presents the certificate named cn.
func waitCN(t *testing.T, url string, ca *testcerts.CA, cn string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := servedCN(t, url, ca); got != cn; got = servedCN(t, url, ca) {
		if time.Now().After(deadline) {
			t.Fatalf("the server still presents %q, want %q", got, cn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startTLS serves HTTPS with r's certificates, as serve does.
func startTLS(t *testing.T, r *certReloader) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), TLSConfig: r.tlsConfig(),
		ErrorLog: stdlog.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "https://" + ln.Addr().String()
}

// TestCertReloadOnFileChange: replacing the certificate files changes the
// certificate served, without a restart; a pair that does not load keeps
// the one in use.
func TestCertReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "gw")
	cert, key := ca.Issue("gateway", "first")
	r, err := newCertReloader(cert, key, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	url := startTLS(t, r)
	if cn := servedCN(t, url, ca); cn != "first" {
		t.Fatalf("serves %q, want first", cn)
	}
	ca.Issue("gateway", "second")
	waitCN(t, url, ca, "second")
	// A key that does not match: the reloader keeps "second".
	other := testcerts.NewCA(t, t.TempDir(), "other")
	_, otherKey := other.Issue("x", "x")
	b, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.load(); err == nil {
		t.Fatal("a mismatched key loaded")
	}
	if cn := servedCN(t, url, ca); cn != "second" {
		t.Fatalf("after a bad pair the server presents %q, want second", cn)
	}
}

// TestCertReloadOnSIGHUP: with no polling to speak of, SIGHUP reloads.
func TestCertReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "gw")
	cert, key := ca.Issue("gateway", "first")
	r, err := newCertReloader(cert, key, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	url := startTLS(t, r)
	ca.Issue("gateway", "second")
	if cn := servedCN(t, url, ca); cn != "first" {
		t.Fatalf("reloaded %q before the signal", cn)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCN(t, url, ca, "second")
}

// TestCertReloaderRefusesBadFiles: serve does not start on a pair that
// does not load.
func TestCertReloaderRefusesBadFiles(t *testing.T) {
	if _, err := newCertReloader("/nonexistent.pem", "/nonexistent-key.pem", time.Second, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a missing certificate loaded")
	}
}
