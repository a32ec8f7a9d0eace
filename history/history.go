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
	"maps"
	"sort"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/sqlstore"
)

// Sentinel errors for bad requests; the gateway maps them to 400.
var (
	ErrBadRange = errors.New("bad history range")
	// ErrRetained: the events asked for were dropped by the class's
	// retention; history starts at a checkpoint. It wraps ErrBadRange.
	ErrRetained = fmt.Errorf("%w: before the retained history", ErrBadRange)
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
	Cause   log.Cause     `json:"-"`
	Calls   []log.Call    `json:"-"` // calls the turn made to other objects
	Sends   []log.Message `json:"-"` // durable messages the turn sent
	Settles []log.Settle  `json:"-"` // the object's earlier messages the turn settled
	Changes []Change      `json:"changes"`
	SQL     []SQLChange   `json:"sql,omitempty"` // row and schema changes (sql.go)
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
	Alarms  map[string]int64 // alarm name -> due time, Unix ns
	Version uint64
	Time    int64    // Unix ns of the last event applied
	Seq     uint64   // stream sequence of the last event applied
	Hash    log.Hash // chain hash of the last event applied
	Name    string   // the object's name, from its first event
	// Keyed holds the records of keyed turns applied since the replay's
	// start (its checkpoint), by key, the newest of a key: what the next
	// checkpoint carries, since a node that loads from it skips their
	// events.
	Keyed map[string]log.KeyedTurn
	// Received holds, per sender, the record of the last turn that
	// applied one of its durable messages (objects/messages.go), whenever
	// it ran: checkpoints carry them all with their keyed records, so a
	// node that loads from one still refuses a redelivery.
	Received map[string]log.KeyedTurn
	// Outbox holds the object's own messages pending or dead (its Sends
	// minus its Settles), which checkpoints carry.
	Outbox map[outboxPos]log.OutboxMessage
	next   uint64 // the version Replay stopped before (0: the log's end)
	// sql is the object's SQL database as replayed, in memory (sql.go);
	// noSQL when the replay started from a checkpoint written before
	// checkpoints carried SQL state. sqlInit is the checkpoint's SQL state
	// until it is applied to sql (installSQL).
	sql     *sqlstore.DB
	noSQL   bool
	sqlInit []log.SQLChange
	sqlRows []log.SQLChange // row changes of the event being applied, not yet in sql
	quiet   bool            // Apply's entries are not wanted: no SQL descriptions, one SQL transaction (sqlTx)
	sqlTx   bool
}

// NewReplayer starts from an object with no events.
func NewReplayer() *Replayer {
	return &Replayer{State: map[string][]byte{}, Alarms: map[string]int64{}, Keyed: map[string]log.KeyedTurn{}, Received: map[string]log.KeyedTurn{}}
}

type outboxPos struct {
	version     uint64
	turn, index int
}

// noteOutbox applies one turn's sends and settles to r.Outbox.
func (r *Replayer) noteOutbox(version uint64, ti int, t log.Turn) {
	if len(t.Sends) == 0 && len(t.Settles) == 0 {
		return
	}
	if r.Outbox == nil {
		r.Outbox = map[outboxPos]log.OutboxMessage{}
	}
	for i, m := range t.Sends {
		r.Outbox[outboxPos{version, ti, i}] = log.OutboxMessage{Version: version, Turn: ti, Index: i, Message: m}
	}
	for _, s := range t.Settles {
		p := outboxPos{s.Version, s.Turn, s.Index}
		m, ok := r.Outbox[p]
		switch {
		case !ok:
		case s.Retry && m.Dead != "":
			m.Dead = ""
			r.Outbox[p] = m
		case s.Dead != "" && m.Dead == "":
			m.Dead = s.Dead
			r.Outbox[p] = m
		case !s.Retry && s.Dead == "" && m.Dead == "":
			delete(r.Outbox, p)
		}
	}
}

// noteReceived keeps k if it is a message's turn later than the one kept
// for its sender.
func (r *Replayer) noteReceived(k log.KeyedTurn) {
	c := k.Cause.Caller
	if c == nil || c.Kind != log.CallerMessage {
		return
	}
	s := c.Class + "\x00" + string(c.ID[:])
	if old, ok := r.Received[s]; ok && !log.CallerBefore(old.Cause.Caller, c) {
		return
	}
	r.Received[s] = k
}

