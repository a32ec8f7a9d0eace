package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

func runServe(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "serve [flags]")
	var lc logConfig
	fs.StringVar(&lc.dataDir, "data", "./data", "data folder: the embedded JetStream store (nats/) and the Badger snapshot (snapshot/)")
	fs.StringVar(&lc.natsURL, "nats-url", "", "use this external NATS (JetStream enabled) instead of the embedded server")
	lc.registerNATS(fs)
	fs.StringVar(&lc.fsync, "fsync", "always", "embedded JetStream durability: 'always' fsyncs before every acknowledgement; 'interval' is WEAKER: acknowledged writes can be lost in a machine crash")
	fs.DurationVar(&lc.fsyncInterval, "fsync-interval", time.Second, "with --fsync=interval, how often JetStream fsyncs")
	fs.IntVar(&lc.shards, "shards", 0, "shard count P, fixed when the data folder is created (0: as recorded, or the default for a new folder)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP listen address of the gateway")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the gateway: it serves HTTPS, reloading the files on SIGHUP and when they change")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	idle := fs.Duration("idle-timeout", 30*time.Second, "evict an object's activation after this long without a request")
	fs.IntVar(&lc.maxActivations, "max-activations", maxActivationsDefault, "most live activations on this node; past it the least recently used idle ones are evicted (storage and sockets stay)")
	fs.DurationVar(&lc.settleDelay, "settle-delay", objects.DefaultSettleDelay, "how long the settle of a delivered message (Send, no reply) may wait for its sender's next event before the sender writes it alone")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long a graceful stop may take; past it the process says what it was waiting for and exits with an error")
	streamsMax := fs.Int("streams-max", 256, "most live tails and history follows at once (each holds server-side consumers); past it, 503")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	lc.cluster.register(fs)
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060); off when empty")
	checkpointFlags(fs, &lc.checkpoints)
	lc.js.register(fs)
	idempotencyFlags(fs, &lc.idemWindows)
	lc.alarmRepair.register(fs)
	var wsf wsFlags
	wsf.register(fs)
	var af authFlags
	af.register(fs)
	var mf metricsFlags
	mf.register(fs)
	allowedHosts := fs.String("allowed-hosts", "", "comma-separated Host names the gateway answers besides loopback ones and the --http host: names, *.domain, IP addresses ('*': any host; needed behind a DNS name or a proxy)")
	corsOrigins := fs.String("cors-origins", "", "comma-separated browser origins (scheme://host[:port]) besides the gateway's own that may call it")
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
	if *idle <= 0 || *shutdown <= 0 || *streamsMax <= 0 {
		return &usageError{"--idle-timeout, --shutdown-timeout and --streams-max must be positive"}
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return &usageError{"--tls-cert and --tls-key go together"}
	}
	if err := lc.validate(); err != nil {
		return err // before anything listens
	}
	if err := lc.js.validate(); err != nil {
		return err
	}
	if err := applyIdemWindows(lc.idemWindows, env.Classes); err != nil {
		return err
	}
	if err := gateway.CheckEdge(splitList(*allowedHosts), splitList(*corsOrigins)); err != nil {
		return &usageError{err.Error()}
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
	listens := map[string]string{"--http": *httpAddr}
	if lc.natsURL == "" {
		if lc.natsListen != "" { // "": no client listener at all
			listens["--nats-listen"] = lc.natsListen
		}
		if lc.cluster.enabled {
			listens["--cluster-listen"] = lc.cluster.listen
		}
	}
	authOn, err := af.on(listens, logger)
	if err != nil {
		return err // before anything listens
	}

	var certs *certReloader
	if *tlsCert != "" {
		if certs, err = newCertReloader(*tlsCert, *tlsKey, certPollInterval, logger); err != nil {
			return &usageError{err.Error()}
		}
		defer certs.stop()
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	}
	lc.cluster.httpAddr = ln.Addr().String()
	var nodeP atomic.Pointer[node]
	var gwP atomic.Pointer[gateway.Gateway]
	if mf.on {
		lc.metrics = newMetrics(env.Classes, &nodeP, &gwP)
	}
	// Tracing starts before the node, whose projector and router trace
	// too, and stops after it (the deferred Close runs last).
	tr, err := mf.startTracing(ctx, lc.cluster.node)
	if err != nil {
		ln.Close()
		return err
	}
	if tr != nil {
		lc.tracer = tr.Tracer()
		defer func() {
			tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tr.Close(tctx); err != nil {
				logger.Warn("traces not all sent", "err", err)
			}
		}()
		logger.Info("tracing on", "otlp", mf.otlpEndpoint, "sample", mf.traceSample)
	}
	started := time.Now()
	n, err := openNode(ctx, lc, env.Classes, *idle)
	if err != nil {
		ln.Close()
		return err
	}
	nodeP.Store(n)
	var backend gateway.Backend = n.rt
	var outbox gateway.OutboxAdmin = n.rt
	if n.router != nil {
		backend = n.router // requests go to their object's owner
		outbox = n.router
	}
	gc := gateway.Config{
		Backend: backend, Logger: logger, Alarms: n.alarms, Outbox: outbox, WebSocket: wsCfg, Health: n.proj.Health, StreamsMax: *streamsMax,
		AllowedHosts: append(splitList(*allowedHosts), listenHost(ln.Addr().String(), *httpAddr)...),
		CORSOrigins:  splitList(*corsOrigins),
		Raft:         raftStatus(n.srv, lc.cluster.enabled),
		Classes:      n.js,
		Inspect:      n.rt,
		NodeStats: func() any {
			if g := gwP.Load(); g != nil {
				return nodeStats(n, g, started)
			}
			return nil
		},
	}
	if lc.metrics != nil {
		gc.Metrics, gc.Observe = lc.metrics.Handler(), lc.metrics.ObserveRequest
	}
	gc.Tracer = lc.tracer
	var tokens *log.Tokens
	fail := func(err error) error {
		if tokens != nil {
			tokens.Close()
		}
		ln.Close()
		n.close(context.Background(), nil)
		return err
	}
	if authOn {
		if tokens, err = n.log.OpenTokens(ctx); err != nil {
			return fail(err)
		}
		if err := ensureFirstAdmin(ctx, tokens, lc.dataDir, logger); err != nil {
			return fail(err)
		}
		gc.Tokens = tokens
	}
	gw, err := gateway.New(gc)
	if err != nil {
		return fail(err)
	}
	gwP.Store(gw)
	if *pprofAddr != "" {
		prof, err := startPprof(*pprofAddr, logger)
		if err != nil {
			return fail(err)
		}
		defer prof.stop()
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	if certs != nil {
		srv.TLSConfig = certs.tlsConfig()
		go func() { served <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	logger.Info("serving", "http", ln.Addr().String(), "tls", certs != nil, "data", lc.dataDir, "auth", authOn)

	select {
	case <-ctx.Done():
		logger.Info("stopping: no new requests; finishing turns")
	case err = <-served:
		logger.Error("http server failed", "err", err)
	}
	if err := stopServing(logger, *shutdown, func(ctx context.Context, step func(string)) error {
		step("closing tails and follows")
		gw.CloseStreams() // tails would hold Shutdown to its deadline
		step("closing websockets")
		if err := gw.CloseWebSockets(ctx); err != nil {
			logger.Warn("websockets did not all close", "err", err)
		}
		step("finishing HTTP requests")
		herr := srv.Shutdown(ctx)
		if errors.Is(herr, http.ErrServerClosed) {
			herr = nil
		}
		if tokens != nil {
			step("closing the token watch")
			tokens.Close() // its watch ends before the log's connection
		}
		return errors.Join(herr, n.close(ctx, step))
	}); err != nil {
		return err
	}
	logger.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// listenHost is the host part of the listen address as given (a name such
// as myhost in myhost:8080) and as bound (its IP address, or 0.0.0.0 when
// every address is listened on), which the gateway serves as Host.
func listenHost(bound, given string) []string {
	var out []string
	for _, a := range []string{given, bound} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			out = append(out, h)
		}
	}
	return out
}

// ErrShutdownTimeout is a graceful stop that did not end within
// --shutdown-timeout.
var ErrShutdownTimeout = errors.New("shutdown timed out")

// stopServing runs stop with a context that ends after timeout, and
// returns when it does or when timeout passes, whichever comes first:
// some steps cannot be interrupted (Badger's Close flushes its memtable and
// retries a failed write forever), so the process must not wait on them.
// Past the timeout it logs the step stop was in and returns
// ErrShutdownTimeout; the process then exits non-zero, leaving the
// stuck step behind. What is acknowledged is in the log already.
func stopServing(logger *slog.Logger, timeout time.Duration, stop func(ctx context.Context, step func(string)) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var current atomic.Value
	current.Store("starting")
	step := func(s string) {
		current.Store(s)
		logger.Debug("stopping", "step", s)
	}
	done := make(chan error, 1)
	go func() { done <- stop(ctx, step) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	case <-timer.C:
		waiting := current.Load().(string)
		logger.Error("shutdown timed out; exiting without finishing", "timeout", timeout, "waiting_for", waiting)
		return fmt.Errorf("%w after %s, waiting for %s", ErrShutdownTimeout, timeout, waiting)
	}
}
