package projector

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// Apply applies recs in order on the caller's goroutine, with the same
// semantics as Submit: events already applied are skipped, gaps are logged
// and skipped. It is serialized with the apply goroutine. Records are
// checked before anything is written; on a Badger error, the transactions
// committed before it stay (applying is idempotent, so the caller may
// simply apply recs again).
func (p *Projector) Apply(recs []log.Record) error { return p.ApplyChecked(recs, nil) }

// ApplyChecked is Apply that also calls broken, if not nil, with each record
// it skipped because it does not follow its object's chain (invariant 3): a
// version that is not the next one, or a PrevHash that is not the chain
// hash of the applied version. The error is a *log.CorruptError. It is how
// a rebuild reports forged events.
func (p *Projector) ApplyChecked(recs []log.Record, broken func(log.Record, error)) error {
	for _, rec := range recs {
		if err := checkRecord(rec); err != nil {
			return err
		}
	}
	return p.asWriter(func() error { return p.applyLocked(recs, broken) })
}

// asWriter runs fn as Badger's one writer (serialized with the apply
// goroutine), unless the projector is closed.
func (p *Projector) asWriter(fn func() error) error {
	if !p.users.enter() {
		return ErrClosed
	}
	defer p.users.leave()
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	return fn()
}

// applyLocked applies checked records in as few transactions as fit,
// splitting only at event boundaries when it can (doc.go, invariant 4).
// The caller holds applyMu.
func (p *Projector) applyLocked(recs []log.Record, broken func(log.Record, error)) error {
	if err := p.broken(); err != nil {
		return err
	}
	b := &txnBatch{p: p, txn: p.db.NewTransaction(true), broken: broken}
	defer func() { b.txn.Discard() }()
	for i := 0; i < len(recs); {
		if b.considered >= p.cfg.BatchMax {
			if err := b.commit(); err != nil {
				return err
			}
		}
		err := b.stage(recs[i], false)
		var gap *gapError
		switch {
		case err == nil:
			b.considered++
			i++
		case errors.As(err, &gap):
			// The events before recs[i] were lost on the way (a failed
			// batch, a dropped submit): read them from the log and apply
			// them first. Without them recs[i] is skipped.
			missing := p.missing(gap)
			if len(missing) == 0 {
				b.considered++
				i++
				break
			}
			recs = splice(recs, i, missing)
		case !errors.Is(err, badger.ErrTxnTooBig):
			return err
		case len(b.staged) > 0:
			// recs[i] does not fit after the events before it: commit
			// those alone and give recs[i] a fresh transaction.
			p.stats.boundarySplits.Add(1)
			if err := b.restageAndCommit(); err != nil {
				return err
			}
		default:
			// recs[i] does not fit in an empty transaction: split it,
			// then commit, so that its tail never has to be restaged.
			b.restart()
			if err := b.stage(recs[i], true); err != nil {
				return err
			}
			if err := b.commit(); err != nil {
				return err
			}
			i++
		}
	}
	return b.commit()
}

// txnBatch is one Badger read-write transaction being filled with events.
type txnBatch struct {
	p          *Projector
	txn        *badger.Txn
	staged     []log.Record            // events whose writes and meta are all in txn, in order
	applied    []Applied               // what staged changed, for OnApplied after commit
	done       []log.Record            // every record this transaction settles, skipped ones included (watermarks)
	considered int                     // records taken in this transaction, skipped ones included
	broken     func(log.Record, error) // told of records skipped as not following their chain; may be nil
	metas      map[objectRef]Meta      // the metas staged in txn, for the events after them (metacache.go)
}

// commit commits the transaction, reports what it applied, and starts the
// next one.
func (b *txnBatch) commit() error {
	err := b.p.beforeCommit(len(b.done))
	var marks map[int]uint64
	if err == nil {
		marks, err = b.p.stageWatermarks(b.txn, b.done)
	}
	if err == nil {
		err = b.txn.Commit()
	}
	if err != nil {
		b.p.metas.forget(b.metas)
		return fmt.Errorf("projector: commit %d events: %w", len(b.staged), err)
	}
	b.p.metas.committed(b.metas)
	if err := b.p.settled(b.done, marks); err != nil {
		return err
	}
	if len(b.applied) > 0 && b.p.cfg.OnApplied != nil {
		b.p.cfg.OnApplied(b.applied)
	}
	b.restart()
	return nil
}

