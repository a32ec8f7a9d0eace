package projector

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// The watermark of a shard is a stream sequence up to which every event of
// that shard's log is known to be in the snapshot. Activations hand the
// projector only their own acknowledged events, and a crash can fall
// between an acknowledgement and its projection; a node that starts
// replays its shards from the watermark (objects.CatchUp), so the snapshot
// (listings, the pending-alarm index) knows every event, not only those of
// objects activated since.
//
// With Config.TrackWatermarks the watermark also moves while the node runs:
// the projector notes the sequence of every record it settles (applies, or
// finds applied already) and moves the shard's watermark over each run of
// consecutive sequences, persisting it in the transaction that settles
// them (or, when it does not fit there, right after it). A sequence never
// handed to it (another writer's event, a submit cut off and not yet
// healed) is a hole that stops the watermark there;
// it never passes an event the snapshot lacks. So a restart after a crash
// replays only what came after the last settled run, not everything since
// the last graceful stop.

// aboveMax bounds the sequences remembered above a shard's watermark;
// past it, the shard's watermark stops moving until SetWatermark (a hole
// that is not filling).
const aboveMax = 1 << 16

// watermarks is the running watermark of each shard; applyMu guards it.
type watermarks struct {
	shards map[int]*shardMark
}

type shardMark struct {
	seq     uint64              // every event of the shard up to seq is settled
	above   map[uint64]struct{} // settled sequences past seq+1
	stalled bool                // above overflowed: wait for SetWatermark
}

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
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if err := p.writeWatermarks(map[int]uint64{shard: seq}); err != nil {
		return err
	}
	if m := p.marks.shards[shard]; m != nil {
		m.seq, m.stalled = seq, false
		for s := range m.above {
			if s <= seq {
				delete(m.above, s)
			}
		}
		m.advance()
	}
	return nil
}

func (p *Projector) writeWatermarks(seqs map[int]uint64) error {
	if err := p.broken(); err != nil {
		return err
	}
	err := p.db.Update(func(tx *badger.Txn) error {
		for shard, seq := range seqs {
			if err := tx.Set(watermarkKey(shard), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set watermarks %v: %w", seqs, err)
	}
	p.stats.markCommits.Add(1)
	return nil
}

// stageWatermarks writes in txn, the transaction that settles recs, the
// watermark each shard reaches once they are settled, so that it is
// committed with them instead of in a transaction of its own after them
// (one Badger commit per batch, not two). It changes no running
// watermark: settled does, after the commit, and leaves the staged ones
// out of its own write. A shard whose running watermark may stall
// (aboveMax) or a watermark that does not fit in txn is not staged; settled
// writes it as before. The caller holds applyMu.
func (p *Projector) stageWatermarks(txn *badger.Txn, recs []log.Record) (map[int]uint64, error) {
	if !p.cfg.TrackWatermarks || len(recs) == 0 {
		return nil, nil
	}
	seqs := map[int]map[uint64]struct{}{} // each shard's settled sequences past its watermark
	for _, rec := range recs {
		shard := p.cfg.Log.ShardOf(rec.Event.ID)
		m, err := p.mark(shard)
		if err != nil {
			return nil, err
		}
		if m.stalled || rec.Seq <= m.seq {
			continue
		}
		if seqs[shard] == nil {
			seqs[shard] = map[uint64]struct{}{}
		}
		seqs[shard][rec.Seq] = struct{}{}
	}
	staged := map[int]uint64{}
	for shard, batch := range seqs {
		m := p.marks.shards[shard]
		if len(m.above)+len(batch) > aboveMax {
			continue
		}
		seq := m.reach(batch)
		if seq == m.seq {
			continue
		}
		err := txn.Set(watermarkKey(shard), binary.BigEndian.AppendUint64(nil, seq))
		if errors.Is(err, badger.ErrTxnTooBig) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stage the watermark of shard %d: %w", shard, err)
		}
		staged[shard] = seq
	}
	return staged, nil
}

// settled notes records a committed transaction settled and moves and
// persists the watermarks they complete, but for those the transaction
// held already (staged, from stageWatermarks). The caller holds applyMu.
func (p *Projector) settled(recs []log.Record, staged map[int]uint64) error {
	if !p.cfg.TrackWatermarks || len(recs) == 0 {
		return nil
	}
	moved := map[int]uint64{}
	for _, rec := range recs {
		shard := p.cfg.Log.ShardOf(rec.Event.ID)
		m, err := p.mark(shard)
		if err != nil {
			return err
		}
		if m.stalled || rec.Seq <= m.seq {
			continue
		}
		m.above[rec.Seq] = struct{}{}
		before := m.seq
		m.advance()
		if m.seq != before {
			moved[shard] = m.seq
		}
		if len(m.above) > aboveMax {
			m.stalled, m.above = true, map[uint64]struct{}{}
			p.logger.Warn("projector: shard watermark stalled at a hole; the next start replays from it", "shard", shard, "seq", m.seq+1)
		}
	}
	for shard, seq := range staged {
		if moved[shard] == seq {
			delete(moved, shard)
		}
	}
	if len(moved) == 0 {
		return nil
	}
	return p.writeWatermarks(moved)
}

// mark is shard's running watermark, read from Badger the first time.
func (p *Projector) mark(shard int) (*shardMark, error) {
	if m := p.marks.shards[shard]; m != nil {
		return m, nil
	}
	seq, err := p.Watermark(shard)
	if err != nil {
		return nil, err
	}
	if p.marks.shards == nil {
		p.marks.shards = map[int]*shardMark{}
	}
	m := &shardMark{seq: seq, above: map[uint64]struct{}{}}
	p.marks.shards[shard] = m
	return m, nil
}

func (m *shardMark) advance() {
	to := m.reach(nil)
	for ; m.seq < to; m.seq++ {
		delete(m.above, m.seq+1)
	}
}

// reach is the sequence the watermark would move to over the run of
// sequences after it in above, or in also.
func (m *shardMark) reach(also map[uint64]struct{}) uint64 {
	seq := m.seq
	for {
		_, above := m.above[seq+1]
		_, now := also[seq+1]
		if !above && !now {
			return seq
		}
		seq++
	}
}
