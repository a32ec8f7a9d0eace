package projector

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// ListOptions selects an object's keys. Start is inclusive, End exclusive,
// both in byte order of the keys and ignored when empty; Reverse lists from
// the end; Limit 0 means no limit.
type ListOptions struct {
	Prefix, Start, End string
	Reverse            bool
	Limit              int
}

// view runs fn in a read-only transaction, unless the projector is closed.
func (p *Projector) view(fn func(*badger.Txn) error) error {
	if !p.users.enter() {
		return ErrClosed
	}
	defer p.users.leave()
	if err := p.broken(); err != nil {
		return err
	}
	return p.db.View(fn)
}

// Meta returns what the snapshot knows of an object: the zero Meta if
// nothing.
func (p *Projector) Meta(class string, id log.ID) (Meta, error) {
	if err := checkClass(class); err != nil {
		return Meta{}, err
	}
	var m Meta
	err := p.view(func(tx *badger.Txn) error {
		var err error
		m, err = readMeta(tx, class, id)
		return err
	})
	return m, err
}

// Get returns the value of one key of an object; ok is false if the key
// has no value.
func (p *Projector) Get(class string, id log.ID, key string) (val []byte, ok bool, err error) {
	if err := checkClass(class); err != nil {
		return nil, false, err
	}
	err = p.view(func(tx *badger.Txn) error {
		item, err := tx.Get(stateKey(class, id, key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		ok = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("projector: get %s/%s: %w", class, id, err)
	}
	return val, ok, nil
}

// List calls fn with the object's keys in range, in order (or reverse
// order), until fn returns false or Limit keys were given. The value is
// fn's to keep.
func (p *Projector) List(class string, id log.ID, opts ListOptions, fn func(key string, val []byte) bool) error {
	if err := checkClass(class); err != nil {
		return err
	}
	if opts.Limit < 0 {
		return fmt.Errorf("projector: list %s/%s: negative limit %d", class, id, opts.Limit)
	}
	r := newKeyRange(opts)
	if r.empty() {
		return nil
	}
	base := stateKey(class, id, "")
	n := 0
	emit := func(k string, item *badger.Item) (bool, error) {
		v, err := item.ValueCopy(nil)
		if err != nil {
			return false, err
		}
		n++
		return fn(k, v) && (opts.Limit == 0 || n < opts.Limit), nil
	}
	err := p.view(func(tx *badger.Txn) error {
		if !opts.Reverse {
			it := tx.NewIterator(badger.IteratorOptions{Prefix: append(bytes.Clone(base), opts.Prefix...)})
			defer it.Close()
			for it.Seek(append(bytes.Clone(base), r.lo...)); it.Valid(); it.Next() {
				k := string(it.Item().Key()[len(base):])
				if r.hasHi && k >= r.hi {
					return nil
				}
				if more, err := emit(k, it.Item()); err != nil || !more {
					return err
				}
			}
			return nil
		}
		// Reverse Seek finds the last key ≤ its target, which may lie
		// outside the range (the target itself, or past the object), and
		// Badger's Prefix option would then end the iteration at once. So
		// iterate without it, skip what sorts after the range, and stop
		// at the first key before it.
		it := tx.NewIterator(badger.IteratorOptions{Reverse: true})
		defer it.Close()
		target, ok := successor(base)
		if r.hasHi {
			target, ok = append(bytes.Clone(base), r.hi...), true
		}
		if !ok { // cannot happen: base starts with kindState
			return fmt.Errorf("no key follows %q", base)
		}
		for it.Seek(target); it.Valid(); it.Next() {
			key := it.Item().Key()
			if !bytes.HasPrefix(key, base) {
				if bytes.Compare(key, base) > 0 {
					continue // after the object
				}
				return nil // before the object
			}
			k := string(key[len(base):])
			if r.hasHi && k >= r.hi {
				continue
			}
			if k < r.lo {
				return nil
			}
			if more, err := emit(k, it.Item()); err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("projector: list %s/%s: %w", class, id, err)
	}
	return nil
}

// keyRange is ListOptions as one interval of keys: [lo, hi), or [lo, ∞)
// without hasHi.
type keyRange struct {
	lo, hi string
	hasHi  bool
}

func newKeyRange(opts ListOptions) keyRange {
	// Every key with the prefix is ≥ the prefix and < its successor.
	r := keyRange{lo: max(opts.Prefix, opts.Start)}
	if s, ok := successor([]byte(opts.Prefix)); ok && opts.Prefix != "" {
		r.hi, r.hasHi = string(s), true
	}
	if opts.End != "" && (!r.hasHi || opts.End < r.hi) {
		r.hi, r.hasHi = opts.End, true
	}
	return r
}

func (r keyRange) empty() bool { return r.hasHi && r.lo >= r.hi }

// successor returns the least byte string greater than every string with
// prefix b, or false if there is none (b is all 0xff).
func successor(b []byte) ([]byte, bool) {
	s := bytes.Clone(b)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1], true
		}
	}
	return nil, false
}

// Alarms returns the object's pending alarms: name ("" is the default
// alarm) to due time in Unix nanoseconds.
func (p *Projector) Alarms(class string, id log.ID) (map[string]int64, error) {
	if err := checkClass(class); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	prefix := alarmKey(class, id, "")
	err := p.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := string(it.Item().Key()[len(prefix):])
			err := it.Item().Value(func(v []byte) error {
				at, err := decodeAlarm(v)
				out[name] = at
				return err
			})
			if err != nil {
				return fmt.Errorf("alarm %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projector: alarms %s/%s: %w", class, id, err)
	}
	return out, nil
}

// Dump calls fn with every key and value in the snapshot, in key order,
// until fn returns an error, which Dump returns. Tests compare snapshots
// with it.
func (p *Projector) Dump(fn func(key, val []byte) error) error {
	return p.view(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("projector: dump: %w", err)
			}
			if err := fn(it.Item().KeyCopy(nil), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// EachAlarm calls fn with every pending alarm in the snapshot (of one class,
// or of all when class is ""), in key order, until fn returns an error,
// which EachAlarm returns. Alarms are re-published from here on start.
func (p *Projector) EachAlarm(class string, fn func(class string, id log.ID, name string, at int64) error) error {
	prefix := []byte{kindAlarm}
	if class != "" {
		if err := checkClass(class); err != nil {
			return err
		}
		prefix = append(append(prefix, class...), 0)
	}
	return p.eachAlarm(prefix, nil, fn)
}

// AlarmCursor is a position in the pending-alarm index: the alarm last
// visited (the zero cursor is before the first).
type AlarmCursor struct {
	Class string
	ID    log.ID
	Name  string
}

// EachAlarmAfter is EachAlarm over every class, from the alarm after
// cursor in key order: a sweep reads the index a page at a time with it,
// stopping fn (with an error of its own) when the page is full.
func (p *Projector) EachAlarmAfter(cursor AlarmCursor, fn func(class string, id log.ID, name string, at int64) error) error {
	var after []byte
	if cursor.Class != "" {
		if err := checkClass(cursor.Class); err != nil {
			return err
		}
		after = alarmKey(cursor.Class, cursor.ID, cursor.Name)
	}
	return p.eachAlarm([]byte{kindAlarm}, after, fn)
}

// eachAlarm visits the alarms under prefix whose keys are above after.
func (p *Projector) eachAlarm(prefix, after []byte, fn func(class string, id log.ID, name string, at int64) error) error {
	return p.view(func(tx *badger.Txn) error {
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
		for ; it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			sep := bytes.IndexByte(k, 0)
			if sep < 1 || len(k) < sep+1+len(log.ID{}) {
				return fmt.Errorf("projector: corrupt alarm key %q", k)
			}
			var id log.ID
			copy(id[:], k[sep+1:])
			name := string(k[sep+1+len(id):])
			var at int64
			err := it.Item().Value(func(v []byte) error {
				var err error
				at, err = decodeAlarm(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("projector: alarm %q: %w", name, err)
			}
			if err := fn(string(k[1:sep]), id, name, at); err != nil {
				return err
			}
		}
		return nil
	})
}