// FromCheckpoint starts from a checkpoint's state (which it takes over),
// its SQL state included when it carries one (ck.HasSQL, ck.SQL as
// log.LoadSQL read it). The checkpoint's keyed records stay with it:
// Keyed starts empty, but Received keeps the records of messages applied.
func FromCheckpoint(ck *log.Checkpoint) *Replayer {
	r := &Replayer{State: ck.Keys, Alarms: ck.Alarms, Version: ck.Version, Time: ck.Time, Seq: ck.Seq, Hash: ck.Hash, Name: ck.Name}
	if r.State == nil {
		r.State = map[string][]byte{}
	}
	if r.Alarms == nil {
		r.Alarms = map[string]int64{}
	}
	r.Keyed, r.Received = map[string]log.KeyedTurn{}, map[string]log.KeyedTurn{}
	for _, k := range ck.Keyed {
		r.noteReceived(k)
	}
	r.Outbox = make(map[outboxPos]log.OutboxMessage, len(ck.Outbox))
	for _, m := range ck.Outbox {
		r.Outbox[outboxPos{m.Version, m.Turn, m.Index}] = m
	}
	r.noSQL = !ck.HasSQL
	r.sqlInit = ck.SQL
	return r
}

// loadCheckpoint reads a checkpoint with its SQL state and starts a
// replayer from it.
func loadCheckpoint(ctx context.Context, l *log.Log, info log.CheckpointInfo) (*Replayer, error) {
	ck, err := l.LoadCheckpoint(ctx, info)
	if err != nil {
		return nil, err
	}
	if info.HasSQL {
		if ck.SQL, err = l.LoadSQL(ctx, info); err != nil {
			return nil, err
		}
	}
	r := FromCheckpoint(ck)
	if err := r.installSQL(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Checkpoint is the replayer's state as a checkpoint of class and id,
// with the records of the keyed turns it applied whose time is after
// keyedSince (Unix ns), by key, and its SQL state unless the replay
// started from a checkpoint without one.
func (r *Replayer) Checkpoint(ctx context.Context, class string, id log.ID, keyedSince int64) (*log.Checkpoint, error) {
	ck := &log.Checkpoint{Class: class, ID: id, Name: r.Name, Version: r.Version, Seq: r.Seq, Time: r.Time,
		Hash: r.Hash, Keys: maps.Clone(r.State), Alarms: maps.Clone(r.Alarms), HasSQL: !r.noSQL}
	if err := r.installSQL(ctx); err != nil {
		return nil, err
	}
	if r.sql != nil && !r.noSQL {
		var err error
		if ck.SQL, err = r.sql.Snapshot(ctx); err != nil {
			return nil, fmt.Errorf("checkpoint %s/%s v%d: %w", class, id, r.Version, err)
		}
	}
	for _, k := range r.Keyed {
		if k.Time > keyedSince {
			ck.Keyed = append(ck.Keyed, k)
		}
	}
	for _, k := range r.Received {
		if cur, ok := r.Keyed[k.Cause.IdemKey]; !ok || cur.Time <= keyedSince {
			ck.Keyed = append(ck.Keyed, k)
		}
	}
	sort.Slice(ck.Keyed, func(i, j int) bool { return ck.Keyed[i].Cause.IdemKey < ck.Keyed[j].Cause.IdemKey })
	for _, m := range r.Outbox {
		ck.Outbox = append(ck.Outbox, m)
	}
	sort.Slice(ck.Outbox, func(i, j int) bool {
		a, b := ck.Outbox[i], ck.Outbox[j]
		return log.CallerBefore(&log.Caller{Version: a.Version, Turn: a.Turn, Index: a.Index}, &log.Caller{Version: b.Version, Turn: b.Turn, Index: b.Index})
	})
	return ck, nil
}

// Apply applies one event and returns its entry with diffs.
func (r *Replayer) Apply(rec log.Record) (Entry, error) {
	ev := rec.Event
	if err := log.Follows(r.Version, r.Hash, rec); err != nil {
		return Entry{}, err
	}
	e := Entry{Version: ev.Version, Seq: rec.Seq, Time: time.Unix(0, ev.Time).UTC(), Name: ev.Name}
	for ti, t := range ev.Turns {
		r.noteOutbox(ev.Version, ti, t)
		turn := Turn{Cause: t.Cause, Calls: t.Calls, Sends: t.Sends, Settles: t.Settles, Changes: []Change{}}
		if t.Cause.IdemKey != "" && t.Cause.Outcome != nil {
			if r.Keyed == nil {
				r.Keyed = map[string]log.KeyedTurn{}
			}
			r.Keyed[t.Cause.IdemKey] = log.KeyedTurn{Time: ev.Time, Cause: t.Cause}
			if r.Received == nil {
				r.Received = map[string]log.KeyedTurn{}
			}
			r.noteReceived(log.KeyedTurn{Time: ev.Time, Cause: t.Cause})
		}
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
				r.Alarms[w.Key] = w.At
			case log.OpDeleteAlarm:
				delete(r.Alarms, w.Key)
			}
			if w.Op != log.OpDeleteAll {
				turn.Changes = append(turn.Changes, c)
			}
		}
		sqlChanges, err := r.applySQL(t.SQL)
		if err != nil {
			return Entry{}, fmt.Errorf("replay %s v%d SQL: %w", ev.ID, ev.Version, err)
		}
		turn.SQL = sqlChanges
		e.Turns = append(e.Turns, turn)
	}
	// A quiet replay (a checkpoint's) keeps row changes across events, so
	// that a counter's whole interval folds into one statement; endQuiet
	// and a schema change apply them, and so does a full buffer.
	if !r.quiet || len(r.sqlRows) >= sqlRowsQuietMax {
		if err := r.flushSQL(context.Background()); err != nil {
			return Entry{}, fmt.Errorf("replay %s v%d SQL: %w", ev.ID, ev.Version, err)
		}
	}
	r.Version, r.Time, r.Seq, r.Hash = ev.Version, ev.Time, rec.Seq, rec.Hash()
	if r.Name == "" {
		r.Name = ev.Name
	}
	return e, nil
}

