package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the NATS server that one node runs in-process.
type EmbeddedConfig struct {
	Dir  string // JetStream store directory (required)
	Host string // default "127.0.0.1"
	Port int    // client port; 0 means a free port
	// SyncInterval 0 (the default) fsyncs before every acknowledgement
	// (JetStream's SyncAlways). A positive value is JetStream's periodic
	// fsync: faster, and acknowledged writes can be lost in a machine crash.
	SyncInterval time.Duration
	MaxPayload   int32  // default 8 MiB: a full turn plus its envelope must fit
	ServerName   string // default "strata"
	Logger       *slog.Logger
}

// DefaultMaxPayload is the embedded server's message size limit.
const DefaultMaxPayload = 8 << 20

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns *server.Server
}

// RunEmbedded starts a server and waits until it accepts connections.
func RunEmbedded(cfg EmbeddedConfig) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("log: EmbeddedConfig.Dir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = server.RANDOM_PORT
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "strata"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		Host:         cfg.Host,
		Port:         cfg.Port,
		JetStream:    true,
		StoreDir:     cfg.Dir,
		MaxPayload:   cfg.MaxPayload,
		SyncAlways:   cfg.SyncInterval == 0,
		SyncInterval: cfg.SyncInterval,
		NoSigs:       true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.SetLoggerV2(natsLogger{cfg.Logger.With("component", "nats")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s (store %s)", cfg.Dir)
	}
	return &Server{ns: ns}, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits for it, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("embedded nats shutdown: %w", ctx.Err())
	}
}

// natsLogger adapts the server's logger to slog.
type natsLogger struct{ l *slog.Logger }

func msg(f string, v []any) string { return strings.TrimSpace(fmt.Sprintf(f, v...)) }

func (n natsLogger) Noticef(f string, v ...any) { n.l.Debug(msg(f, v)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Warn(msg(f, v)) }
func (n natsLogger) Fatalf(f string, v ...any)  { n.l.Error(msg(f, v)) }
func (n natsLogger) Errorf(f string, v ...any)  { n.l.Error(msg(f, v)) }
func (natsLogger) Debugf(string, ...any)        {}
func (natsLogger) Tracef(string, ...any)        {}
