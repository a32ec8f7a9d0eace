package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The gateway's HTTPS (--tls-cert, --tls-key). The certificate is served
// through tls.Config.GetCertificate from a reloader, so rotating it needs
// no restart: the reloader loads the files again on SIGHUP and when their
// contents change (checked every certPollInterval). A pair that does not
// load (a half-written file, a key that does not match) is logged and the
// certificate in use stays.

// certPollInterval is how often the reloader looks at the files.
const certPollInterval = 2 * time.Second

// certReloader serves the current certificate of a cert/key file pair.
// Its goroutine is owned by whoever calls newCertReloader, which stops it
// with stop.
type certReloader struct {
	certFile, keyFile string
	logger            *slog.Logger
	poll              time.Duration
	cert              atomic.Pointer[tls.Certificate]
	mu                struct {
		sync.Mutex
		last []byte // the pair's bytes as last loaded, to tell a change
	}
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// newCertReloader loads the pair (an error if it does not load) and starts
// watching it.
func newCertReloader(certFile, keyFile string, poll time.Duration, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, logger: logger, poll: poll, done: make(chan struct{})}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go r.run(ctx, hup)
	return r, nil
}

// load reads and parses the pair; it reports whether the bytes changed
// since the last load.
func (r *certReloader) load() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("--tls-cert: %w", err)
	}
	k, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("--tls-key: %w", err)
	}
	both := append(append(c[:len(c):len(c)], 0), k...)
	if bytes.Equal(both, r.mu.last) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		return false, fmt.Errorf("tls certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert.Store(&cert)
	r.mu.last = both
	return true, nil
}

func (r *certReloader) run(ctx context.Context, hup chan os.Signal) {
	defer close(r.done)
	defer signal.Stop(hup)
	tick := time.NewTicker(r.poll)
	defer tick.Stop()
	for {
		why := "file change"
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "SIGHUP"
		case <-tick.C:
		}
		changed, err := r.load()
		switch {
		case err != nil:
			r.logger.Warn("tls: certificate not reloaded; the one in use stays", "cause", why, "err", err)
		case changed:
			r.logger.Info("tls: certificate reloaded", "cause", why, "cert", r.certFile)
		}
	}
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := r.cert.Load()
	if c == nil {
		return nil, errors.New("tls: no certificate loaded")
	}
	return c, nil
}

// stop ends the watching goroutine and waits for it.
func (r *certReloader) stop() {
	r.once.Do(r.cancel)
	<-r.done
}

// tlsConfig is the gateway's server TLS: TLS 1.2 or later, the reloader's
// certificate.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
