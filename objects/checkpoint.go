package objects

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// DefaultCheckpointEvery is how many events of an object lie between two
// of its checkpoints unless configured otherwise.
const DefaultCheckpointEvery = 1000

// checkpointQueueLen bounds the checkpoints waiting to be written; past
// it, one is skipped (a later one covers it).
const checkpointQueueLen = 256

// CheckpointConfig says how often objects are checkpointed and which
// classes drop the events a checkpoint covers.
type CheckpointConfig struct {
	// Every is the number of events between checkpoints of one object:
	// after each event whose version is a multiple of it. 0 takes
	// DefaultCheckpointEvery; negative disables checkpoints.
	Every int
	// ClassEvery overrides Every for some classes.
	ClassEvery map[string]int
	// Retain names the classes that drop their events older than their
	// newest checkpoint (the log must have been created with
	// log.Config.AllowRetention). Every other class keeps everything.
	Retain map[string]bool
}

func (c CheckpointConfig) every(class string) int {
	n, ok := c.ClassEvery[class]
	if !ok {
		n = c.Every
	}
	if n == 0 {
		n = DefaultCheckpointEvery
	}
	return n
}

// check refuses retention of a class the runtime does not host, or on a
// log that does not allow it.
func (c CheckpointConfig) check(rt *Runtime) error {
	for class := range c.Retain {
		if _, err := rt.Class(class); err != nil {
			return fmt.Errorf("objects: retention: %w", err)
		}
		if c.every(class) <= 0 {
			return fmt.Errorf("objects: retention of %s needs checkpoints", class)
		}
		if !rt.log.AllowsRetention() {
			return fmt.Errorf("objects: retention of %s: %w (the log was created without retention)", class, log.ErrAppendOnly)
		}
	}
	return nil
}

// CheckpointStats count what the checkpointer did.
type CheckpointStats struct {
	Written uint64 // checkpoints stored
	Skipped uint64 // not queued: the queue was full
	Failed  uint64 // failed to build or store (logged)
	Dropped uint64 // objects whose older events were dropped (retention)
}

// checkpointer writes checkpoints after the events that call for them,
// on its own goroutine: a turn's ack never waits for it. A checkpoint is
// derived from the log alone (the previous checkpoint plus the events
// after it, folded by history.Replayer), so every node derives the same
// bytes, and a crash before it is written only means a longer read.
type checkpointer struct {
	rt    *Runtime
	cfg   CheckpointConfig
	queue chan ckptJob
	done  chan struct{}
	stats struct{ written, skipped, failed, dropped atomic.Uint64 }
}

type ckptJob struct {
	class   string
	id      ID
	version uint64
	flushed chan struct{} // a flush marker when not nil
}

func newCheckpointer(rt *Runtime, cfg CheckpointConfig) *checkpointer {
	c := &checkpointer{rt: rt, cfg: cfg, queue: make(chan ckptJob, checkpointQueueLen), done: make(chan struct{})}
	go c.run()
	return c
}

// committed is called after an event is acknowledged. It never blocks.
func (c *checkpointer) committed(class string, id ID, version uint64) {
	n := c.cfg.every(class)
	if n <= 0 || version%uint64(n) != 0 {
		return
	}
	select {
	case c.queue <- ckptJob{class: class, id: id, version: version}:
	default:
		c.stats.skipped.Add(1)
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case job := <-c.queue:
			if job.flushed != nil {
				close(job.flushed)
				continue
			}
			if err := c.write(c.rt.ctx, job.class, job.id, job.version); err != nil {
				c.stats.failed.Add(1)
				c.rt.logger.Warn("checkpoint failed", "class", job.class, "id", job.id, "version", job.version, "err", err)
			}
		case <-c.rt.ctx.Done():
			return
		}
	}
}

