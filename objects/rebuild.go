package objects

import (
	"context"
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
// of events applied so far.
func Rebuild(ctx context.Context, l *log.Log, p *projector.Projector, progress func(events uint64)) (uint64, error) {
	var n uint64
	batch := make([]log.Record, 0, rebuildBatch)
	apply := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := p.Apply(batch); err != nil {
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
		err := l.Scan(ctx, shard, 1, func(rec log.Record) error {
			batch = append(batch, rec)
			if len(batch) == cap(batch) {
				return apply()
			}
			return nil
		})
		if err == nil {
			err = apply()
		}
		if err != nil {
			return n, fmt.Errorf("rebuild shard %d: %w", shard, err)
		}
	}
	return n, nil
}
