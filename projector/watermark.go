package projector

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The watermark of a shard is a stream sequence up to which every event of
// that shard's log is known to be in the snapshot. Activations hand the
// projector only their own acknowledged events, and a crash can fall
// between an acknowledgement and its projection; a node that starts
// replays its shards from the watermark (objects.CatchUp), so the snapshot
// (listings, the pending-alarm index) knows every event, not only those of
// objects activated since.

// kindWatermark keys are w<shard as 4 bytes>.
const kindWatermark = 'w'

func watermarkKey(shard int) []byte {
	return binary.BigEndian.AppendUint32([]byte{kindWatermark}, uint32(shard))
}

// Watermark is shard's watermark (0: nothing known).
func (p *Projector) Watermark(shard int) (uint64, error) {
	var seq uint64
	err := p.view(func(tx *badger.Txn) error {
		item, err := tx.Get(watermarkKey(shard))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("watermark of %d bytes", len(v))
			}
			seq = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("watermark of shard %d: %w", shard, err)
	}
	return seq, nil
}

// SetWatermark records that every event of shard up to seq is applied. The
// caller must know it: after Apply of a full scan, or after a Flush when it
// alone writes the log.
func (p *Projector) SetWatermark(shard int, seq uint64) error {
	if !p.users.enter() {
		return ErrClosed
	}
	defer p.users.leave()
	err := p.db.Update(func(tx *badger.Txn) error {
		return tx.Set(watermarkKey(shard), binary.BigEndian.AppendUint64(nil, seq))
	})
	if err != nil {
		return fmt.Errorf("set watermark of shard %d: %w", shard, err)
	}
	return nil
}