// write stores the checkpoint of class/id at version, from the newest
// checkpoint before it and the events since, then drops older events if
// the class retains only from its checkpoints.
func (c *checkpointer) write(ctx context.Context, class string, id ID, version uint64) error {
	l := c.rt.log
	// Start from a checkpoint that carries SQL state: one written before
	// checkpoints did would leave every later one without it.
	rep, err := history.Replay(ctx, l, class, id,
		func(i log.CheckpointInfo) bool { return i.Version <= version && i.HasSQL },
		func(ev *log.Event) bool { return ev.Version > version }, nil)
	if err != nil {
		return err
	}
	defer rep.Close()
	if rep.Version != version {
		return fmt.Errorf("checkpoint %s/%s v%d: the log ends at version %d", class, id, version, rep.Version)
	}
	// Keys a retry may still ask for travel with the checkpoint: a node
	// that loads from it skips their events (idempotency.go).
	window := DefaultIdempotencyWindow
	if cl, ok := c.rt.classes[class]; ok {
		window = cl.IdempotencyWindow()
	}
	ck, err := rep.Checkpoint(ctx, class, id, rep.Time-int64(window))
	if err != nil {
		return err
	}
	if err := l.WriteCheckpoint(ctx, ck); err != nil {
		return err
	}
	c.stats.written.Add(1)
	if c.cfg.Retain[class] {
		// Keep the checkpoint's own event: the object's subject must
		// still end where its history does.
		if err := l.DropBefore(ctx, class, id, ck.Seq); err != nil {
			return err
		}
		c.stats.dropped.Add(1)
	}
	return nil
}

// close stops the goroutine; queued checkpoints are left (later ones, or a
// longer read, cover them).
func (c *checkpointer) close() { <-c.done }

// FlushCheckpoints returns when every checkpoint queued before the call has
// been written or has failed.
func (rt *Runtime) FlushCheckpoints(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case rt.ckpt.queue <- ckptJob{flushed: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CheckpointStats returns the checkpointer's counters.
func (rt *Runtime) CheckpointStats() CheckpointStats {
	s := &rt.ckpt.stats
	return CheckpointStats{Written: s.written.Load(), Skipped: s.skipped.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load()}
}

// installKeyed indexes the keyed records of the object's checkpoints
// after version applied and before newest whose time is inside the
// class's window (idempotency.go).
func (a *activation) installKeyed(ctx context.Context, applied uint64, newest log.CheckpointInfo) error {
	since := a.rt.now().Add(-a.class.IdempotencyWindow()).UnixNano()
	var infos []log.CheckpointInfo
	err := a.rt.log.Checkpoints(ctx, a.class.name, a.id, func(i log.CheckpointInfo) error {
		if i.Version > applied && i.Version < newest.Version && i.Time > since && i.Keyed > 0 {
			infos = append(infos, i)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list checkpoints of %s/%s: %w", a.class.name, a.id, err)
	}
	for _, i := range infos {
		recs, err := a.rt.log.LoadKeyed(ctx, i)
		if err != nil {
			return err
		}
		if err := a.rt.proj.InstallKeyed(a.class.name, a.id, recs); err != nil {
			return err
		}
	}
	return nil
}

// skipAhead moves an object's snapshot to its newest checkpoint when the
// snapshot is behind the log by at least a checkpoint interval, or the
// class drops old events: then activation reads at most the events after
// the checkpoint. It returns the snapshot's meta afterwards.
func (a *activation) skipAhead(ctx context.Context, meta projector.Meta, last log.Record) (projector.Meta, error) {
	cfg, class := a.rt.ckpt.cfg, a.class.name
	n := cfg.every(class)
	if n <= 0 && !cfg.Retain[class] || last.Event == nil || last.Event.Version-meta.Version < uint64(max(n, 1)) && !cfg.Retain[class] {
		return meta, nil
	}
	info, err := a.rt.log.LastCheckpoint(ctx, class, a.id)
	if errors.Is(err, log.ErrNotFound) || err == nil && info.Version <= meta.Version {
		return meta, nil
	}
	if err != nil {
		return meta, err
	}
	if info.Seq > last.Seq {
		return meta, aheadOfLog(a.rt.log.Replicated(), "checkpoint", info.Seq, last.Seq)
	}
	ck, err := a.rt.log.LoadCheckpoint(ctx, info)
	if err != nil {
		return meta, err
	}
	// The events the checkpoint lets this node skip hold records of keyed
	// turns; each checkpoint carries those since the one before it. Index
	// the older checkpoints' records first: once the newest is installed,
	// the snapshot is past them and nothing would read them again.
	if err := a.installKeyed(ctx, meta.Version, info); err != nil {
		return meta, err
	}
	if _, err := a.rt.proj.Install(ck); err != nil {
		if errors.Is(err, projector.ErrTooBig) && !cfg.Retain[class] {
			return meta, nil // too big to install at once: read the events
		}
		return meta, err
	}
	return a.rt.proj.Meta(class, a.id)
}