// restart drops the transaction (committed or not) and begins a new one.
func (b *txnBatch) restart() {
	b.txn.Discard()
	b.txn = b.p.db.NewTransaction(true)
	b.staged, b.applied, b.done, b.considered = nil, nil, nil, 0
	clear(b.metas)
}

// restageAndCommit rebuilds the transaction with only the events fully
// staged in it, dropping the partial writes of the one that did not fit,
// and commits it. Nothing was committed meanwhile and the projector is
// Badger's only writer, so the events read the same state and stage the
// same writes as before: they fit again.
func (b *txnBatch) restageAndCommit() error {
	recs := b.staged
	b.restart()
	for _, rec := range recs {
		if err := b.stage(rec, false); err != nil {
			ev := rec.Event
			return fmt.Errorf("projector: restaging %s/%s v%d failed, though it fitted before: %w", ev.Class, ev.ID, ev.Version, err)
		}
	}
	return b.commit()
}

// stage adds one event's writes and its new meta to the transaction, or
// nothing if the event is already applied or would leave a gap. With
// split, an ErrTxnTooBig commits the writes so far and goes on in a new
// transaction (see doc.go, invariant 4, for why that is safe); without,
// it is returned and the transaction holds part of the event.
func (b *txnBatch) stage(rec log.Record, split bool) error {
	ev := rec.Event
	obj := objectRef{ev.Class, ev.ID}
	meta, err := b.meta(obj)
	if err != nil {
		return err
	}
	switch {
	case ev.Version <= meta.Version:
		b.done = append(b.done, rec)
		return nil // applied already: idempotent
	case ev.Version != meta.Version+1 && b.p.cfg.Log != nil:
		return &gapError{rec: rec, meta: meta} // heal.go reads what is missing from the log
	}
	if err := log.Follows(meta.Version, meta.Hash, rec); err != nil {
		// A gap (with no log to heal from), or a forged event with the
		// right version: neither is applied. The object meets it again
		// when it loads (a gap it can fill from the log; a broken link is
		// its ErrCorruptLog).
		b.p.logger.Error("projector: event does not follow the object's chain (a gap, or a forged link); skipped",
			"class", ev.Class, "id", ev.ID, "applied", meta.Version, "event", ev.Version, "seq", rec.Seq, "err", err)
		if b.broken != nil {
			b.broken(rec, err)
		}
		if ev.Version == meta.Version+1 {
			// A forged link is never applied, here or later: the
			// watermark may pass it. A gap may still be filled.
			b.done = append(b.done, rec)
		}
		return nil
	}
	do := func(op func(*badger.Txn) error) error {
		err := op(b.txn)
		if split && errors.Is(err, badger.ErrTxnTooBig) {
			if err := b.txn.Commit(); err != nil {
				b.p.metas.forget(b.metas)
				return fmt.Errorf("commit part of the event: %w", err)
			}
			b.p.metas.committed(b.metas)
			b.p.stats.eventSplits.Add(1)
			b.restart()
			err = op(b.txn) // alone in a transaction: fits, or never will
		}
		return err
	}
	for ti, t := range ev.Turns {
		for wi, w := range t.Writes {
			if err := b.write(do, ev, w); err != nil {
				return fmt.Errorf("projector: apply %s/%s v%d turn %d write %d (%s): %w", ev.Class, ev.ID, ev.Version, ti, wi, w.Op, err)
			}
		}
	}
	if err := eventIdem(do, ev); err != nil {
		return fmt.Errorf("projector: apply %s/%s v%d: %w", ev.Class, ev.ID, ev.Version, err)
	}
	if err := eventOutbox(do, ev); err != nil {
		return fmt.Errorf("projector: apply %s/%s v%d outbox: %w", ev.Class, ev.ID, ev.Version, err)
	}
	next := Meta{Version: ev.Version, Seq: rec.Seq, Hash: rec.Hash(), Name: meta.Name, Updated: ev.Time}
	if next.Name == "" {
		next.Name = ev.Name
	}
	mk, mv := metaKey(ev.Class, ev.ID), encodeMeta(next)
	if err := do(func(tx *badger.Txn) error { return tx.Set(mk, mv) }); err != nil {
		return fmt.Errorf("projector: apply %s/%s v%d meta: %w", ev.Class, ev.ID, ev.Version, err)
	}
	if b.metas == nil {
		b.metas = make(map[objectRef]Meta)
	}
	b.metas[obj] = next
	b.staged = append(b.staged, rec)
	b.done = append(b.done, rec)
	b.applied = append(b.applied, Applied{Class: ev.Class, ID: ev.ID, Version: ev.Version, Seq: rec.Seq, Time: ev.Time})
	return nil
}

