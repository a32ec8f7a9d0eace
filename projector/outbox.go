package projector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// The outbox indexes (objects/messages.go). An object's pending messages
// are its events' Sends minus their Settles; the snapshot keeps them so
// that a restart, an activation and the sweep find what is left to
// deliver without reading the object's whole log. A target keeps, per
// sender, the message of that sender it applied last (its turn's cause:
// the caller's position and the answer), so a redelivery at any later
// time is a no-op:
//
//	o<class>\x00<id 32><version 8 BE><turn 4 BE><index 4 BE>  log.Message (CBOR)
//	l<class>\x00<id 32><version 8 BE><turn 4 BE><index 4 BE>  log.Message, then the error (dead letters)
//	r<class>\x00<id 32><sender class>\x00<sender id 32>       log.EncodeCause
//
// All are written in the event's transaction (invariant 1), so the
// snapshot never claims an event whose outbox changes are missing.
const (
	kindOutbox   = 'o'
	kindDead     = 'l'
	kindReceived = 'r'
)

// MessagePos is a message's identity within its sender: the version of
// the event that sent it, the turn in that event and the index in the
// turn's Sends. Positions order a sender's messages in send order.
type MessagePos struct {
	Version uint64
	Turn    int
	Index   int
}

// Less reports whether p was sent before q.
func (p MessagePos) Less(q MessagePos) bool {
	if p.Version != q.Version {
		return p.Version < q.Version
	}
	if p.Turn != q.Turn {
		return p.Turn < q.Turn
	}
	return p.Index < q.Index
}

func (p MessagePos) suffix() string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), p.Version)
	b = binary.BigEndian.AppendUint32(b, uint32(p.Turn))
	return string(binary.BigEndian.AppendUint32(b, uint32(p.Index)))
}

// OutboxMessage is one message of a sender the snapshot holds: pending,
// or a dead letter (Dead is its last error).
type OutboxMessage struct {
	Class string
	ID    log.ID
	Pos   MessagePos
	Msg   log.Message
	Dead  string
}

func encodeOutbox(m log.Message, dead string) ([]byte, error) {
	b, err := log.EncodeMessage(m)
	if err != nil {
		return nil, err
	}
	if dead == "" {
		return b, nil
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)+len(dead)), uint32(len(b)))
	return append(append(out, b...), dead...), nil
}

func decodeOutbox(v []byte, dead bool) (log.Message, string, error) {
	if !dead {
		m, err := log.DecodeMessage(v)
		return m, "", err
	}
	if len(v) < 4 || int(binary.BigEndian.Uint32(v)) > len(v)-4 {
		return log.Message{}, "", fmt.Errorf("corrupt dead letter: %d bytes", len(v))
	}
	n := int(binary.BigEndian.Uint32(v))
	m, err := log.DecodeMessage(v[4 : 4+n])
	return m, string(v[4+n:]), err
}

func receivedKey(class string, id log.ID, sender string, senderID log.ID) []byte {
	return objectKey(kindReceived, class, id, sender+"\x00"+string(senderID[:]))
}

// eventOutbox stages ev's outbox changes through do: its messages become
// pending, its settles end (or dead-letter, or put back) earlier ones, and
// a turn that applied a message records it under its sender.
func eventOutbox(do func(func(*badger.Txn) error) error, ev *log.Event) error {
	for ti, t := range ev.Turns {
		for i, m := range t.Sends {
			k := objectKey(kindOutbox, ev.Class, ev.ID, MessagePos{ev.Version, ti, i}.suffix())
			v, err := encodeOutbox(m, "")
			if err != nil {
				return fmt.Errorf("message %d.%d: %w", ti, i, err)
			}
			if err := do(func(tx *badger.Txn) error { return tx.Set(k, v) }); err != nil {
				return fmt.Errorf("message %d.%d: %w", ti, i, err)
			}
		}
		for _, s := range t.Settles {
			if err := do(func(tx *badger.Txn) error { return settle(tx, ev.Class, ev.ID, s) }); err != nil {
				return fmt.Errorf("settle v%d.%d.%d: %w", s.Version, s.Turn, s.Index, err)
			}
		}
	}
	return nil
}

