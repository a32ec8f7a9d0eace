package objects

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// rebuildBatch is how many records one projector transaction takes during
// a rebuild.
const rebuildBatch = 512

// Rebuild replays every shard of l into p, which should be empty: the
// snapshot is derived data and this is how it is derived from scratch.
// progress, if not nil, is called after each applied batch with the number
// of events applied so far. The watermarks end at the log's end, so the
// next start does not replay it all again.
//
// A message that is not the next valid event of its object's chain
// (garbage, a forged or misplaced event) is not applied: broken, if not
// nil, is told of it, and every other object is rebuilt.
func Rebuild(ctx context.Context, l *log.Log, p *projector.Projector, progress func(events uint64), broken func(*log.CorruptError)) (uint64, error) {
	return replay(ctx, l, p, func(int) (uint64, error) { return 0, nil }, progress, broken)
}

// CatchUp applies to p every event of l after each shard's watermark and
// advances the watermarks: at a node's start, before it serves, so that
// events acknowledged but not projected before a crash are in the snapshot
// (and their alarms in its index) even for objects nobody activates. It
// returns how many events it read. Broken messages are skipped and told
// to broken, as in Rebuild: one forged message never stops a node's start.
func CatchUp(ctx context.Context, l *log.Log, p *projector.Projector, broken func(*log.CorruptError)) (uint64, error) {
	return replay(ctx, l, p, p.Watermark, nil, broken)
}

// replay applies each shard's events after after(shard), up to the shard's
// last sequence when replay reached it, in batches, then moves the shard's
// watermark there.
func replay(ctx context.Context, l *log.Log, p *projector.Projector, after func(shard int) (uint64, error), progress func(uint64), broken func(*log.CorruptError)) (uint64, error) {
	var n uint64
	batch := make([]log.Record, 0, rebuildBatch)
	report := func(ce *log.CorruptError) error {
		if broken != nil {
			broken(ce)
		}
		return nil
	}
	skipped := func(_ log.Record, err error) {
		if ce, ok := log.AsCorrupt(err); ok {
			report(ce)
		}
	}
	apply := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.ApplyChecked(batch, skipped); err != nil {
			return err
		}
		n += uint64(len(batch))
		batch = batch[:0]
		if progress != nil {
			progress(n)
		}
		return nil
	}
	for shard := 0; shard < l.Shards(); shard++ {
		from, err := after(shard)
		if err != nil {
			return n, err
		}
		last, err := l.LastSeq(ctx, shard)
		if err != nil {
			return n, err
		}
		if last <= from {
			continue
		}
		var seen map[log.ID]bool
		err = l.ScanPast(ctx, shard, from+1, func(rec log.Record) error {
			if rec.Seq > last {
				return nil
			}
			if l.AllowsRetention() && !seen[rec.Event.ID] {
				// A retaining class's log may start after a checkpoint.
				if seen == nil {
					seen = map[log.ID]bool{}
				}
				seen[rec.Event.ID] = true
				if err := apply(); err != nil {
					return err
				}
				if err := installDropped(ctx, l, p, rec); err != nil {
					return err
				}
			}
			batch = append(batch, rec)
			if len(batch) == cap(batch) {
				return apply()
			}
			return nil
		}, report)
		if err == nil {
			err = apply()
		}
		if err != nil {
			return n, fmt.Errorf("replay shard %d: %w", shard, err)
		}
		if err := p.SetWatermark(shard, last); err != nil {
			return n, err
		}
	}
	return n, nil
}

// installDropped installs the checkpoint that rec's object's retained
// events start from, when the snapshot is behind it.
func installDropped(ctx context.Context, l *log.Log, p *projector.Projector, rec log.Record) error {
	ev := rec.Event
	if ev.Version == 1 {
		return nil
	}
	meta, err := p.Meta(ev.Class, ev.ID)
	if err != nil || meta.Version+1 >= ev.Version {
		return err
	}
	info, err := l.CheckpointBefore(ctx, ev.Class, ev.ID, func(i log.CheckpointInfo) bool { return i.Version <= ev.Version })
	if errors.Is(err, log.ErrNotFound) || err == nil && info.Version+1 < ev.Version {
		return nil // a real gap: the projector logs it and the object catches up when it loads
	}
	if err != nil {
		return err
	}
	ck, err := l.LoadCheckpoint(ctx, info)
	if err != nil {
		return err
	}
	_, err = p.Install(ck)
	return err
}

// MarkCaughtUp sets every shard's watermark to the log's end. Only a node
// that is the log's one writer and has flushed its projector may call it
// (a single node at a graceful stop): it makes the next start's catch-up
// start from here.
func MarkCaughtUp(ctx context.Context, l *log.Log, p *projector.Projector) error {
	for shard := 0; shard < l.Shards(); shard++ {
		last, err := l.LastSeq(ctx, shard)
		if err != nil {
			return err
		}
		if err := p.SetWatermark(shard, last); err != nil {
			return err
		}
	}
	return nil
}
