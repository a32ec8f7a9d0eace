package projector

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// ListOptions selects keys: Start inclusive, End exclusive, in byte order
// (or reverse); Limit 0 means no limit.
type ListOptions struct {
	Prefix, Start, End string
	Reverse            bool
	Limit              int
}

// Meta returns what the snapshot knows of an object; the zero Meta if
// nothing.
func (p *Projector) Meta(class string, id log.ID) (Meta, error) {
	var m Meta
	err := p.db.View(func(tx *badger.Txn) error {
		var err error
		m, err = p.metaTxn(tx, class, id)
		return err
	})
	return m, err
}

// Get returns the value of one key of an object.
func (p *Projector) Get(class string, id log.ID, key string) (val []byte, ok bool, err error) {
	err = p.db.View(func(tx *badger.Txn) error {
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
		return nil, false, fmt.Errorf("get %s/%s: %w", class, id, err)
	}
	return val, ok, nil
}

// List calls fn for the object's keys in range, in order, until fn returns
// false or Limit keys were given.
func (p *Projector) List(class string, id log.ID, opts ListOptions, fn func(key string, val []byte) bool) error {
	base := objectPrefix('d', class, id)
	prefix := append(bytes.Clone(base), opts.Prefix...)
	err := p.db.View(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: opts.Reverse, PrefetchValues: opts.Limit > 0 && opts.Limit <= 100})
		defer it.Close()
		// Seek: forward from max(prefix, start); reverse from just below
		// min(end, prefix's successor).
		if !opts.Reverse {
			seek := prefix
			if s := append(bytes.Clone(base), opts.Start...); bytes.Compare(s, seek) > 0 {
				seek = s
			}
			it.Seek(seek)
		} else {
			// In reverse, Seek finds the largest key <= the target. The
			// 0xff suffix sorts after every key with this prefix.
			seek := append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff)
			if opts.End != "" {
				if e := append(bytes.Clone(base), opts.End...); bytes.Compare(e, seek) < 0 {
					seek = e
				}
			}
			it.Seek(seek)
		}
		n := 0
		for ; it.Valid(); it.Next() {
			k := string(it.Item().Key()[len(base):])
			if opts.Start != "" && k < opts.Start {
				if opts.Reverse {
					return nil
				}
				continue
			}
			if opts.End != "" && k >= opts.End {
				if !opts.Reverse {
					return nil
				}
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			n++
			if !fn(k, v) || opts.Limit > 0 && n >= opts.Limit {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s/%s: %w", class, id, err)
	}
	return nil
}

// Alarms returns the object's pending alarms: name to due time (Unix ns).
func (p *Projector) Alarms(class string, id log.ID) (map[string]int64, error) {
	out := map[string]int64{}
	prefix := objectPrefix('a', class, id)
	err := p.db.View(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("alarm value of %d bytes", len(v))
				}
				out[string(it.Item().Key()[len(prefix):])] = int64(binary.BigEndian.Uint64(v))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alarms %s/%s: %w", class, id, err)
	}
	return out, nil
}

// Dump calls fn for every key and value in the snapshot, in key order.
func (p *Projector) Dump(fn func(key, val []byte) error) error {
	return p.db.View(func(tx *badger.Txn) error {
		it := tx.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(it.Item().KeyCopy(nil), v); err != nil {
				return err
			}
		}
		return nil
	})
}
