// Package history reads an object's past from the log: its events with
// causes and diffs, its storage as of a version or a time, and the
// verification of its hash chain. Replaying is a pure fold of events over a
// map (Replayer); the log is only read.
package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/strata-objects/strata/log"
)

// Sentinel errors for bad requests; the gateway maps them to 400.
var (
	ErrBadRange = errors.New("bad history range")
)

// Change is one key's change in a turn: Old and New are nil when the key
// did not exist before or after.
type Change struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
	Old []byte `json:"old,omitempty"`
	New []byte `json:"new,omitempty"`
	At  int64  `json:"at,omitempty"` // alarm due time, Unix ns
}

// Turn is one turn of an event with its diff.
type Turn struct {
	Cause   log.Cause `json:"-"`
	Changes []Change  `json:"changes"`
}

// Entry is one event as history shows it.
type Entry struct {
	Version uint64    `json:"version"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Name    string    `json:"name,omitempty"`
	Turns   []Turn    `json:"turns"`
}

// Replayer folds an object's events into its storage, one at a time, and
// says what each changed. It checks that versions follow one another.
type Replayer struct {
	State   map[string][]byte
	Version uint64
	Time    int64 // Unix ns of the last event applied
}

// NewReplayer starts from an object with no events.
func NewReplayer() *Replayer { return &Replayer{State: map[string][]byte{}} }

// Apply applies one event and returns its entry with diffs.
func (r *Replayer) Apply(rec log.Record) (Entry, error) {
	ev := rec.Event
	if ev.Version != r.Version+1 {
		return Entry{}, fmt.Errorf("event at sequence %d has version %d after version %d", rec.Seq, ev.Version, r.Version)
	}
	e := Entry{Version: ev.Version, Seq: rec.Seq, Time: time.Unix(0, ev.Time).UTC(), Name: ev.Name}
	for _, t := range ev.Turns {
		turn := Turn{Cause: t.Cause, Changes: []Change{}}
		for _, w := range t.Writes {
			c := Change{Op: w.Op.String(), Key: w.Key}
			switch w.Op {
			case log.OpPut:
				c.Old, c.New = r.State[w.Key], w.Value
				r.State[w.Key] = w.Value
			case log.OpDelete:
				c.Old = r.State[w.Key]
				delete(r.State, w.Key)
			case log.OpDeleteAll:
				// One change per key removed, in key order, so the diff
				// says what was lost.
				keys := make([]string, 0, len(r.State))
				for k := range r.State {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					turn.Changes = append(turn.Changes, Change{Op: log.OpDelete.String(), Key: k, Old: r.State[k]})
				}
				clear(r.State)
			case log.OpSetAlarm:
				c.At = w.At
			}
			if w.Op != log.OpDeleteAll {
				turn.Changes = append(turn.Changes, c)
			}
		}
		e.Turns = append(e.Turns, turn)
	}
	r.Version, r.Time = ev.Version, ev.Time
	return e, nil
}

// Range selects events: versions From..To inclusive (0: unbounded), at most
// Limit of them (0: all).
type Range struct {
	From, To uint64
	Limit    int
}

// Events calls fn for each event of the object in r, in order, with diffs.
// Diffs need the state before each event, so events before From are
// replayed but not shown.
func Events(ctx context.Context, l *log.Log, class string, id log.ID, r Range, fn func(Entry) error) error {
	if r.Limit < 0 || r.To != 0 && r.From > r.To {
		return fmt.Errorf("%w: from %d, to %d, limit %d", ErrBadRange, r.From, r.To, r.Limit)
	}
	rep := NewReplayer()
	shown := 0
	errDone := errors.New("done")
	err := l.Read(ctx, class, id, 1, func(rec log.Record) error {
		e, err := rep.Apply(rec)
		if err != nil {
			return err
		}
		if e.Version < r.From {
			return nil
		}
		if r.To != 0 && e.Version > r.To || r.Limit > 0 && shown >= r.Limit {
			return errDone
		}
		shown++
		return fn(e)
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// At selects a past state: the state after Version, or else the state as
// of Time (after the last event at or before it).
type At struct {
	Version uint64
	Time    time.Time
}

// State is an object's storage as of a past moment.
type State struct {
	Version uint64            // the last event included
	Time    time.Time         // that event's time
	Keys    map[string][]byte // storage keys and values
}

// StateAt replays the object up to at. A version beyond the object's last,
// or a time before its first event, is ErrBadRange.
func StateAt(ctx context.Context, l *log.Log, class string, id log.ID, at At) (State, error) {
	rep := NewReplayer()
	errDone := errors.New("done")
	err := l.Read(ctx, class, id, 1, func(rec log.Record) error {
		if at.Version == 0 && rec.Event.Time > at.Time.UnixNano() {
			return errDone
		}
		if _, err := rep.Apply(rec); err != nil {
			return err
		}
		if at.Version != 0 && rep.Version == at.Version {
			return errDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return State{}, err
	}
	switch {
	case at.Version != 0 && rep.Version != at.Version:
		return State{}, fmt.Errorf("%w: version %d, the object's last is %d", ErrBadRange, at.Version, rep.Version)
	case at.Version == 0 && rep.Version == 0:
		return State{}, fmt.Errorf("%w: %s is before the object's first event", ErrBadRange, at.Time.UTC().Format(time.RFC3339Nano))
	}
	return State{Version: rep.Version, Time: time.Unix(0, rep.Time).UTC(), Keys: rep.State}, nil
}

// Report is the result of verifying an object's hash chain.
type Report struct {
	Events uint64 `json:"events"`
	OK     bool   `json:"ok"`
	// BrokenAt is the stream sequence of the first event that does not
	// link to the one before it (0 when OK), and Reason says how.
	BrokenAt uint64   `json:"broken_at,omitempty"`
	Version  uint64   `json:"version,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Head     log.Hash `json:"-"`
}

// Verify recomputes the object's hash chain from its stored bytes and
// reports the first broken link: an event whose PrevHash is not the chain
// hash of the event before it, or whose version does not follow.
func Verify(ctx context.Context, l *log.Log, class string, id log.ID) (Report, error) {
	var rep Report
	var prev log.Hash
	var version uint64
	errBroken := errors.New("broken")
	err := l.Read(ctx, class, id, 1, func(rec log.Record) error {
		ev := rec.Event
		switch {
		case ev.Version != version+1:
			rep.Reason = fmt.Sprintf("version %d follows version %d", ev.Version, version)
		case !bytes.Equal(ev.PrevHash[:], prev[:]):
			rep.Reason = fmt.Sprintf("previous hash %s, the chain says %s", ev.PrevHash, prev)
		}
		if rep.Reason != "" {
			rep.BrokenAt, rep.Version = rec.Seq, ev.Version
			return errBroken
		}
		prev, version = rec.Hash(), ev.Version
		rep.Events++
		return nil
	})
	if err != nil && !errors.Is(err, errBroken) {
		var bad error = err
		if errors.Is(err, log.ErrBadEvent) {
			// Bytes that do not even decode are a broken link too.
			rep.Reason = bad.Error()
			return rep, nil
		}
		return Report{}, err
	}
	rep.OK, rep.Head = rep.Reason == "", prev
	return rep, nil
}
