package projector

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// ErrTooBig: a checkpoint does not fit in one Badger transaction; the
// caller replays the events instead.
var ErrTooBig = errors.New("projector: checkpoint too big for one transaction")

// Install sets an object's snapshot to a checkpoint, if the snapshot is
// behind it: every state key and alarm is replaced and the meta moves to
// the checkpoint's version, in one transaction, so a crash leaves either
// the old snapshot or the checkpoint's, never a mix. It reports whether it
// installed. It is serialized with Apply and the apply goroutine; events
// at or before the checkpoint's version that arrive later are skipped as
// already applied.
func (p *Projector) Install(ck *log.Checkpoint) (bool, error) {
	if err := checkClass(ck.Class); err != nil {
		return false, err
	}
	if !p.users.enter() {
		return false, ErrClosed
	}
	defer p.users.leave()
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if err := p.broken(); err != nil {
		return false, err
	}
	txn := p.db.NewTransaction(true)
	defer txn.Discard()
	meta, err := readMeta(txn, ck.Class, ck.ID)
	if err != nil || meta.Version >= ck.Version {
		return false, err
	}
	do := func(op func(*badger.Txn) error) error { return op(txn) }
	err = deleteAll(do, ck.Class, ck.ID)
	if err == nil {
		err = deletePrefix(txn, alarmKey(ck.Class, ck.ID, ""))
	}
	if err == nil {
		err = installOutbox(txn, ck)
	}
	for k, v := range ck.Keys {
		if err != nil {
			break
		}
		err = txn.Set(stateKey(ck.Class, ck.ID, k), v)
	}
	for name, at := range ck.Alarms {
		if err != nil {
			break
		}
		err = txn.Set(alarmKey(ck.Class, ck.ID, name), encodeAlarm(at))
	}
	for _, k := range ck.Keyed {
		if err != nil {
			break
		}
		err = stageIdem(do, ck.Class, ck.ID, k, false)
	}
	next := Meta{Version: ck.Version, Seq: ck.Seq, Hash: ck.Hash, Name: meta.Name, Updated: ck.Time}
	if next.Name == "" {
		next.Name = ck.Name
	}
	if err == nil {
		err = txn.Set(metaKey(ck.Class, ck.ID), encodeMeta(next))
	}
	if err == nil {
		err = txn.Commit()
	}
	obj := objectRef{ck.Class, ck.ID}
	if err == nil {
		p.metas.put(obj, next)
	} else {
		p.metas.drop(obj) // Badger may hold either side of a failed commit
	}
	if errors.Is(err, badger.ErrTxnTooBig) {
		return false, fmt.Errorf("%w: %s/%s v%d with %d keys", ErrTooBig, ck.Class, ck.ID, ck.Version, len(ck.Keys))
	}
	if err != nil {
		return false, fmt.Errorf("projector: install checkpoint %s/%s v%d: %w", ck.Class, ck.ID, ck.Version, err)
	}
	return true, nil
}

// deletePrefix deletes every key under prefix in txn.
func deletePrefix(txn *badger.Txn, prefix []byte) error {
	var keys [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
