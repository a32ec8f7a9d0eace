package projector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// The idempotency index: for every keyed turn that reached the log, the
// record a retry with the same key is answered from (its cause: key,
// request hash, outcome), under the object, and an expiry entry ordered by
// the event's time so that old records can be dropped in bounded steps
// without scanning objects:
//
//	i<class>\x00<id 32 bytes><key>                  time (8 bytes BE) + log.EncodeCause
//	x<time 8 bytes BE><class>\x00<id 32 bytes><key>  empty
//
// Both are written in the event's transaction (invariant 1 holds for
// them as for state), so the snapshot never claims an event whose records
// are missing.
//
// A turn that applied a durable message (its cause's Caller is of the
// message kind) gets neither: its key is the runtime's, never a client's,
// and a redelivery is answered from the sender's received record
// (outbox.go), which holds the same cause and never expires.

const (
	kindIdem       = 'i'
	kindIdemExpiry = 'x'
)

func idemKey(class string, id log.ID, key string) []byte {
	return objectKey(kindIdem, class, id, key)
}

func idemExpiryKey(at int64, class string, id log.ID, key string) []byte {
	b := make([]byte, 0, 1+8+len(class)+1+len(id)+len(key))
	b = append(b, kindIdemExpiry)
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = append(b, class...)
	b = append(b, 0)
	b = append(b, id[:]...)
	return append(b, key...)
}

// IdemRecord is what the snapshot keeps of one keyed turn.
type IdemRecord struct {
	Time  int64     // the event's time, Unix nanoseconds
	Cause log.Cause // IdemKey, IdemHash and Outcome are set
}

func encodeIdem(r IdemRecord) ([]byte, error) {
	c, err := log.EncodeCause(log.Cause{Via: r.Cause.Via, Method: r.Cause.Method, IdemKey: r.Cause.IdemKey, IdemHash: r.Cause.IdemHash, Outcome: r.Cause.Outcome})
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(c)), uint64(r.Time)), c...), nil
}

func decodeIdem(b []byte) (IdemRecord, error) {
	if len(b) < 8 {
		return IdemRecord{}, fmt.Errorf("corrupt idempotency record: %d bytes", len(b))
	}
	c, err := log.DecodeCause(b[8:])
	if err != nil {
		return IdemRecord{}, fmt.Errorf("corrupt idempotency record: %w", err)
	}
	return IdemRecord{Time: int64(binary.BigEndian.Uint64(b)), Cause: c}, nil
}

// eventIdem writes the records of ev's keyed turns through do.
func eventIdem(do func(func(*badger.Txn) error) error, ev *log.Event) error {
	for _, t := range ev.Turns {
		if t.Cause.IdemKey == "" || t.Cause.Outcome == nil {
			continue
		}
		if err := stageIdem(do, ev.Class, ev.ID, log.KeyedTurn{Time: ev.Time, Cause: t.Cause}, true); err != nil {
			return err
		}
	}
	return nil
}

// stageIdem writes one keyed turn's record and its expiry entry through do
// (a message's turn: its received record instead; inOrder as for
// stageReceived).
func stageIdem(do func(func(*badger.Txn) error) error, class string, id log.ID, t log.KeyedTurn, inOrder bool) error {
	if c := t.Cause.Caller; c != nil && c.Kind == log.CallerMessage {
		if err := do(func(tx *badger.Txn) error { return stageReceived(tx, class, id, t.Cause, inOrder) }); err != nil {
			return fmt.Errorf("received message: %w", err)
		}
		return nil
	}
	v, err := encodeIdem(IdemRecord{Time: t.Time, Cause: t.Cause})
	if err != nil {
		return err
	}
	k, xk := idemKey(class, id, t.Cause.IdemKey), idemExpiryKey(t.Time, class, id, t.Cause.IdemKey)
	err = do(func(tx *badger.Txn) error {
		if err := tx.Set(k, v); err != nil {
			return err
		}
		return tx.Set(xk, nil)
	})
	if err != nil {
		return fmt.Errorf("idempotency record %q: %w", t.Cause.IdemKey, err)
	}
	return nil
}

