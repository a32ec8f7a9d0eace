package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// logConfig says where the log lives: an embedded NATS server in the data
// folder (the default), or an external NATS at URL.
type logConfig struct {
	dataDir       string
	natsURL       string
	natsListen    string
	fsync         string
	fsyncInterval time.Duration
	shards        int
	logger        *slog.Logger
	cluster       clusterConfig            // scale-out (cluster.go); zero: one node alone
	checkpoints   objects.CheckpointConfig // checkpoints and per-class retention (cmd/cli/checkpoint.go)
	// maxActivations caps the live activations (--max-activations); 0
	// takes maxActivationsDefault.
	maxActivations int
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
	return c.cluster.validate(c.natsURL)
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
	url := c.natsURL
	if url == "" {
		unlock, err := lockDataDir(c.dataDir)
		if err != nil {
			return nil, err
		}
		n.unlock = unlock
		host, port, err := splitHostPort("--nats-listen", c.natsListen)
		if err != nil {
			return nil, err
		}
		ec := log.EmbeddedConfig{Dir: filepath.Join(c.dataDir, "nats"), Host: host, Port: port, Logger: c.logger}
		if err := c.cluster.applyEmbedded(&ec); err != nil {
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
		url = n.srv.ClientURL()
		c.logger.Info("embedded NATS running", "url", url, "fsync", c.fsync)
	}
	l, err := log.Open(ctx, log.Config{URL: url, Shards: c.shards, ConnName: "strata", Logger: c.logger, Replicas: c.cluster.replicas, Auth: c.cluster.auth(), AllowRetention: len(c.checkpoints.Retain) > 0})
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
}

func snapshotDir(dataDir string) string { return filepath.Join(dataDir, "snapshot") }

func openNode(ctx context.Context, lc logConfig, classes []*objects.Class, idle time.Duration) (*node, error) {
	ln, err := openLog(ctx, lc)
	if err != nil {
		return nil, err
	}
	n := &node{logNode: ln}
	if n.router, err = lc.cluster.newRouter(ln.log, lc); err != nil {
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
		OnApplied: func(b []projector.Applied) {
			if rt != nil {
				rt.OnApplied(b)
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
	caught, err := objects.CatchUp(ctx, ln.log, n.proj)
	if err != nil {
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, fmt.Errorf("catch up the snapshot: %w", err)
	}
	lc.logger.Info("snapshot caught up with the log", "events", caught, "took", time.Since(start).Round(time.Millisecond))
	ac := alarms.Config{Log: ln.log, Projector: n.proj, Logger: lc.logger}
	oc := objects.Config{Log: ln.log, Projector: n.proj, Classes: classes, IdleTimeout: idle, Logger: lc.logger, MaxActivations: lc.maxActivations}
	if n.router != nil {
		ac.Deliver, oc.Claim = n.router.Alarm, n.router.Claim
	}
	n.alarms, err = alarms.New(ac)
	if err != nil {
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, err
	}
	oc.Alarms = n.alarms
	oc.Checkpoints = lc.checkpoints
	rt, err = objects.New(oc)
	if err != nil {
		n.alarms.Close(ctx)
		n.proj.Close(ctx)
		ln.close(ctx)
		return nil, err
	}
	n.rt = rt
	if n.router != nil {
		if err := n.router.Start(ctx, rt); err != nil {
			n.close(ctx)
			return nil, err
		}
	}
	if err := n.alarms.Start(ctx, rt); err != nil {
		n.close(ctx)
		return nil, err
	}
	return n, nil
}

// close stops the node in dependency order: turns finish and their events
// are acknowledged, the projector applies what it has, then the log and
// NATS stop.
func (n *node) close(ctx context.Context) error {
	// Fires stop first (their turns need the runtime); the runtime's last
	// acknowledged alarm changes are then published before the log closes.
	var leave error
	if n.router != nil {
		leave = n.router.Close(ctx) // the others route elsewhere from now on
	}
	stopFires := n.alarms.StopFires(ctx)
	rt := n.rt.Close(ctx)
	al := n.alarms.Close(ctx)
	// A single node (embedded NATS) is its log's one writer: once its
	// projector has applied everything, the next start need not rescan.
	var mark error
	if n.srv != nil && n.router == nil && stopFires == nil && rt == nil && al == nil {
		if mark = n.proj.Flush(ctx); mark == nil {
			mark = objects.MarkCaughtUp(ctx, n.log, n.proj)
		}
	}
	return errors.Join(leave, stopFires, rt, al, mark, n.proj.Close(ctx), n.logNode.close(ctx))
}
