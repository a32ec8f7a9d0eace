package projector

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// Meta is what the snapshot knows of one object.
type Meta struct {
	Version uint64   // last applied event version; 0 if the object is unknown
	Seq     uint64   // stream sequence of that event
	Hash    log.Hash // chain hash of that event
	Name    string   // the object's name from its first event, if any
	Updated int64    // Unix nanoseconds of that event
}

const metaFixedBytes = 8 + 8 + 32 + 8

func (m Meta) encode() []byte {
	b := make([]byte, metaFixedBytes, metaFixedBytes+len(m.Name))
	binary.BigEndian.PutUint64(b[0:], m.Version)
	binary.BigEndian.PutUint64(b[8:], m.Seq)
	copy(b[16:48], m.Hash[:])
	binary.BigEndian.PutUint64(b[48:], uint64(m.Updated))
	return append(b, m.Name...)
}

func decodeMeta(b []byte) (Meta, error) {
	if len(b) < metaFixedBytes {
		return Meta{}, fmt.Errorf("meta of %d bytes", len(b))
	}
	var m Meta
	m.Version = binary.BigEndian.Uint64(b[0:])
	m.Seq = binary.BigEndian.Uint64(b[8:])
	copy(m.Hash[:], b[16:48])
	m.Updated = int64(binary.BigEndian.Uint64(b[48:]))
	m.Name = string(b[metaFixedBytes:])
	return m, nil
}

// objectPrefix is <kind><class>\x00<id>.
func objectPrefix(kind byte, class string, id log.ID) []byte {
	b := make([]byte, 0, 1+len(class)+1+len(id)+32)
	b = append(b, kind)
	b = append(b, class...)
	b = append(b, 0)
	return append(b, id[:]...)
}

func stateKey(class string, id log.ID, key string) []byte {
	return append(objectPrefix('d', class, id), key...)
}

// Apply applies recs in order on the caller's goroutine, batching them into
// as few Badger transactions as fit. It serializes with the apply loop.
func (p *Projector) Apply(recs []log.Record) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	var applied []Applied
	txn := p.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	commit := func() error {
		if err := txn.Commit(); err != nil {
			return fmt.Errorf("commit snapshot: %w", err)
		}
		txn = p.db.NewTransaction(true)
		if len(applied) > 0 && p.cfg.OnApplied != nil {
			p.cfg.OnApplied(applied)
		}
		applied = nil
		return nil
	}
	for _, rec := range recs {
		a, ok, err := p.applyOne(&txn, rec, commit)
		if err != nil {
			return err
		}
		if ok {
			applied = append(applied, a)
		}
	}
	return commit()
}

// applyOne applies one record within *txn. When the transaction is full,
// it commits what came before this record (an event boundary) and starts
// again in a fresh one; an event too large for any one transaction is split
// across several, with its meta written in the last. That is safe because
// every op is an absolute overwrite (put sets, delete removes, delete-all
// clears): replaying an event over a partial application of itself yields
// the same state, and until the meta says so, the event counts as unapplied.
func (p *Projector) applyOne(txn **badger.Txn, rec log.Record, commit func() error) (Applied, bool, error) {
	ev := rec.Event
	meta, err := p.metaTxn(*txn, ev.Class, ev.ID)
	if err != nil {
		return Applied{}, false, err
	}
	switch {
	case ev.Version <= meta.Version:
		return Applied{}, false, nil // already applied: idempotent
	case ev.Version != meta.Version+1:
		p.logger.Error("projector: event gap; skipped", "class", ev.Class, "id", ev.ID, "applied", meta.Version, "event", ev.Version, "seq", rec.Seq)
		return Applied{}, false, nil
	}
	do := func(f func(*badger.Txn) error) error {
		err := f(*txn)
		if errors.Is(err, badger.ErrTxnTooBig) {
			p.splits.Add(1)
			if err := commit(); err != nil {
				return err
			}
			err = f(*txn)
		}
		if err != nil {
			return fmt.Errorf("apply %s/%s v%d: %w", ev.Class, ev.ID, ev.Version, err)
		}
		return nil
	}
	for _, t := range ev.Turns {
		for _, w := range t.Writes {
			var err error
			switch w.Op {
			case log.OpPut:
				k := stateKey(ev.Class, ev.ID, w.Key)
				err = do(func(tx *badger.Txn) error { return tx.Set(k, w.Value) })
			case log.OpDelete:
				k := stateKey(ev.Class, ev.ID, w.Key)
				err = do(func(tx *badger.Txn) error { return tx.Delete(k) })
			case log.OpDeleteAll:
				err = p.deleteAll(ev.Class, ev.ID, do)
			case log.OpSetAlarm:
				k := append(objectPrefix('a', ev.Class, ev.ID), w.Key...)
				v := binary.BigEndian.AppendUint64(nil, uint64(w.At))
				err = do(func(tx *badger.Txn) error { return tx.Set(k, v) })
			case log.OpDeleteAlarm:
				k := append(objectPrefix('a', ev.Class, ev.ID), w.Key...)
				err = do(func(tx *badger.Txn) error { return tx.Delete(k) })
			}
			if err != nil {
				return Applied{}, false, err
			}
		}
	}
	next := Meta{Version: ev.Version, Seq: rec.Seq, Hash: rec.Hash(), Name: meta.Name, Updated: ev.Time}
	if next.Name == "" {
		next.Name = ev.Name
	}
	mk := objectPrefix('m', ev.Class, ev.ID)
	if err := do(func(tx *badger.Txn) error { return tx.Set(mk, next.encode()) }); err != nil {
		return Applied{}, false, err
	}
	return Applied{Class: ev.Class, ID: ev.ID, Version: ev.Version, Seq: rec.Seq}, true, nil
}

// deleteAll deletes every state key of the object in chunks, so that a
// large object splits across transactions instead of overflowing one. The
// transaction's own iterator sees its staged writes, so keys put earlier in
// the same batch are deleted too.
func (p *Projector) deleteAll(class string, id log.ID, do func(func(*badger.Txn) error) error) error {
	const chunk = 1000
	prefix := objectPrefix('d', class, id)
	for {
		var keys [][]byte
		err := do(func(tx *badger.Txn) error {
			keys = keys[:0]
			it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid() && len(keys) < chunk; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
			for _, k := range keys {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || len(keys) < chunk {
			return err
		}
	}
}

func (p *Projector) metaTxn(txn *badger.Txn, class string, id log.ID) (Meta, error) {
	item, err := txn.Get(objectPrefix('m', class, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Meta{}, nil
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read meta %s/%s: %w", class, id, err)
	}
	var m Meta
	err = item.Value(func(v []byte) error {
		var derr error
		m, derr = decodeMeta(v)
		return derr
	})
	if err != nil {
		return Meta{}, fmt.Errorf("read meta %s/%s: %w", class, id, err)
	}
	return m, nil
}
