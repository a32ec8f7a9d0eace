package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/jsclass"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/metrics"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// logConfig says where the log lives: an embedded NATS server in the data
// folder (the default), or an external NATS at URL.
type logConfig struct {
	dataDir    string
	natsURL    string
	natsListen string // "" (the default): no client listener, in process only
	// natsClientPasswordFile holds the client listener's password of a
	// node alone; "" makes one in the data folder (natsauth.go).
	natsClientPasswordFile string
	natsTLS                log.TLSConfig // --nats-tls-*: the embedded server's, or the CA of --nats-url's
	fsync                  string
	fsyncInterval          time.Duration
	shards                 int
	logger                 *slog.Logger
	cluster                clusterConfig            // scale-out (cluster.go); zero: one node alone
	checkpoints            objects.CheckpointConfig // checkpoints and per-class retention (cmd/cli/checkpoint.go)
	idemWindows            map[string]time.Duration // per-class idempotency windows (cmd/cli/idempotency.go)
	alarmRepair            alarmRepairFlags
	// maxActivations caps the live activations (--max-activations); 0
	// takes maxActivationsDefault.
	maxActivations int
	// settleDelay is objects.Config.SettleDelay (--settle-delay); 0 takes
	// objects.DefaultSettleDelay.
	settleDelay time.Duration
	js          jsFlags // deployed JavaScript classes (jsnode.go)
	// metrics, if set, is fed by the node's hooks (cmd/cli/metrics.go).
	metrics *metrics.Metrics
	// tracer, if set, traces the projector's applies and the forwarded
	// requests this node serves (--otlp-endpoint); the runtime traces the
	// turns of traced requests without it (objects/spans.go).
	tracer trace.Tracer
	// metricsGate, if set, switches the metrics hooks off while false
	// (strata bench --overhead); nil: they always count.
	metricsGate *atomic.Bool
}

// alarmRepairFlags tune the alarm repair that runs beyond start and
// activation (alarms/repair.go).
type alarmRepairFlags struct {
	sweepInterval    time.Duration
	sweepPage        int
	takeoverLookback time.Duration
}

func (f *alarmRepairFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.sweepInterval, "alarm-sweep-interval", 10*time.Second, "how often one page of the pending alarms is checked for a missing schedule (negative: no sweep)")
	fs.IntVar(&f.sweepPage, "alarm-sweep-page", 512, "pending alarms checked per sweep tick")
	fs.DurationVar(&f.takeoverLookback, "alarm-takeover-lookback", time.Minute, "in a cluster, how far back in the log a node reads for the alarms of objects it gains from a node that left")
}

func (f alarmRepairFlags) validate() error {
	switch {
	case f.sweepInterval == 0:
		return &usageError{"--alarm-sweep-interval must not be 0 (negative disables the sweep)"}
	case f.sweepPage <= 0:
		return &usageError{"--alarm-sweep-page must be positive"}
	case f.takeoverLookback <= 0:
		return &usageError{"--alarm-takeover-lookback must be positive"}
	}
	return nil
}

// maxActivationsDefault is --max-activations' default: what a node keeps
// live before it evicts the least recently used.
const maxActivationsDefault = 10000

func (c *logConfig) validate() error {
	if c.dataDir == "" {
		return &usageError{"--data is required"}
	}
	switch c.fsync {
	case "always":
	case "interval":
		if c.fsyncInterval <= 0 {
			return &usageError{"--fsync-interval must be positive"}
		}
	default:
		return &usageError{fmt.Sprintf("--fsync %q: want always or interval", c.fsync)}
	}
	if c.shards < 0 {
		return &usageError{"--shards must not be negative"}
	}
	if c.maxActivations < 0 {
		return &usageError{"--max-activations must not be negative"}
	}
	if c.settleDelay < 0 {
		return &usageError{"--settle-delay must not be negative"}
	}
	if c.alarmRepair != (alarmRepairFlags{}) {
		if err := c.alarmRepair.validate(); err != nil {
			return err
		}
	}
	if err := c.cluster.validate(c.natsURL); err != nil {
		return err
	}
	return c.validateNATS()
}

// logNode is the log and, if embedded, its NATS server.
type logNode struct {
	srv    *log.Server
	log    *log.Log
	unlock func()
}