// errStop ends a read early; it never leaves this package.
var errStop = errors.New("stop")

// Replay folds the object's events into a replayer, starting from the
// newest checkpoint that start accepts (nil: from the first event), up
// to the event before the first one until accepts (nil: to the end), and
// calls fn (if not nil) after each event applied with its entry; fn
// returns errStop to end. When the log has dropped events (a retaining class), replay
// rebases on the checkpoint the log starts after; if the events wanted
// are gone, it returns ErrRetained. It returns the replayer.
func Replay(ctx context.Context, l *log.Log, class string, id log.ID, start func(log.CheckpointInfo) bool, until func(*log.Event) bool, fn func(Entry) error) (*Replayer, error) {
	rep := NewReplayer()
	if start != nil {
		info, err := l.CheckpointBefore(ctx, class, id, start)
		switch {
		case err == nil:
			if rep, err = loadCheckpoint(ctx, l, info); err != nil {
				return nil, err
			}
		case !errors.Is(err, log.ErrNotFound):
			return nil, err
		}
	}
	rep.quiet = fn == nil
	err := l.Read(ctx, class, id, rep.Seq+1, func(rec log.Record) error {
		// A replayer with some state may stop before a gap; one with none
		// must learn why the log starts later.
		if until != nil && until(rec.Event) && rep.Version > 0 {
			rep.next = rec.Event.Version
			return errStop
		}
		if v := rec.Event.Version; v > rep.Version+1 {
			// The events between were dropped: rebase on the checkpoint
			// the retained log starts from, if it is at or after this point.
			info, err := l.CheckpointBefore(ctx, class, id, func(i log.CheckpointInfo) bool { return i.Version <= v })
			if err != nil || info.Version+1 < v || info.Version < rep.Version {
				return fmt.Errorf("%w: events %d to %d are not in the log (the retained history starts at version %d)", ErrRetained, rep.Version+1, v-1, v)
			}
			from, err := loadCheckpoint(ctx, l, info)
			if err != nil {
				return err
			}
			rep.Close()
			rep = from
			rep.quiet = fn == nil
			if v <= rep.Version {
				return nil // the checkpoint's own event, kept so the log's end survives
			}
		}
		if until != nil && until(rec.Event) {
			rep.next = rec.Event.Version
			return errStop
		}
		e, err := rep.Apply(rec)
		if err != nil {
			return err
		}
		if fn != nil {
			return fn(e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		rep.Close()
		return nil, err
	}
	if err := rep.endQuiet(ctx); err != nil {
		rep.Close()
		return nil, err
	}
	return rep, nil
}

// Range selects events: versions From..To inclusive (0: unbounded), at most
// Limit of them (0: all).
type Range struct {
	From, To uint64
	Limit    int
}

// Events calls fn for each event of the object in r, in order, with diffs.
// Diffs need the state before each event, so replay starts from the newest
// checkpoint before From and events between it and From are replayed but
// not shown. For a class whose old events were dropped, history starts
// after the checkpoint the retained log begins with.
func Events(ctx context.Context, l *log.Log, class string, id log.ID, r Range, fn func(Entry) error) error {
	if r.Limit < 0 || r.To != 0 && r.From > r.To {
		return fmt.Errorf("%w: from %d, to %d, limit %d", ErrBadRange, r.From, r.To, r.Limit)
	}
	shown := 0
	until := func(ev *log.Event) bool { return r.To != 0 && ev.Version > r.To }
	rep, err := Replay(ctx, l, class, id, func(i log.CheckpointInfo) bool { return i.Version < r.From }, until, func(e Entry) error {
		if e.Version < r.From {
			return nil
		}
		if r.Limit > 0 && shown >= r.Limit {
			return errStop
		}
		shown++
		return fn(e)
	})
	if rep != nil {
		rep.Close()
	}
	if errors.Is(err, ErrRetained) && r.From == 0 {
		return nil // nothing after the checkpoint yet
	}
	return err
}

// At selects a past state: the state after Version, or else the state as
// of Time (after the last event at or before it).
type At struct {
	Version uint64
	Time    time.Time
	// SQL asks for the SQL tables too: replay starts from a checkpoint
	// that carries SQL state (or the object's first event).
	SQL bool
}

// State is an object's storage as of a past moment.
type State struct {
	Version uint64            // the last event included
	Time    time.Time         // that event's time
	Keys    map[string][]byte // storage keys and values
	Tables  []sqlstore.Table  // SQL tables, if At.SQL (and the object has any)
	Objects []sqlstore.Object // SQL indexes and views, with Tables
}

// StateAt replays the object up to at, from the newest checkpoint at or
// before it. A version beyond the object's last, a time before its first
// event, or a moment before a retaining class's retained history, is
// ErrBadRange.
func StateAt(ctx context.Context, l *log.Log, class string, id log.ID, at At) (State, error) {
	past, err := replayTo(ctx, l, class, id, at)
	if err != nil {
		return State{}, err
	}
	defer past.Close()
	st := State{Version: past.Version, Time: time.Unix(0, past.Time).UTC(), Keys: past.State}
	if db := past.SQL(); db != nil {
		if st.Tables, err = db.Dump(ctx); err != nil {
			return State{}, err
		}
		if st.Objects, err = db.Objects(ctx); err != nil {
			return State{}, err
		}
	}
	return st, nil
}

// QueryAt runs a read-only SQL query against the object's database as of
// at, replayed in memory. It returns the version queried.
func QueryAt(ctx context.Context, l *log.Log, class string, id log.ID, at At, q string, args ...any) (*sqlstore.Result, uint64, error) {
	at.SQL = true
	past, err := replayTo(ctx, l, class, id, at)
	if err != nil {
		return nil, 0, err
	}
	defer past.Close()
	db := past.SQL()
	if db == nil {
		// No SQL yet at that version: an empty database answers.
		if db, err = sqlstore.Open(ctx, "", sqlstore.Config{}); err != nil {
			return nil, 0, err
		}
		defer db.Close()
	}
	res, err := db.QueryReadOnly(ctx, q, args...)
	return res, past.Version, err
}

// replayTo replays the object up to at; the caller closes the replayer.
func replayTo(ctx context.Context, l *log.Log, class string, id log.ID, at At) (*Replayer, error) {
	before := func(i log.CheckpointInfo) bool { return i.Version <= at.Version }
	if at.Version == 0 {
		before = func(i log.CheckpointInfo) bool { return i.Time <= at.Time.UnixNano() }
	}
	until := func(ev *log.Event) bool { return ev.Version > at.Version }
	if at.Version == 0 {
		until = func(ev *log.Event) bool { return ev.Time > at.Time.UnixNano() }
	}
	if at.SQL {
		keep := before
		before = func(i log.CheckpointInfo) bool { return i.HasSQL && keep(i) }
	}
	past, err := Replay(ctx, l, class, id, before, until, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Replayer, error) {
		past.Close()
		return nil, err
	}
	switch {
	case at.Version != 0 && past.Version > at.Version || at.Version == 0 && past.Time > at.Time.UnixNano():
		return fail(fmt.Errorf("%w: it starts at version %d (%s)", ErrRetained, past.Version, time.Unix(0, past.Time).UTC().Format(time.RFC3339Nano)))
	case at.Version == 0 && past.next > past.Version+1:
		return fail(fmt.Errorf("%w: versions %d to %d were dropped (the retained history starts at version %d)", ErrRetained, past.Version+1, past.next-1, past.next))
	case at.Version != 0 && past.Version < at.Version && past.next > past.Version+1:
		return fail(fmt.Errorf("%w: versions %d to %d were dropped (the retained history starts at version %d)", ErrRetained, past.Version+1, past.next-1, past.next))
	case at.Version != 0 && past.Version < at.Version:
		return fail(fmt.Errorf("%w: version %d, the object's last is %d", ErrBadRange, at.Version, past.Version))
	case at.Version == 0 && past.Version == 0:
		return fail(fmt.Errorf("%w: %s is before the object's first event", ErrBadRange, at.Time.UTC().Format(time.RFC3339Nano)))
	}
	return past, nil
}

// Report is the result of verifying an object's hash chain.
type Report struct {
	Events uint64 `json:"events"`
	OK     bool   `json:"ok"`
	// From is the first version verified: 1, or for a class whose old
	// events were dropped, the version of the checkpoint the retained log
	// starts from, whose chain hash anchors the rest.
	From uint64 `json:"from_version,omitempty"`
	// Checkpoints is how many checkpoints were checked against the chain.
	Checkpoints int `json:"checkpoints,omitempty"`
	// BrokenAt is the stream sequence of the first event that does not
	// link to the one before it (0 when OK), and Reason says how.
	BrokenAt uint64   `json:"broken_at,omitempty"`
	Version  uint64   `json:"version,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Head     log.Hash `json:"-"`
}

// Verify recomputes the object's hash chain from its stored bytes and
// reports the first broken link: an event whose PrevHash is not the chain
// hash of the event before it, or whose version does not follow, or a
// checkpoint whose chain hash is not the log's at its version. When a
// retaining class's log starts after a checkpoint, the chain is verified
// from that checkpoint's hash, and From says so.
func Verify(ctx context.Context, l *log.Log, class string, id log.ID) (Report, error) {
	var rep Report
	ckpts := map[uint64]log.Hash{}
	err := l.Checkpoints(ctx, class, id, func(i log.CheckpointInfo) error {
		ckpts[i.Version] = i.Hash
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	var prev log.Hash
	var version uint64
	errBroken := errors.New("broken")
	err = l.Read(ctx, class, id, 1, func(rec log.Record) error {
		ev := rec.Event
		if version == 0 && ev.Version > 1 {
			// Dropped by retention: anchor on the checkpoint at this
			// event (or the one before it).
			if h, ok := ckpts[ev.Version]; ok {
				if h != rec.Hash() {
					rep.Reason = fmt.Sprintf("the retained log starts at version %d with chain hash %s, its checkpoint says %s", ev.Version, rec.Hash(), h)
					rep.BrokenAt, rep.Version = rec.Seq, ev.Version
					return errBroken
				}
				prev, version, rep.From = h, ev.Version, ev.Version
				rep.Checkpoints++
				rep.Events++
				return nil
			}
			if h, ok := ckpts[ev.Version-1]; ok {
				prev, version, rep.From = h, ev.Version-1, ev.Version-1
			}
		}
		switch {
		case ev.Version != version+1:
			rep.Reason = fmt.Sprintf("version %d follows version %d", ev.Version, version)
		case !bytes.Equal(ev.PrevHash[:], prev[:]):
			rep.Reason = fmt.Sprintf("previous hash %s, the chain says %s", ev.PrevHash, prev)
		}
		if h, ok := ckpts[ev.Version]; ok && rep.Reason == "" {
			if h != rec.Hash() {
				rep.Reason = fmt.Sprintf("the checkpoint at version %d has chain hash %s, the log %s", ev.Version, h, rec.Hash())
			}
			rep.Checkpoints++
		}
		if rep.Reason != "" {
			rep.BrokenAt, rep.Version = rec.Seq, ev.Version
			return errBroken
		}
		prev, version = rec.Hash(), ev.Version
		if rep.From == 0 {
			rep.From = ev.Version
		}
		rep.Events++
		return nil
	})
	if err != nil && !errors.Is(err, errBroken) {
		if ce, ok := log.AsCorrupt(err); ok {
			// Bytes that do not even decode are a broken link too.
			rep.Reason, rep.BrokenAt = ce.Error(), ce.Seq
			return rep, nil
		}
		return Report{}, err
	}
	rep.OK, rep.Head = rep.Reason == "", prev
	return rep, nil
}

// Follow calls fn with each event of the object after version after, with
// diffs, including events appended while it runs, until ctx ends or fn
// fails.
func Follow(ctx context.Context, l *log.Log, class string, id log.ID, after uint64, fn func(Entry) error) error {
	rep, err := Replay(ctx, l, class, id, func(i log.CheckpointInfo) bool { return i.Version <= after },
		func(ev *log.Event) bool { return ev.Version > after }, nil)
	if err != nil {
		return err
	}
	if rep.Version < after {
		return fmt.Errorf("%w: version %d, the object's last is %d", ErrBadRange, after, rep.Version)
	}
	return l.Follow(ctx, class, id, rep.Seq+1, func(rec log.Record) error {
		e, err := rep.Apply(rec)
		if err != nil {
			return err
		}
		return fn(e)
	})
}