// stageReceived records, for a keyed turn that applied a message, the
// message as its sender's last applied one. From an event (inOrder) it is
// the latest: an object's events are applied in its order, and an object
// applies one sender's messages in send order (a redelivery of an earlier
// one is answered from this record, with no turn). Otherwise (checkpoints
// install their records in any order) it is recorded unless a later one
// of that sender is. stageIdem calls it, in place of the idempotency
// record: the same turns, from events and from checkpoints.
func stageReceived(tx *badger.Txn, class string, id log.ID, c log.Cause, inOrder bool) error {
	m := c.Caller
	if m == nil || m.Kind != log.CallerMessage {
		return nil
	}
	k := receivedKey(class, id, m.Class, m.ID)
	var item *badger.Item
	err := badger.ErrKeyNotFound
	if !inOrder {
		item, err = tx.Get(k)
	}
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return err
	default:
		var old log.Cause
		if err := item.Value(func(v []byte) error { old, err = log.DecodeCause(v); return err }); err != nil {
			return err
		}
		if old.Caller != nil && !log.CallerBefore(old.Caller, m) {
			return nil
		}
	}
	v, err := log.EncodeCause(log.Cause{Via: c.Via, Method: c.Method, Caller: m, IdemKey: c.IdemKey, IdemHash: c.IdemHash, Outcome: c.Outcome})
	if err != nil {
		return err
	}
	return tx.Set(k, v)
}

// settle applies one Settle: the pending message goes (to the dead
// letters if s.Dead), or a dead letter comes back (s.Retry). A settle of
// a message no longer where it expects is a no-op (a repeat).
func settle(tx *badger.Txn, class string, id log.ID, s log.Settle) error {
	suffix := MessagePos{s.Version, s.Turn, s.Index}.suffix()
	from, to := objectKey(kindOutbox, class, id, suffix), objectKey(kindDead, class, id, suffix)
	if s.Retry {
		from, to = to, from
	}
	if !s.Retry && s.Dead == "" {
		// A plain settle only removes the message: no need to read it
		// first (a repeat deletes a key that is already gone).
		return tx.Delete(from)
	}
	item, err := tx.Get(from)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if err := tx.Delete(from); err != nil {
		return err
	}
	switch {
	case s.Retry:
		m, _, err := decodeOutbox(v, true)
		if err != nil {
			return err
		}
		if v, err = encodeOutbox(m, ""); err != nil {
			return err
		}
	case s.Dead != "":
		m, _, err := decodeOutbox(v, false)
		if err != nil {
			return err
		}
		if v, err = encodeOutbox(m, s.Dead); err != nil {
			return err
		}
	}
	return tx.Set(to, v)
}