func openLog(ctx context.Context, c logConfig) (*logNode, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	n := &logNode{}
	opened := false
	defer func() {
		if !opened {
			n.close(context.Background())
		}
	}()
	lcfg := log.Config{URL: c.natsURL, Shards: c.shards, ConnName: "strata", Logger: c.logger, Replicas: c.cluster.replicas, Auth: c.cluster.auth(), AllowRetention: len(c.checkpoints.Retain) > 0}
	if c.metrics != nil {
		lcfg.OnCommit = c.metrics.ObserveCommit
	}
	if c.natsURL != "" && c.natsTLS.CAFile != "" {
		lcfg.TLS = &log.TLSConfig{CAFile: c.natsTLS.CAFile}
	}
	if c.natsURL == "" {
		unlock, err := lockDataDir(c.dataDir)
		if err != nil {
			return nil, err
		}
		n.unlock = unlock
		ec, err := c.embedded()
		if err != nil {
			return nil, err
		}
		if c.fsync == "interval" {
			ec.SyncInterval = c.fsyncInterval
			c.logger.Warn("DURABILITY WEAKENED: --fsync=interval acknowledges writes before they are on disk; a machine crash loses up to the interval", "interval", c.fsyncInterval)
		}
		if err := os.MkdirAll(ec.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("data folder: %w", err)
		}
		n.srv, err = log.RunEmbedded(ec)
		if err != nil {
			return nil, err
		}
		// The node itself always connects in process, listener or not.
		lcfg.Server, lcfg.Auth = n.srv, ec.Auth
		if url := n.srv.ClientURL(); url != "" {
			c.logger.Info("embedded NATS running", "url", url, "fsync", c.fsync, "user", ec.Auth.User, "tls", ec.TLS != nil)
		} else {
			c.logger.Info("embedded NATS running", "listener", "none (in process only)", "fsync", c.fsync)
		}
	}
	l, err := log.Open(ctx, lcfg)
	if err != nil {
		return nil, err
	}
	n.log, opened = l, true
	return n, nil
}

func (n *logNode) close(ctx context.Context) error {
	var errs []error
	if n.log != nil {
		errs = append(errs, n.log.Close(ctx))
	}
	if n.srv != nil {
		errs = append(errs, n.srv.Shutdown(ctx))
	}
	if n.unlock != nil {
		n.unlock()
	}
	return errors.Join(errs...)
}

// node is a whole Strata node: log, snapshot, runtime.
type node struct {
	*logNode
	proj   *projector.Projector
	rt     *objects.Runtime
	alarms *alarms.Service
	router *cluster.Router // nil alone
	// classes and js serve the classes deployed at run time (jsnode.go).
	classes *log.Classes
	js      *jsclass.Registry
}

func snapshotDir(dataDir string) string { return filepath.Join(dataDir, "snapshot") }

// sqlDir holds one SQLite file per object that uses SQL (objects/sqlstate.go).
func sqlDir(dataDir string) string { return filepath.Join(dataDir, "sql") }

