package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-objects/strata/log"
)

// The embedded NATS server's client side (DESIGN.md, "Security model": the
// log is Strata's alone). By default the server has no client listener:
// the node connects in process and nothing else can reach the log. With
// --nats-listen, clients must authenticate: in a cluster with the
// cluster's credential, alone with a client password read from
// --nats-client-password-file or made once in the data folder (mode 0600).
// A listener off loopback also needs TLS (--nats-tls-cert/--nats-tls-key).

// clientPasswordFileName is the client password a node alone makes in its
// data folder when --nats-listen is set and no password file is given.
const clientPasswordFileName = "nats-client-password"

// clientPasswordBytes of randomness: 256 bits, base64url-encoded.
const clientPasswordBytes = 32

// registerNATS adds serve's flags of the embedded server's client side.
func (c *logConfig) registerNATS(fs *flag.FlagSet) {
	fs.StringVar(&c.natsListen, "nats-listen", "", "TCP client address of the embedded NATS server (port 0: a free port); empty: no listener, the node connects in process and nothing else can reach the log. Clients must authenticate (see --nats-client-password-file); off loopback it needs --nats-tls-cert")
	fs.StringVar(&c.natsClientPasswordFile, "nats-client-password-file", "", "with --nats-listen on a node alone: file holding the client password (user --nats-user); empty: "+clientPasswordFileName+" in --data, made with mode 0600 if missing")
	fs.StringVar(&c.natsTLS.CertFile, "nats-tls-cert", "", "PEM certificate of the embedded NATS server: TLS on its client listener and, with --cluster, on its routes")
	fs.StringVar(&c.natsTLS.KeyFile, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
	fs.StringVar(&c.natsTLS.CAFile, "nats-tls-ca", "", "PEM CA: routes verify each other against it (needed with --cluster and --nats-tls-cert); with --nats-url, the server is verified against it")
}

// validateNATS checks the client-side flags before anything listens.
func (c *logConfig) validateNATS() error {
	t := c.natsTLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return &usageError{"--nats-tls-cert and --nats-tls-key go together"}
	}
	if c.natsURL != "" {
		if c.natsListen != "" || t.CertFile != "" || c.natsClientPasswordFile != "" {
			return &usageError{"--nats-listen, --nats-tls-cert and --nats-client-password-file configure the embedded server; with --nats-url there is none (--nats-tls-ca verifies the external one)"}
		}
		return nil
	}
	if t.CertFile != "" && c.cluster.enabled && t.CAFile == "" {
		return &usageError{"--nats-tls-cert with --cluster needs --nats-tls-ca: routes verify each other's certificates"}
	}
	if c.natsClientPasswordFile != "" && (c.natsListen == "" || c.cluster.enabled) {
		return &usageError{"--nats-client-password-file needs --nats-listen on a node alone (a cluster's clients use the cluster's credential)"}
	}
	if c.natsListen == "" {
		return nil
	}
	host, _, err := splitHostPort("--nats-listen", c.natsListen)
	if err != nil {
		return err
	}
	if t.CertFile == "" && !log.IsLoopback(host) {
		return &usageError{fmt.Sprintf("--nats-listen %s is off loopback: it needs --nats-tls-cert and --nats-tls-key (the client password would cross the network in clear)", c.natsListen)}
	}
	return nil
}

// embedded is the embedded server's config: store, listener, credentials,
// routes and TLS.
func (c *logConfig) embedded() (log.EmbeddedConfig, error) {
	ec := log.EmbeddedConfig{Dir: filepath.Join(c.dataDir, "nats"), Logger: c.logger}
	if c.natsListen != "" {
		host, port, err := splitHostPort("--nats-listen", c.natsListen)
		if err != nil {
			return ec, err
		}
		ec.Listen, ec.Host, ec.Port = true, host, port
	}
	if err := c.cluster.applyEmbedded(&ec); err != nil {
		return ec, err
	}
	if c.natsTLS.CertFile != "" {
		t := c.natsTLS
		ec.TLS = &t
	}
	if ec.Listen && !ec.Auth.Enabled() {
		pw, err := c.clientPassword()
		if err != nil {
			return ec, err
		}
		ec.Auth = log.Auth{User: c.cluster.user, Password: pw}
	}
	return ec, nil
}

// clientPassword reads the client password of a node alone, making it in
// the data folder the first time.
func (c *logConfig) clientPassword() (string, error) {
	path := c.natsClientPasswordFile
	if path == "" {
		path = filepath.Join(c.dataDir, clientPasswordFileName)
		if err := makeSecretFile(path); err != nil {
			return "", err
		}
	}
	return readSecretFile(path)
}

// makeSecretFile writes a new random password to path with mode 0600,
// unless the file exists.
func makeSecretFile(path string) error {
	b := make([]byte, clientPasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("nats client password: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("nats client password: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nats client password: %w", err)
	}
	_, werr := f.WriteString(base64.RawURLEncoding.EncodeToString(b) + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path) // half a password is none
		return fmt.Errorf("nats client password %s: %w", path, err)
	}
	return nil
}

// readSecretFile reads a password from path's first line, refusing a file
// that others than its owner may read (as ssh refuses such a key).
func readSecretFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", &usageError{fmt.Sprintf("nats client password: %v", err)}
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", &usageError{fmt.Sprintf("nats client password %s has mode %04o: others may read it; chmod 600 it", path, st.Mode().Perm())}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("nats client password: %w", err)
	}
	pw, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	if pw == "" {
		return "", &usageError{fmt.Sprintf("nats client password %s is empty", path)}
	}
	return pw, nil
}