// meta is the object's meta as this transaction sees it: staged in it,
// else committed (the cache, else Badger, whose answer the cache keeps).
func (b *txnBatch) meta(o objectRef) (Meta, error) {
	if m, ok := b.metas[o]; ok {
		return m, nil
	}
	if m, ok := b.p.metas.get(o); ok {
		return m, nil
	}
	b.p.stats.metaReads.Add(1)
	m, err := readMeta(b.txn, o.class, o.id)
	if err == nil {
		b.p.metas.put(o, m)
	}
	return m, err
}

// write stages one op through do.
func (b *txnBatch) write(do func(func(*badger.Txn) error) error, ev *log.Event, w log.Write) error {
	switch w.Op {
	case log.OpPut:
		k := stateKey(ev.Class, ev.ID, w.Key)
		return do(func(tx *badger.Txn) error { return tx.Set(k, w.Value) })
	case log.OpDelete:
		k := stateKey(ev.Class, ev.ID, w.Key)
		return do(func(tx *badger.Txn) error { return tx.Delete(k) })
	case log.OpDeleteAll:
		return deleteAll(do, ev.Class, ev.ID)
	case log.OpSetAlarm:
		k, v := alarmKey(ev.Class, ev.ID, w.Key), encodeAlarm(w.At)
		return do(func(tx *badger.Txn) error { return tx.Set(k, v) })
	case log.OpDeleteAlarm:
		k := alarmKey(ev.Class, ev.ID, w.Key)
		return do(func(tx *badger.Txn) error { return tx.Delete(k) })
	}
	// checkRecord validated the ops: this is a programmer error.
	return fmt.Errorf("unknown op %d", w.Op)
}

// deleteAllChunk bounds the keys one step of deleteAll collects.
const deleteAllChunk = 1024

// deleteAll removes every state key of the object (not its meta, not its
// alarms: Durable Objects' deleteAll leaves the alarm). It works in chunks,
// each one op for do, so a large object can split across transactions. A
// read-write transaction's iterator sees its own pending writes, so keys
// put earlier in the batch are deleted too, and deleted ones are skipped;
// the cursor only saves rescanning them.
func deleteAll(do func(func(*badger.Txn) error) error, class string, id log.ID) error {
	prefix := stateKey(class, id, "")
	cursor := prefix
	keys := make([][]byte, 0, deleteAllChunk)
	for {
		err := do(func(tx *badger.Txn) error {
			keys = keys[:0]
			it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Seek(cursor); it.Valid() && len(keys) < deleteAllChunk; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close() // a read-write transaction allows one iterator at a time
			for _, k := range keys {
				if err := tx.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || len(keys) < deleteAllChunk {
			return err
		}
		cursor = keys[len(keys)-1]
	}
}

// readMeta reads an object's meta in txn; the zero Meta if it has none.
func readMeta(txn *badger.Txn, class string, id log.ID) (Meta, error) {
	item, err := txn.Get(metaKey(class, id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Meta{}, nil
	}
	if err != nil {
		return Meta{}, fmt.Errorf("projector: read meta %s/%s: %w", class, id, err)
	}
	var m Meta
	err = item.Value(func(v []byte) error {
		var err error
		m, err = decodeMeta(v)
		return err
	})
	if err != nil {
		return Meta{}, fmt.Errorf("projector: read meta %s/%s: %w", class, id, err)
	}
	return m, nil
}