// Outbox returns an object's pending messages and dead letters in send
// order, and the object's version the snapshot holds them at.
func (p *Projector) Outbox(class string, id log.ID) (pending, dead []OutboxMessage, version uint64, err error) {
	if err := checkClass(class); err != nil {
		return nil, nil, 0, err
	}
	err = p.view(func(tx *badger.Txn) error {
		meta, err := readMeta(tx, class, id)
		if err != nil {
			return err
		}
		version = meta.Version
		prefix := objectKey(kindOutbox, class, id, "")
		if pending, _, err = eachOutbox(tx, kindOutbox, prefix, nil, 0); err != nil {
			return err
		}
		prefix[0] = kindDead
		dead, _, err = eachOutbox(tx, kindDead, prefix, nil, 0)
		return err
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("projector: outbox of %s/%s: %w", class, id, err)
	}
	return pending, dead, version, nil
}

// OutboxCursor is where a page of OutboxPage or DeadPage ends; the zero
// cursor is the start.
type OutboxCursor struct {
	Class string
	ID    log.ID
	Pos   MessagePos
}

// OutboxPage returns at most n pending messages of every object after
// cursor, and the cursor of the next page (zero after the index's end).
func (p *Projector) OutboxPage(cursor OutboxCursor, n int) ([]OutboxMessage, OutboxCursor, error) {
	return p.outboxPage(kindOutbox, cursor, n)
}

// DeadPage is OutboxPage for the dead letters.
func (p *Projector) DeadPage(cursor OutboxCursor, n int) ([]OutboxMessage, OutboxCursor, error) {
	return p.outboxPage(kindDead, cursor, n)
}

func (p *Projector) outboxPage(kind byte, cursor OutboxCursor, n int) ([]OutboxMessage, OutboxCursor, error) {
	var after []byte
	if cursor.Class != "" {
		if err := checkClass(cursor.Class); err != nil {
			return nil, cursor, err
		}
		after = objectKey(kind, cursor.Class, cursor.ID, cursor.Pos.suffix())
	}
	var (
		out  []OutboxMessage
		next OutboxCursor
	)
	err := p.view(func(tx *badger.Txn) error {
		var err error
		out, next, err = eachOutbox(tx, kind, []byte{kind}, after, n)
		return err
	})
	if err != nil {
		return nil, cursor, fmt.Errorf("projector: outbox page: %w", err)
	}
	return out, next, nil
}

// eachOutbox reads the entries under prefix after the key after, at most
// n of them (0: all), and the cursor of the last one if it stopped at n.
func eachOutbox(tx *badger.Txn, kind byte, prefix, after []byte, n int) ([]OutboxMessage, OutboxCursor, error) {
	it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	if after == nil {
		it.Rewind()
	} else {
		it.Seek(after)
		if it.Valid() && bytes.Equal(it.Item().Key(), after) {
			it.Next()
		}
	}
	var out []OutboxMessage
	for ; it.Valid(); it.Next() {
		if n > 0 && len(out) == n {
			last := out[len(out)-1]
			return out, OutboxCursor{Class: last.Class, ID: last.ID, Pos: last.Pos}, nil
		}
		k := it.Item().Key()
		sep := bytes.IndexByte(k, 0)
		if sep < 1 || len(k) != sep+1+len(log.ID{})+16 {
			return nil, OutboxCursor{}, fmt.Errorf("corrupt outbox key %q", k)
		}
		e := OutboxMessage{Class: string(k[1:sep])}
		copy(e.ID[:], k[sep+1:])
		s := k[sep+1+len(e.ID):]
		e.Pos = MessagePos{Version: binary.BigEndian.Uint64(s), Turn: int(binary.BigEndian.Uint32(s[8:])), Index: int(binary.BigEndian.Uint32(s[12:]))}
		err := it.Item().Value(func(v []byte) error {
			var err error
			e.Msg, e.Dead, err = decodeOutbox(v, kind == kindDead)
			return err
		})
		if err != nil {
			return nil, OutboxCursor{}, fmt.Errorf("outbox entry %s/%s v%d: %w", e.Class, e.ID, e.Pos.Version, err)
		}
		out = append(out, e)
	}
	return out, OutboxCursor{}, nil
}

// Received returns the cause of the last turn of the object that applied
// a message of sender, if the snapshot has one: its Caller is that
// message's position, its Outcome the answer.
func (p *Projector) Received(class string, id log.ID, sender string, senderID log.ID) (log.Cause, bool, error) {
	if err := checkClass(class); err != nil {
		return log.Cause{}, false, err
	}
	var (
		c  log.Cause
		ok bool
	)
	err := p.view(func(tx *badger.Txn) error {
		item, err := tx.Get(receivedKey(class, id, sender, senderID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			c, err = log.DecodeCause(v)
			ok = err == nil
			return err
		})
	})
	if err != nil {
		return log.Cause{}, false, fmt.Errorf("projector: messages of %s/%s received from %s/%s: %w", class, id, sender, senderID, err)
	}
	return c, ok, nil
}

// installOutbox replaces an object's outbox index with a checkpoint's.
func installOutbox(tx *badger.Txn, ck *log.Checkpoint) error {
	for _, kind := range []byte{kindOutbox, kindDead} {
		if err := deletePrefix(tx, objectKey(kind, ck.Class, ck.ID, "")); err != nil {
			return err
		}
	}
	for _, m := range ck.Outbox {
		kind := byte(kindOutbox)
		if m.Dead != "" {
			kind = kindDead
		}
		v, err := encodeOutbox(m.Message, m.Dead)
		if err != nil {
			return err
		}
		if err := tx.Set(objectKey(kind, ck.Class, ck.ID, MessagePos{m.Version, m.Turn, m.Index}.suffix()), v); err != nil {
			return err
		}
	}
	return nil
}
