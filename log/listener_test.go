package log

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/strata-objects/strata/internal/testcerts"
)

// TestNoClientListener: by default the embedded server has no TCP client
// port at all, and the log reaches it in process.
func TestNoClientListener(t *testing.T) {
	srv := startServer(t)
	if srv.ns.Addr() != nil || srv.ClientURL() != "" {
		t.Fatalf("a server without Listen listens on %v (%q)", srv.ns.Addr(), srv.ClientURL())
	}
	l := openLog(t, srv, Config{Shards: 1})
	if _, err := l.Append(context.Background(), testEvent(objID(1), 1, "in process"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestClientListenerNeedsAuth: a listener is refused without credentials,
// and off loopback without TLS; with credentials, a client without them
// (or with wrong ones) cannot connect, and the log with them can.
func TestClientListenerNeedsAuth(t *testing.T) {
	if _, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet, Listen: true}); !errors.Is(err, ErrListenerNoAuth) {
		t.Fatalf("a listener without auth: %v", err)
	}
	if _, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet, Listen: true, Host: "0.0.0.0", Auth: testAuth}); !errors.Is(err, ErrListenerNoTLS) {
		t.Fatalf("a listener on 0.0.0.0 without TLS: %v", err)
	}
	srv, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet, Listen: true, Auth: testAuth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo(testAuth.User, "wrong-password-here")}} {
		if nc, err := nats.Connect(srv.ClientURL(), opts...); err == nil {
			nc.Close()
			t.Fatal("a client without the password connected")
		} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("connect: %v, want an authorization violation", err)
		}
	}
	l, err := Open(context.Background(), Config{URL: srv.ClientURL(), Auth: testAuth, Logger: quiet, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	if _, err := l.Append(context.Background(), testEvent(objID(1), 1, "over tcp"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestClientListenerTLS: with TLS, a client that trusts the CA connects,
// one that does not is refused, and one in process needs no TLS.
func TestClientListenerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "nats")
	cert, key := ca.Issue("server", "nats-server")
	tc := &TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.File}
	srv, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet, Listen: true, Auth: testAuth, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if !strings.HasPrefix(srv.ClientURL(), "tls://") {
		t.Fatalf("client URL %q, want tls://", srv.ClientURL())
	}
	ctx := context.Background()
	l, err := Open(ctx, Config{URL: srv.ClientURL(), Auth: testAuth, TLS: &TLSConfig{CAFile: ca.File}, Logger: quiet, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, err := l.Append(ctx, testEvent(objID(1), 1, "over tls"), 0); err != nil {
		t.Fatal(err)
	}
	// A client that does not trust the CA (the system's roots) is refused.
	if l2, err := Open(ctx, Config{URL: srv.ClientURL(), Auth: testAuth, TLS: &TLSConfig{}, Logger: quiet, Shards: 1}); err == nil {
		l2.Close(ctx)
		t.Fatal("a client connected without trusting the server's CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: %v, want a certificate error", err)
	}
	// A client without TLS is refused.
	if nc, err := nats.Connect(strings.Replace(srv.ClientURL(), "tls://", "nats://", 1), nats.UserInfo(testAuth.User, testAuth.Password)); err == nil {
		nc.Close()
		t.Fatal("a plain client connected to a TLS listener")
	}
	in, err := Open(ctx, Config{Server: srv, Auth: testAuth, Logger: quiet, Shards: 1})
	if err != nil {
		t.Fatalf("in process beside a TLS listener: %v", err)
	}
	in.Close(ctx)
}

// TestClusterRoutesTLS: servers whose certificates the cluster's CA signed
// form routes over mutual TLS and replicate; a server with the right
// password but a certificate from another CA cannot join.
func TestClusterRoutesTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a JetStream cluster")
	}
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "cluster")
	ports := []int{testport.Free(t), testport.Free(t)}
	routes := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	var srvs []*Server
	for i, p := range ports {
		cert, key := ca.Issue(fmt.Sprintf("n%d", i+1), fmt.Sprintf("n%d", i+1))
		srv, err := RunEmbedded(EmbeddedConfig{
			Dir: t.TempDir(), Logger: quiet, ServerName: fmt.Sprintf("n%d", i+1), Auth: testAuth,
			TLS:     &TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca.File},
			Cluster: &ClusterConfig{Port: p, Routes: routes},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		srvs = append(srvs, srv)
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for i, s := range srvs {
			if s.Routes() < 1 {
				return fmt.Errorf("server %d has no route", i+1)
			}
		}
		return nil
	})
	other := testcerts.NewCA(t, t.TempDir(), "other")
	cert, key := other.Issue("intruder", "intruder")
	rec := &logRecorder{}
	bad, err := RunEmbedded(EmbeddedConfig{
		Dir: t.TempDir(), Logger: slog.New(rec), ServerName: "intruder", Auth: testAuth,
		TLS:     &TLSConfig{CertFile: cert, KeyFile: key, CAFile: other.File},
		Cluster: &ClusterConfig{Routes: routes},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Shutdown(context.Background())
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !rec.has("certificate") {
			return errors.New("the intruder's route has not been refused yet")
		}
		return nil
	})
	if n := bad.Routes(); n != 0 {
		t.Fatalf("the intruder has %d routes", n)
	}
	for i, s := range srvs {
		if n := s.Routes(); n != 1 {
			t.Fatalf("server %d has %d routes, want only its peer", i+1, n)
		}
	}
	// Routes without a CA are refused at start.
	if _, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet, Auth: testAuth, ServerName: "x",
		TLS: &TLSConfig{CertFile: cert, KeyFile: key}, Cluster: &ClusterConfig{Routes: routes}}); err == nil {
		t.Fatal("routes with TLS and no CA accepted")
	}
}