// Idem returns the record of an object's keyed turn, if the snapshot has
// one (expired records may still be there until ExpireIdem drops them: the
// caller compares Time with its window).
func (p *Projector) Idem(class string, id log.ID, key string) (IdemRecord, bool, error) {
	if err := checkClass(class); err != nil {
		return IdemRecord{}, false, err
	}
	var (
		rec IdemRecord
		ok  bool
	)
	err := p.view(func(tx *badger.Txn) error {
		item, err := tx.Get(idemKey(class, id, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			rec, err = decodeIdem(v)
			ok = err == nil
			return err
		})
	})
	if err != nil {
		return IdemRecord{}, false, fmt.Errorf("projector: idempotency record of %s/%s: %w", class, id, err)
	}
	return rec, ok, nil
}

// ExpireIdem drops at most max idempotency records whose event time is
// before the given Unix nanoseconds, oldest first, and returns how many it
// dropped: bounded work, so a caller sweeping on a timer never holds the
// writer for long. A record re-made later under the same key (its first
// one expired) is left alone.
func (p *Projector) ExpireIdem(before int64, max int) (n int, err error) {
	err = p.asWriter(func() error {
		n, err = p.expireIdemLocked(before, max)
		return err
	})
	return n, err
}

func (p *Projector) expireIdemLocked(before int64, max int) (int, error) {
	if err := p.broken(); err != nil {
		return 0, err
	}
	txn := p.db.NewTransaction(true)
	defer txn.Discard()
	var expired [][]byte
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindIdemExpiry}})
	for it.Rewind(); it.Valid() && len(expired) < max; it.Next() {
		k := it.Item().Key()
		if len(k) < 9 || int64(binary.BigEndian.Uint64(k[1:9])) >= before {
			break
		}
		expired = append(expired, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, xk := range expired {
		at := int64(binary.BigEndian.Uint64(xk[1:9]))
		rest := xk[9:]
		nul := bytes.IndexByte(rest, 0)
		if nul < 0 || len(rest) < nul+1+len(log.ID{}) {
			return 0, fmt.Errorf("projector: corrupt idempotency expiry key %q", xk)
		}
		var id log.ID
		copy(id[:], rest[nul+1:])
		k := idemKey(string(rest[:nul]), id, string(rest[nul+1+len(id):]))
		item, err := txn.Get(k)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("projector: expire idempotency records: %w", err)
		default:
			var cur IdemRecord
			if err := item.Value(func(v []byte) error { cur, err = decodeIdem(v); return err }); err != nil {
				return 0, fmt.Errorf("projector: expire idempotency records: %w", err)
			}
			if cur.Time == at {
				if err := txn.Delete(k); err != nil {
					return 0, fmt.Errorf("projector: expire idempotency records: %w", err)
				}
			}
		}
		if err := txn.Delete(xk); err != nil {
			return 0, fmt.Errorf("projector: expire idempotency records: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return 0, fmt.Errorf("projector: expire %d idempotency records: %w", len(expired), err)
	}
	return len(expired), nil
}

// InstallKeyed indexes records of keyed turns read from checkpoints (see
// log.LoadKeyed), without touching the object's state or meta: records
// are facts of events in the log, so writing them early, twice, or split
// over several transactions is harmless.
func (p *Projector) InstallKeyed(class string, id log.ID, recs []log.KeyedTurn) error {
	if err := checkClass(class); err != nil {
		return err
	}
	return p.asWriter(func() error { return p.installKeyedLocked(class, id, recs) })
}

func (p *Projector) installKeyedLocked(class string, id log.ID, recs []log.KeyedTurn) error {
	if err := p.broken(); err != nil {
		return err
	}
	txn := p.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	do := func(op func(*badger.Txn) error) error {
		err := op(txn)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = p.db.NewTransaction(true)
			err = op(txn)
		}
		return err
	}
	for _, r := range recs {
		if err := stageIdem(do, class, id, r, false); err != nil {
			return fmt.Errorf("projector: install records of %s/%s: %w", class, id, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("projector: install %d records of %s/%s: %w", len(recs), class, id, err)
	}
	return nil
}
