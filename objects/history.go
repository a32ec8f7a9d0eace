package objects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// The runtime's window on the past: the gateway talks to objects only, so
// history reaches it through these.

// History types, as the gateway sees them.
type (
	HistoryRange = history.Range
	HistoryEntry = history.Entry
	HistoryTurn  = history.Turn
	PastAt       = history.At
	PastState    = history.State
	AuditReport  = history.Report
	Trace        = history.Trace
	TraceNode    = history.TraceNode
	TraceLimits  = history.TraceLimits
)

// Record is a stored event as a tail delivers it.
type Record = log.Record

// ErrBadRange: a version beyond the object's last, a time before its
// first event, a negative limit.
var ErrBadRange = history.ErrBadRange

// History calls fn for each of ref's events in r, with causes and diffs.
func (rt *Runtime) History(ctx context.Context, ref Ref, r history.Range, fn func(history.Entry) error) error {
	if _, err := rt.Class(ref.Class); err != nil {
		return err
	}
	return corruptLog(history.Events(ctx, rt.log, ref.Class, ref.ID, r, fn))
}

// ErrNoEvent: the object has no event of the version asked for.
var ErrNoEvent = history.ErrNoEvent

// Trace is the causal trace through ref's event of version: the turns, in
// every object, that the request which caused it caused (history/trace.go).
// It reads only the log, so it works on any node.
func (rt *Runtime) Trace(ctx context.Context, ref Ref, version uint64, lim history.TraceLimits) (*history.Trace, error) {
	if _, err := rt.Class(ref.Class); err != nil {
		return nil, err
	}
	tr, err := history.TraceFrom(ctx, rt.log, ref.Class, ref.ID, version, lim)
	return tr, corruptLog(err)
}

// Follow calls fn for each of ref's events after version after, with
// causes and diffs, as they are committed, until ctx ends or fn fails.
func (rt *Runtime) Follow(ctx context.Context, ref Ref, after uint64, fn func(history.Entry) error) error {
	if _, err := rt.Class(ref.Class); err != nil {
		return err
	}
	return corruptLog(history.Follow(ctx, rt.log, ref.Class, ref.ID, after, fn))
}

// StateAt is ref's storage as of a past version or time.
func (rt *Runtime) StateAt(ctx context.Context, ref Ref, at history.At) (history.State, error) {
	if _, err := rt.Class(ref.Class); err != nil {
		return history.State{}, err
	}
	st, err := history.StateAt(ctx, rt.log, ref.Class, ref.ID, at)
	return st, corruptLog(err)
}

// corruptLog marks a read that met a message that is not a valid event of
// the object's chain as ErrCorruptLog (not retryable; the error names the
// message's sequence).
func corruptLog(err error) error {
	if errors.Is(err, log.ErrBadEvent) && !errors.Is(err, ErrCorruptLog) {
		return fmt.Errorf("%w: %w", ErrCorruptLog, err)
	}
	return err
}

// Verify recomputes ref's hash chain.
func (rt *Runtime) Verify(ctx context.Context, ref Ref) (history.Report, error) {
	if _, err := rt.Class(ref.Class); err != nil {
		return history.Report{}, err
	}
	return history.Verify(ctx, rt.log, ref.Class, ref.ID)
}

// ObjectSummary is one object in a class listing.
type ObjectSummary struct {
	ID      ID
	Name    string
	Version uint64
	Updated time.Time
}

// listLimitMax bounds one page of a listing.
const listLimitMax = 1000

// ListObjects returns up to limit objects of class after the cursor (the
// last id of the previous page, "" for the first) whose name starts with
// namePrefix, and the cursor of the next page ("" at the end). It reads
// the snapshot of this node.
func (rt *Runtime) ListObjects(class, namePrefix, cursor string, limit int) ([]ObjectSummary, string, error) {
	if _, err := rt.Class(class); err != nil {
		return nil, "", err
	}
	if limit < 0 {
		return nil, "", fmt.Errorf("%w: negative limit %d", ErrBadInput, limit)
	}
	if limit == 0 || limit > listLimitMax {
		limit = listLimitMax
	}
	var after *ID
	if cursor != "" {
		id, err := ParseID(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("%w: cursor: %w", ErrBadInput, err)
		}
		after = &id
	}
	var out []ObjectSummary
	more := false
	err := rt.proj.Objects(class, after, namePrefix, func(o projector.ObjectInfo) bool {
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, ObjectSummary{ID: o.ID, Name: o.Meta.Name, Version: o.Meta.Version, Updated: time.Unix(0, o.Meta.Updated).UTC()})
		return true
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = out[len(out)-1].ID.String()
	}
	return out, next, nil
}

// RestoreResult says what a restore changed.
type RestoreResult struct {
	Version uint64 // the past version the storage now equals
	Deleted int    // keys removed
	Put     int    // keys set back
	SQL     int    // SQL statements that set tables back (sqlrestore.go)
}

// Restore sets ref's storage back to its state at a past version or time
// with one new event, whose cause says so. History keeps everything, so a
// restore is undone by restoring to the version before it. The activation
// is reset afterwards, so the class's in-memory fields reload from the
// restored storage. The restore is one turn, so its writes obey the turn's
// 1 MiB limit. Alarms are not restored.
func (rt *Runtime) Restore(ctx context.Context, ref Ref, at PastAt, cause Cause) (RestoreResult, error) {
	if _, err := rt.Class(ref.Class); err != nil {
		return RestoreResult{}, err
	}
	cause.Via, cause.Method = ViaSystem, "restore"
	out, err := rt.dispatch(ctx, ref, cause, "restore", nil, func(c *Ctx, _ any) (any, error) {
		at.SQL = true
		past, err := history.StateAt(c, rt.log, ref.Class, ref.ID, at)
		if err != nil {
			return nil, err
		}
		s := c.Storage()
		now, err := s.List(ListOptions{})
		if err != nil {
			return nil, err
		}
		res := RestoreResult{Version: past.Version}
		c.t.req.cause.Method = fmt.Sprintf("restore to version %d", past.Version)
		for _, kv := range now {
			if _, keep := past.Keys[kv.Key]; !keep {
				if _, err := s.Delete(kv.Key); err != nil {
					return nil, err
				}
				res.Deleted++
			}
		}
		current := make(map[string][]byte, len(now))
		for _, kv := range now {
			current[kv.Key] = kv.Value
		}
		keys := make([]string, 0, len(past.Keys))
		for k := range past.Keys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if v, ok := current[k]; !ok || !bytes.Equal(v, past.Keys[k]) {
				if err := s.Put(k, past.Keys[k]); err != nil {
					return nil, err
				}
				res.Put++
			}
		}
		if past.Tables != nil || past.Objects != nil || c.t.a.sql != nil || c.t.a.sqlPath() != "" && fileExists(c.t.a.sqlPath()) {
			if res.SQL, err = restoreTables(c.SQL(), past); err != nil {
				return nil, err
			}
		}
		// Reset after this turn commits: memory may hold what was undone.
		a := c.t.a
		a.broken = errReset
		a.closeWith(errBounced)
		return res, nil
	})
	if err != nil {
		return RestoreResult{}, err
	}
	return out.(RestoreResult), nil
}

// Tail calls fn for every event committed from now on, of class ("" for
// all classes), until ctx ends or fn fails: every event acknowledged after
// ready (if not nil) is called, as log.Tail.
func (rt *Runtime) Tail(ctx context.Context, class string, ready func(), fn func(Record) error) error {
	if class != "" {
		if _, err := rt.Class(class); err != nil {
			return err
		}
	}
	return rt.log.Tail(ctx, class, ready, fn)
}
