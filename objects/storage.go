package objects

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"
)

// Storage is an object's durable key-value storage as one turn sees it. It
// mirrors Durable Objects' storage API. Writes go to the turn's write set
// and become durable together when the turn returns without error (an
// implicit transaction); reads see the turn's own writes first.
//
// A Storage is only valid during the turn that handed it out, and only on
// that turn's goroutine.
type Storage struct {
	t     *turn
	ws    *writeSet
	begun *begun // a transaction from Begin, until it ends
}

func (s *Storage) layers() []*layer {
	return append(s.ws.chain(), &s.t.a.overlay)
}

func (s *Storage) check() error {
	if s.t.done {
		return errors.New("objects: storage used after its turn ended")
	}
	return nil
}

// Get returns the value of key and whether it exists.
func (s *Storage) Get(key string) ([]byte, bool, error) {
	if err := s.check(); err != nil {
		return nil, false, err
	}
	if err := validKey(key); err != nil {
		return nil, false, err
	}
	if v, ok, decided := resolve(s.layers(), key); decided {
		return cloneBytes(v), ok, nil
	}
	return s.t.a.cachedGet(key)
}

// GetMany returns the values of the keys that exist.
func (s *Storage) GetMany(keys []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		v, ok, err := s.Get(k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[k] = v
		}
	}
	return out, nil
}

// Put sets key to value. The value is copied.
func (s *Storage) Put(key string, value []byte) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := validKey(key); err != nil {
		return err
	}
	if len(value) > ValueBytesMax {
		return tooLarge("value of "+quote(key), len(value), ValueBytesMax)
	}
	if value == nil {
		value = []byte{}
	}
	return s.ws.stage(key, entry{val: cloneBytes(value)})
}

// PutMany sets every key, all or nothing. Keys are written in sorted order
// so that the event does not depend on map iteration.
func (s *Storage) PutMany(entries map[string][]byte) error {
	keys := make([]string, 0, len(entries))
	for k, v := range entries {
		if err := validKey(k); err != nil {
			return err
		}
		if len(v) > ValueBytesMax {
			return tooLarge("value of "+quote(k), len(v), ValueBytesMax)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return s.Transaction(func(tx *Storage) error {
		for _, k := range keys {
			if err := tx.Put(k, entries[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete removes key and reports whether it existed.
func (s *Storage) Delete(key string) (bool, error) {
	_, existed, err := s.Get(key)
	if err != nil {
		return false, err
	}
	return existed, s.ws.stage(key, entry{del: true})
}

// DeleteMany removes keys, all or nothing, and reports how many existed.
func (s *Storage) DeleteMany(keys []string) (int, error) {
	n := 0
	err := s.Transaction(func(tx *Storage) error {
		for _, k := range keys {
			existed, err := tx.Delete(k)
			if err != nil {
				return err
			}
			if existed {
				n++
			}
		}
		return nil
	})
	return n, err
}

// DeleteAll removes every key of the object. Alarms are kept, as in
// Durable Objects.
func (s *Storage) DeleteAll() error {
	if err := s.check(); err != nil {
		return err
	}
	s.ws.clear()
	return nil
}

// List returns the keys and values in a range, in key order (or reverse).
func (s *Storage) List(opts ListOptions) ([]KV, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if opts.Limit < 0 {
		return nil, fmt.Errorf("%w: negative list limit %d", ErrBadInput, opts.Limit)
	}
	return listMerged(s.layers(), opts, s.t.a.snapshotList)
}

// Transaction runs fn with a nested write set. If fn returns an error (or
// panics) none of its writes are kept; otherwise they join the turn's.
// Durable Objects' transaction(), inside the turn's implicit one.
func (s *Storage) Transaction(fn func(tx *Storage) error) error {
	if err := s.check(); err != nil {
		return err
	}
	child := newWriteSet(s.ws)
	t := s.t
	hadSQL, outer := t.sqlTurn, t.tx
	sp := t.sqlTxBegin(child)
	t.inTx, t.tx = t.inTx+1, child
	err := func() error {
		defer func() { t.inTx, t.tx = t.inTx-1, outer }()
		return fn(&Storage{t: t, ws: child})
	}()
	t.sqlTxEnd(sp, hadSQL, err == nil)
	if err != nil {
		return err
	}
	s.ws.absorb(child)
	return nil
}

// Sync makes every write so far in this turn (and before it) durable, and
// returns once the log acknowledged them. Writes after Sync form a new part
// of the turn; an error later in the turn does not undo what Sync made
// durable. Sync inside Transaction is refused.
func (s *Storage) Sync() error {
	if err := s.check(); err != nil {
		return err
	}
	if s.ws.parent != nil {
		return errors.New("objects: Sync inside Transaction")
	}
	return s.t.sync()
}

// GetJSON reads key and decodes its JSON value into a T.
func GetJSON[T any](s *Storage, key string) (T, bool, error) {
	var v T
	b, ok, err := s.Get(key)
	if err != nil || !ok {
		return v, ok, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, true, fmt.Errorf("decode %s: %w", quote(key), err)
	}
	return v, true, nil
}

// PutJSON encodes v as JSON and stores it at key.
func PutJSON(s *Storage, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", quote(key), err)
	}
	return s.Put(key, b)
}

func validKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > KeyBytesMax:
		return tooLarge("key", len(key), KeyBytesMax)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidKey)
	}
	return nil
}

func tooLarge(what string, n, max int) error {
	return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrTooLarge, what, n, max)
}

func quote(s string) string { return fmt.Sprintf("%q", truncate(s)) }
