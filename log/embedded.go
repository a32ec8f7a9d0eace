package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the NATS server that a single node runs
// in-process (DESIGN.md, "Scale-out": one node needs no other process).
// Zero values take the documented defaults.
type EmbeddedConfig struct {
	Dir string // JetStream store directory (required)
	// Listen opens a TCP client listener on Host:Port. Without it (the
	// default) the server has no client port at all: Strata connects in
	// process (Config.Server), so nothing outside the process can reach
	// the log (DESIGN.md, "Security model"). In a cluster the routes have
	// their own listener (ClusterConfig) either way.
	Listen bool
	Host   string // client listen address with Listen; default "127.0.0.1"
	Port   int    // client port with Listen; 0 picks a free port
	// SyncInterval 0 (the default) fsyncs before every acknowledgement
	// (JetStream's SyncAlways): acknowledged means on disk. A positive value
	// is JetStream's periodic fsync, faster and weaker: a machine crash can
	// lose writes that were acknowledged within the interval. Only an
	// explicit, named choice may set it.
	SyncInterval time.Duration
	// MaxPayload is the largest message in bytes; default 8 MiB, so that
	// the largest write set (1 MiB) plus its envelope always fits.
	MaxPayload int32
	ServerName string       // default "strata"; a cluster's nodes need distinct names
	Logger     *slog.Logger // server log lines; default slog.Default()
	// Cluster, if set, joins this server to others by routes (cluster.go).
	Cluster *ClusterConfig
	// Auth, if set, is required of clients (in process too) and, in a
	// cluster, of routes.
	Auth Auth
	// TLS, if set, is required of the client listener and, in a cluster,
	// of the routes (tls.go).
	TLS *TLSConfig
}

// Defaults of EmbeddedConfig.
const (
	DefaultMaxPayload = 8 << 20
	defaultHost       = "127.0.0.1"
	defaultServerName = "strata"
	// embeddedReadyTimeout bounds the wait for the listener; a server that
	// is not accepting by then has failed (port in use, store locked).
	embeddedReadyTimeout = 10 * time.Second
)

// Errors of a client listener that RunEmbedded refuses to open.
var (
	ErrListenerNoAuth = errors.New("a client listener needs credentials (Auth): anyone reaching it could rewrite or delete the log")
	ErrListenerNoTLS  = errors.New("a client listener off loopback needs TLS: its password would cross the network in clear")
)

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns        *server.Server
	listen    bool   // has a TCP client listener
	storeDir  string // EmbeddedConfig.Dir
	clustered bool   // EmbeddedConfig.Cluster was set
	sb        standby
}

