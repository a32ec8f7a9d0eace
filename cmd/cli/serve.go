package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/strata-objects/strata/gateway"
)

func runServe(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "serve [flags]")
	var lc logConfig
	fs.StringVar(&lc.dataDir, "data", "./data", "data folder: the embedded JetStream store (nats/) and the Badger snapshot (snapshot/)")
	fs.StringVar(&lc.natsURL, "nats-url", "", "use this external NATS (JetStream enabled) instead of the embedded server")
	fs.StringVar(&lc.natsListen, "nats-listen", "127.0.0.1:0", "client address of the embedded NATS server (port 0: a free port)")
	fs.StringVar(&lc.fsync, "fsync", "always", "embedded JetStream durability: 'always' fsyncs before every acknowledgement; 'interval' is WEAKER: acknowledged writes can be lost in a machine crash")
	fs.DurationVar(&lc.fsyncInterval, "fsync-interval", time.Second, "with --fsync=interval, how often JetStream fsyncs")
	fs.IntVar(&lc.shards, "shards", 0, "shard count P, fixed when the data folder is created (0: as recorded, or the default for a new folder)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP listen address of the gateway")
	idle := fs.Duration("idle-timeout", 30*time.Second, "evict an object's activation after this long without a request")
	fs.IntVar(&lc.maxActivations, "max-activations", maxActivationsDefault, "most live activations on this node; past it the least recently used idle ones are evicted (storage and sockets stay)")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long a graceful stop waits for turns to finish")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	lc.cluster.register(fs)
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060); off when empty")
	checkpointFlags(fs, &lc.checkpoints)
	var wsf wsFlags
	wsf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	wsCfg, err := wsf.config()
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	if *idle <= 0 {
		return &usageError{"--idle-timeout must be positive"}
	}
	if err := lc.validate(); err != nil {
		return err // before anything listens
	}
	if *pprofAddr != "" {
		if err := validatePprofAddr(*pprofAddr); err != nil {
			return err
		}
	}
	logger, err := newLogger(env.Stderr, *level)
	if err != nil {
		return err
	}
	lc.logger = logger

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	}
	lc.cluster.httpAddr = ln.Addr().String()
	n, err := openNode(ctx, lc, env.Classes, *idle)
	if err != nil {
		ln.Close()
		return err
	}
	var backend gateway.Backend = n.rt
	if n.router != nil {
		backend = n.router // requests go to their object's owner
	}
	gw, err := gateway.New(gateway.Config{Backend: backend, Logger: logger, Alarms: n.alarms, WebSocket: wsCfg})
	if err != nil {
		ln.Close()
		n.close(context.Background())
		return err
	}
	if *pprofAddr != "" {
		prof, err := startPprof(*pprofAddr, logger)
		if err != nil {
			ln.Close()
			n.close(context.Background())
			return err
		}
		defer prof.stop()
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("serving", "http", ln.Addr().String(), "data", lc.dataDir)

	select {
	case <-ctx.Done():
		logger.Info("stopping: no new requests; finishing turns")
	case err = <-served:
		logger.Error("http server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	gw.CloseStreams() // tails would hold Shutdown to its deadline
	if err := gw.CloseWebSockets(sctx); err != nil {
		logger.Warn("websockets did not all close", "err", err)
	}
	herr := srv.Shutdown(sctx)
	if errors.Is(herr, http.ErrServerClosed) {
		herr = nil
	}
	nerr := n.close(sctx)
	if err := errors.Join(herr, nerr); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
