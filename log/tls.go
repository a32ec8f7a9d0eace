package log

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

// TLS of NATS connections (DESIGN.md, "Security model"). A node's embedded
// server presents one certificate on its client listener and its routes;
// routes are mutual (each server checks the other's certificate against
// the CA), so a server without a certificate the CA signed cannot join the
// cluster. Clients are checked by password (Auth), and by TLS only as far
// as the server is concerned: they verify the server against the CA. A
// connection in process never goes through TLS: it has no network.

// TLSConfig names the PEM files of a node's NATS TLS.
type TLSConfig struct {
	CertFile string // this server's certificate (chain), PEM
	KeyFile  string // its private key, PEM
	// CAFile is the CA that signed the cluster's certificates: routes
	// verify each other against it, and clients verify the server. Empty
	// means the system's roots (clients only; routes need a CA).
	CAFile string
}

// tlsTimeoutSeconds bounds a TLS handshake on the server's listeners.
const tlsTimeoutSeconds = 5

// serverTLS is the server side: the certificate, and for routes the CA
// that the other side's certificate must chain to.
func (c *TLSConfig) serverTLS(mutual bool) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("log: nats tls needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("log: nats tls certificate %s, key %s: %w", c.CertFile, c.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if !mutual {
		return cfg, nil
	}
	if c.CAFile == "" {
		return nil, errors.New("log: nats tls between cluster routes needs a CA file (each server verifies the other)")
	}
	pool, err := c.caPool()
	if err != nil {
		return nil, err
	}
	// The same config serves accepted routes (ClientCAs) and dialled ones
	// (RootCAs; the certificate doubles as the client certificate).
	cfg.RootCAs, cfg.ClientCAs, cfg.ClientAuth = pool, pool, tls.RequireAndVerifyClientCert
	return cfg, nil
}

// ClientTLS is the client side of a connection to a server with TLS: it
// verifies the server against CAFile (or the system's roots).
func (c *TLSConfig) clientTLS() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile == "" {
		return cfg, nil
	}
	pool, err := c.caPool()
	if err != nil {
		return nil, err
	}
	cfg.RootCAs = pool
	return cfg, nil
}

func (c *TLSConfig) caPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("log: nats tls CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("log: nats tls CA %s: no PEM certificate in it", c.CAFile)
	}
	return pool, nil
}

// applyTLS sets the TLS options of an embedded server's client listener
// and routes.
func applyTLS(opts *server.Options, cfg EmbeddedConfig) error {
	if cfg.TLS == nil {
		return nil
	}
	if cfg.Listen {
		tc, err := cfg.TLS.serverTLS(false)
		if err != nil {
			return err
		}
		opts.TLSConfig, opts.TLSTimeout = tc, tlsTimeoutSeconds
	}
	if cfg.Cluster != nil {
		tc, err := cfg.TLS.serverTLS(true)
		if err != nil {
			return err
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, tlsTimeoutSeconds
	}
	return nil
}