// RunEmbedded starts a server and waits until it accepts connections.
func RunEmbedded(cfg EmbeddedConfig) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("log: embedded nats: EmbeddedConfig.Dir is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("log: embedded nats: port %d out of range", cfg.Port)
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("log: embedded nats: negative sync interval %s", cfg.SyncInterval)
	}
	if cfg.MaxPayload < 0 {
		return nil, fmt.Errorf("log: embedded nats: negative max payload %d", cfg.MaxPayload)
	}
	if cfg.Host == "" {
		cfg.Host = defaultHost
	}
	if cfg.Port == 0 {
		cfg.Port = server.RANDOM_PORT
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.ServerName == "" {
		cfg.ServerName = defaultServerName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Cluster != nil && !cfg.Listen {
		// nats-server starts its routes only once its client accept loop
		// runs (Server.Start: StartRouting waits for clientListenReady,
		// which AcceptLoop closes and DontListen skips), so a clustered
		// server keeps a client listener: on loopback, on a free port,
		// behind Auth like the routes.
		cfg.Listen, cfg.Host, cfg.Port = true, defaultHost, server.RANDOM_PORT
	}
	if cfg.Listen {
		if err := checkListener(cfg); err != nil {
			return nil, err
		}
	} else {
		// No client listener: the ports below are never opened.
		cfg.Host, cfg.Port = defaultHost, server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: !cfg.Listen,
		MaxPayload: cfg.MaxPayload,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// SyncAlways makes the store fsync before it acknowledges; an
		// atomic batch is fsynced once, which is what group commit buys.
		SyncAlways:             cfg.SyncInterval == 0,
		SyncInterval:           cfg.SyncInterval,
		NoSigs:                 true, // the process owns its signals, not the library
		DisableJetStreamBanner: true,
	}
	if err := applyCluster(opts, cfg); err != nil {
		return nil, fmt.Errorf("log: embedded nats: %w", err)
	}
	if err := applyTLS(opts, cfg); err != nil {
		return nil, fmt.Errorf("log: embedded nats: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("log: embedded nats in %s: %w", cfg.Dir, err)
	}
	logger := &natsLogger{l: cfg.Logger.With("component", "nats")}
	ns.SetLoggerV2(logger, false, false, false)
	// Start does not block. When JetStream cannot start (store locked by
	// another process, unreadable directory) it reports through Fatalf
	// and returns without listening, so look there before waiting.
	ns.Start()
	if err := logger.fatalErr(); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("log: embedded nats in %s: %w", cfg.Dir, err)
	}
	if !ns.ReadyForConnections(embeddedReadyTimeout) {
		ns.Shutdown()
		if err := logger.fatalErr(); err != nil {
			return nil, fmt.Errorf("log: embedded nats in %s: %w", cfg.Dir, err)
		}
		return nil, fmt.Errorf("log: embedded nats on %s:%d (store %s): not accepting connections after %s", cfg.Host, cfg.Port, cfg.Dir, embeddedReadyTimeout)
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, fmt.Errorf("log: embedded nats in %s: JetStream did not start", cfg.Dir)
	}
	srv := &Server{ns: ns, listen: cfg.Listen, storeDir: cfg.Dir, clustered: cfg.Cluster != nil}
	srv.sb.logf = cfg.Logger.With("component", "standby").Info
	return srv, nil
}

// checkListener refuses a client listener that anyone could use: one
// without credentials, or one off loopback without TLS (the password would
// cross the network in clear).
func checkListener(cfg EmbeddedConfig) error {
	if !cfg.Auth.Enabled() {
		return fmt.Errorf("log: embedded nats client listener on %s:%d: %w", cfg.Host, cfg.Port, ErrListenerNoAuth)
	}
	if cfg.TLS == nil && !IsLoopback(cfg.Host) {
		return fmt.Errorf("log: embedded nats client listener on %s:%d: %w", cfg.Host, cfg.Port, ErrListenerNoTLS)
	}
	return nil
}

// IsLoopback reports whether host (a name or an address, no port) can
// only be reached from this machine: localhost or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ClientURL is the URL clients connect to over TCP, e.g.
// nats://127.0.0.1:4222 (tls://… with TLS), or "" when the server has no
// client listener: then only the process itself reaches it (Config.Server).
func (s *Server) ClientURL() string {
	if !s.listen {
		return ""
	}
	return s.ns.ClientURL()
}

// InProcessConn is a client connection to the server inside this process,
// with no network in between. It makes *Server a nats.go
// InProcessConnProvider, which is how Open connects with Config.Server
// (and how tests outside this package reach a server without a port).
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// Shutdown stops the server gracefully (JetStream flushes and closes its
// stores) and waits for it, or for ctx. If ctx ends first the shutdown
// carries on in the background and Shutdown reports ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.stopStandby()
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("log: embedded nats shutdown: %w", ctx.Err())
	}
}

// natsLogger adapts the server's logger to slog. Debug and trace lines are
// dropped: they are per message and would drown everything else.
type natsLogger struct {
	l     *slog.Logger
	mu    sync.Mutex
	fatal error // first Fatalf, which the server expects to end the process
}

func (n *natsLogger) Noticef(format string, v ...any) { n.l.Info(line(format, v)) }
func (n *natsLogger) Warnf(format string, v ...any)   { n.l.Warn(line(format, v)) }
func (n *natsLogger) Errorf(format string, v ...any)  { n.l.Error(line(format, v)) }
func (n *natsLogger) Debugf(string, ...any)           {}
func (n *natsLogger) Tracef(string, ...any)           {}

// Fatalf logs instead of exiting: a library must not end its host
// process. RunEmbedded turns the first one into its error.
func (n *natsLogger) Fatalf(format string, v ...any) {
	msg := line(format, v)
	n.l.Error(msg, "fatal", true)
	n.mu.Lock()
	if n.fatal == nil {
		n.fatal = errors.New(msg)
	}
	n.mu.Unlock()
}

func (n *natsLogger) fatalErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fatal
}

func line(format string, v []any) string { return strings.TrimSpace(fmt.Sprintf(format, v...)) }