func openNode(ctx context.Context, lc logConfig, classes []*objects.Class, idle time.Duration) (*node, error) {
	ln, err := openLog(ctx, lc)
	if err != nil {
		return nil, err
	}
	n := &node{logNode: ln}
	if n.router, err = lc.cluster.newRouter(ln.log, n.srv, lc); err != nil {
		ln.close(ctx)
		return nil, err
	}
	var rt *objects.Runtime
	n.proj, err = projector.Open(projector.Config{
		Dir:    snapshotDir(lc.dataDir),
		Logger: lc.logger,
		Log:    ln.log,
		// A single node is its log's one writer: every event of every
		// shard passes its projector, so the watermarks can follow it and
		// a restart after a crash replays only what was not yet settled.
		TrackWatermarks: ln.srv != nil && n.router == nil,
		Tracer:          lc.tracer,
		OnApplied: func(b []projector.Applied) {
			if rt != nil {
				rt.OnApplied(b)
			}
			if lc.metrics != nil && len(b) > 0 && (lc.metricsGate == nil || lc.metricsGate.Load()) {
				lc.metrics.ObserveApplied(b[len(b)-1].Time)
			}
		},
	})
	if err != nil {
		ln.close(ctx)
		return nil, err
	}
	// Events acknowledged but not projected before a crash reach the
	// snapshot (and its alarm index) before anything reads it.
	start := time.Now()
	brokenLogged := 0
	caught, err := objects.CatchUp(ctx, ln.log, n.proj, func(ce *log.CorruptError) {
		// A forged or damaged message: that object answers corrupt_log,
		// the node serves every other (strata rebuild lists them all).
		if brokenLogged++; brokenLogged <= brokenShownMax {
			lc.logger.Error("the log holds a message that is not a valid event of its object; skipped", "stream", ce.Stream, "seq", ce.Seq, "subject", ce.Subject, "err", ce.Err)
		}
	})
	if err != nil {
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, fmt.Errorf("catch up the snapshot: %w", err)
	}
	lc.logger.Info("snapshot caught up with the log", "events", caught, "took", time.Since(start).Round(time.Millisecond))
	ac := alarms.Config{Log: ln.log, Projector: n.proj, Logger: lc.logger,
		SweepInterval: lc.alarmRepair.sweepInterval, SweepPage: lc.alarmRepair.sweepPage, TakeoverLookback: lc.alarmRepair.takeoverLookback}
	oc := objects.Config{Log: ln.log, Projector: n.proj, Classes: classes, IdleTimeout: idle, Logger: lc.logger, MaxActivations: lc.maxActivations, SettleDelay: lc.settleDelay}
	oc.Codec = gateway.JSONCodec // stubs encode as forwarded calls decode
	if lc.metrics != nil {
		ac.OnFire, oc.Hooks = lc.metrics.ObserveFire, gateHooks(objectHooks(lc.metrics), lc.metricsGate)
	}
	if n.router != nil {
		ac.Deliver, oc.Claim = n.router.Alarm, n.router.Claim
		oc.Calls = n.router // stubs reach other objects on their owners
		router := n.router
		ac.Owns = func(_ string, id log.ID) bool { return router.Owns(id) }
		// Senders pending for longer than a takeover reads back are
		// marked, so the node that gains them finds them.
		if oc.OutboxMarks, err = ln.log.OpenOutboxMarks(ctx); err != nil {
			n.proj.Close(ctx)
			ln.close(ctx)
			return nil, err
		}
		oc.OutboxMarkAfter = lc.alarmRepair.takeoverLookback / 4
	}
	n.alarms, err = alarms.New(ac)
	if err != nil {
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, err
	}
	oc.Alarms = n.alarms
	if n.router != nil {
		n.router.OnTakeover(n.alarms.TakeOver)
	}
	oc.Checkpoints = lc.checkpoints
	oc.SQLDir = sqlDir(lc.dataDir)
	if n.classes, n.js, err = openJS(ctx, ln.log, lc, classes, &oc); err != nil {
		n.alarms.Close(ctx)
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, err
	}
	rt, err = objects.New(oc)
	if err != nil {
		n.classes.Close()
		n.alarms.Close(ctx)
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, err
	}
	n.rt = rt
	n.js.SetLister(rt.ListObjects)
	if n.router != nil {
		if err := n.router.Start(ctx, rt); err != nil {
			n.close(ctx, nil)
			return nil, err
		}
	}
	if err := n.alarms.Start(ctx, rt); err != nil {
		n.close(ctx, nil)
		return nil, err
	}
	return n, nil
}

// close stops the node in dependency order: turns finish and their events
// are acknowledged, the projector applies what it has, then the log and
// NATS stop.
func (n *node) close(ctx context.Context, step func(string)) error {
	if step == nil {
		step = func(string) {}
	}
	// Fires stop first (their turns need the runtime); the runtime's last
	// acknowledged alarm changes are then published before the log closes.
	var leave error
	if n.router != nil {
		step("leaving the cluster")
		leave = n.router.Close(ctx) // the others route elsewhere from now on
	}
	step("stopping alarm fires")
	stopFires := n.alarms.StopFires(ctx)
	step("finishing turns (runtime)")
	rt := n.rt.Close(ctx)
	step("publishing alarm schedules")
	al := n.alarms.Close(ctx)
	// A single node (embedded NATS) is its log's one writer: once its
	// projector has applied everything, the next start need not rescan.
	var mark error
	if n.srv != nil && n.router == nil && stopFires == nil && rt == nil && al == nil {
		step("applying the last events to the snapshot")
		if mark = n.proj.Flush(ctx); mark == nil {
			mark = objects.MarkCaughtUp(ctx, n.log, n.proj)
		}
	}
	if n.classes != nil {
		n.classes.Close()
	}
	step("closing the snapshot (Badger)")
	perr := n.proj.Close(ctx)
	step("closing the log")
	return errors.Join(leave, stopFires, rt, al, mark, perr, n.logNode.close(ctx))
}
