package jsclass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// Replay runs new code against the recorded turns of a class's objects,
// before it is deployed, and writes nothing. Each turn whose event holds a
// CodeRecord (every turn of a deployed class that wrote something) is run
// again from the state its event started from, with the clock and random
// seed it observed, and the input it was given; its writes and its answer
// are compared with what the event recorded. The state then advances by
// the recorded writes, so one difference does not cascade into the next
// turns. Each turn runs in a fresh instance (as if the activation had been
// evicted before it), so state the old code kept only in memory between
// turns is not reproduced. Turns whose input was too large to keep, and
// WebSocket connects, are skipped and counted.

// ReplayDiff is one turn whose new outcome differs from the recorded one.
type ReplayDiff struct {
	Object       string   `json:"object"`
	Version      uint64   `json:"version"` // the object's event
	Turn         int      `json:"turn"`    // index in the event
	Via          string   `json:"via"`
	Method       string   `json:"method"`
	ClassVersion uint64   `json:"class_version"` // the version that recorded it
	Lines        []string `json:"lines"`
}

// ReplayReport is what a replay found.
type ReplayReport struct {
	Objects int          `json:"objects"`
	Turns   int          `json:"turns"`
	Skipped int          `json:"skipped"`
	Diffs   []ReplayDiff `json:"diffs"`
}

// replayDiffsMax bounds the differences one replay reports.
const replayDiffsMax = 1000

// SetLister gives the registry the listing of a class's objects, for
// replays that sample them (the runtime exists after the registry).
func (r *Registry) SetLister(list func(class, namePrefix, cursor string, limit int) ([]objects.ObjectSummary, string, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.lister = list
}

// ReplayClass is the gateway's replay: objs by name, else sample objects
// of the class (default 20).
func (r *Registry) ReplayClass(ctx context.Context, class, filename string, source []byte, export string, objs []string, sample int) (any, error) {
	return r.Replay(ctx, class, filename, source, export, objs, sample)
}

// Replay compiles source and replays the recorded turns of objects (names)
// of class against it; with no names, up to sample objects (0: 20).
func (r *Registry) Replay(ctx context.Context, class, filename string, source []byte, export string, names []string, sample int) (*ReplayReport, error) {
	if r.cfg.Log == nil {
		return nil, errors.New("jsclass: replay needs Config.Log")
	}
	if _, ok := r.cfg.Classes.Latest(class); !ok {
		return nil, fmt.Errorf("%w: %q is not a deployed class", objects.ErrUnknownClass, class)
	}
	script, export, err := r.Check(class, filename, source, export)
	if err != nil {
		return nil, err
	}
	cc, err := r.compile(&log.ClassVersion{Class: class, Version: 1 << 62, Code: []byte(script), Export: export})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCompile, err)
	}
	type target struct {
		label string
		id    objects.ID
		name  string
	}
	var targets []target
	for _, n := range names {
		if err := objects.ValidateName(n); err != nil {
			return nil, err
		}
		targets = append(targets, target{n, objects.IDFromName(class, n), n})
	}
	if len(targets) == 0 {
		if sample <= 0 {
			sample = 20
		}
		r.mu.Lock()
		list := r.mu.lister
		r.mu.Unlock()
		if list == nil {
			return nil, fmt.Errorf("%w: name the objects to replay", objects.ErrBadInput)
		}
		objs, _, err := list(class, "", "", sample)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			label := o.Name
			if label == "" {
				label = o.ID.String()
			}
			targets = append(targets, target{label, o.ID, o.Name})
		}
	}
	rep := &ReplayReport{Diffs: []ReplayDiff{}}
	for _, t := range targets {
		rep.Objects++
		if err := r.replayObject(ctx, class, t.label, t.name, t.id, cc, rep); err != nil {
			return nil, fmt.Errorf("replay %s/%s: %w", class, t.label, err)
		}
	}
	return rep, nil
}

func (r *Registry) replayObject(ctx context.Context, class, label, name string, id objects.ID, cc *compiled, rep *ReplayReport) error {
	state := map[string][]byte{}
	var alarm *time.Time
	rs := &replaySQL{ctx: ctx}
	defer rs.close()
	// A turn that called other objects may span events: each call staged
	// the writes before it as a part whose record is Continued. The parts
	// are joined and the turn replayed from the state before the first
	// (the parts' SQL changes are held in a transaction until then).
	var parts []log.Turn
	var partState map[string][]byte
	var partAlarm *time.Time
	err := r.cfg.Log.Read(ctx, class, id, 0, func(rec log.Record) error {
		ev := rec.Event
		for i, t := range ev.Turns {
			code := t.Cause.Code
			joined := len(parts) > 0 && code != nil && sameTurn(parts[0].Cause.Code, code)
			if len(parts) > 0 && !joined {
				rep.Skipped++ // a turn whose last part was never recorded (it failed after a call)
				parts = nil
				if err := rs.release(true); err != nil {
					return err
				}
			}
			switch {
			case code != nil && code.Continued:
				if len(parts) == 0 {
					partState, partAlarm = maps.Clone(state), alarm
					rs.hold()
				}
				parts = append(parts, t)
			case code != nil:
				whole, from, fromAlarm, before := t, state, alarm, []log.Turn(nil)
				if joined {
					whole = log.Turn{Cause: t.Cause}
					for _, p := range append(parts, t) {
						whole.Writes = append(whole.Writes, p.Writes...)
						whole.Calls = append(whole.Calls, p.Calls...)
						whole.Sends = append(whole.Sends, p.Sends...)
						whole.SQL = append(whole.SQL, p.SQL...)
					}
					from, fromAlarm, before, parts = partState, partAlarm, parts, nil
					if err := rs.release(false); err != nil { // back to the SQL state before the first part
						return err
					}
				}
				lines, ran, err := r.replayTurn(class, name, id, cc, whole, from, fromAlarm, rs)
				if err != nil {
					return fmt.Errorf("v%d turn %d: %w", ev.Version, i, err)
				}
				if !ran {
					rep.Skipped++
				} else {
					rep.Turns++
					if len(lines) > 0 && len(rep.Diffs) < replayDiffsMax {
						rep.Diffs = append(rep.Diffs, ReplayDiff{Object: label, Version: ev.Version, Turn: i,
							Via: t.Cause.Via.String(), Method: t.Cause.Method, ClassVersion: code.ClassVersion, Lines: lines})
					}
				}
				for _, p := range before { // the parts' recorded changes, for good
					if err := rs.apply(p.SQL); err != nil {
						return fmt.Errorf("v%d: %w", ev.Version, err)
					}
				}
			}
			for _, w := range t.Writes { // the recorded history goes on
				switch w.Op {
				case log.OpPut:
					state[w.Key] = w.Value
				case log.OpDelete:
					delete(state, w.Key)
				case log.OpDeleteAll:
					clear(state)
				case log.OpSetAlarm:
					if w.Key == "" {
						at := time.Unix(0, w.At)
						alarm = &at
					}
				case log.OpDeleteAlarm:
					if w.Key == "" {
						alarm = nil
					}
				}
			}
			if err := rs.apply(t.SQL); err != nil {
				return fmt.Errorf("v%d: %w", ev.Version, err)
			}
		}
		return nil
	})
	if len(parts) > 0 {
		rep.Skipped++
	}
	return err
}

// sameTurn reports whether two records are parts of one turn (a turn's
// clock and seed are its own).
func sameTurn(a, b *log.CodeRecord) bool {
	return a != nil && b != nil && a.Time == b.Time && bytes.Equal(a.Seed, b.Seed) && a.ClassVersion == b.ClassVersion
}

// replayTurn runs one recorded turn against cc and returns the differences
// (ran is false for a turn replay cannot reproduce). An error is the
// replay's own (its SQL database failed), not the turn's.
func (r *Registry) replayTurn(class, name string, id objects.ID, cc *compiled, t log.Turn, state map[string][]byte, alarm *time.Time, rs *replaySQL) (lines []string, ran bool, err error) {
	code := t.Cause.Code
	if code.InputBytes > 0 {
		return nil, false, nil // the input was too large to keep
	}
	if err := rs.beginTurn(); err != nil {
		return nil, false, err
	}
	st := newReplayStore(state, alarm, rs)
	in := &instance{reg: r, class: class, name: name, id: id.String(), replay: true,
		replayCalls: t.Calls, replayAnswers: code.Calls, replaySQL: rs}
	var env turnEnv
	env.now = time.UnixMilli(code.Time)
	copy(env.seed[:], code.Seed)
	out, skip, runErr := in.replayRun(cc, st, env, t)
	in.end()
	got, err := rs.endTurn()
	if err != nil {
		return nil, false, err
	}
	if skip || in.replaySkip {
		return nil, false, nil
	}
	lines = in.replayLines
	if in.callN < len(code.Calls) {
		lines = append(lines, fmt.Sprintf("calls: recorded %d, new %d", len(code.Calls), in.callN))
	}
	if runErr != nil {
		return append(lines, "the new code failed: "+runErr.Error()), true, nil
	}
	if code.OutputBytes == 0 && (t.Cause.Via == log.ViaRPC || t.Cause.Via == log.ViaFetch) && !bytes.Equal(code.Output, out) {
		lines = append(lines, fmt.Sprintf("response: recorded %s, new %s", clip(code.Output), clip(out)))
	}
	lines = append(lines, diffWrites(t.Writes, st.root())...)
	lines = append(lines, rs.diff(t.SQL, got)...)
	return append(lines, diffSends(t.Sends, in.replaySends)...), true, nil
}

// replayRun runs the recorded turn's entry point with its input; skip is
// a turn replay does not reproduce (WebSocket connects and closes).
func (in *instance) replayRun(cc *compiled, st *replayStore, env turnEnv, t log.Turn) (out []byte, skip bool, err error) {
	code := t.Cause.Code
	if err = in.begin(cc, st, env); err != nil {
		return nil, false, err
	}
	switch t.Cause.Via {
	case log.ViaRPC:
		out, err = in.callMethod(t.Cause.Method, code.Input)
	case log.ViaFetch:
		var fi fetchInput
		if err = json.Unmarshal(code.Input, &fi); err == nil {
			if strings.EqualFold(fi.Header.Get("Upgrade"), "websocket") {
				return nil, true, nil
			}
			var resp *objects.Response
			if resp, err = in.runFetch(fi); err == nil {
				out = encodeFetchOutput(resp)
			}
		}
	case log.ViaAlarm:
		var info objects.AlarmInfo
		if err = json.Unmarshal(code.Input, &info); err == nil {
			err = in.runAlarm(info)
		}
	case log.ViaWebSocket:
		switch t.Cause.Method {
		case "connect", "close", "error":
			return nil, true, nil
		}
		ws := in.socketObject(0)
		err = in.socketMessage(ws, objects.Message{Data: code.Input})
	default:
		return nil, true, nil
	}
	return out, false, err
}

// diffSends compares the messages a turn sent with the new code's, in
// order.
func diffSends(recorded, got []log.Message) []string {
	show := func(m log.Message) string {
		s := fmt.Sprintf("%s/%s.%s(%s)", m.Class, m.ID.String()[:8], m.Method, clip(m.Body))
		if m.Reply != "" {
			s += " reply " + m.Reply
		}
		return s
	}
	same := func(r, g log.Message) bool {
		return r.Class == g.Class && r.ID == g.ID && r.Method == g.Method && r.Reply == g.Reply && bytes.Equal(r.Body, g.Body)
	}
	return diffInOrder("message", recorded, got, show, same)
}

// diffInOrder compares what a turn recorded with what the new code did,
// position by position: a line "<what> N: recorded …, new …" for each
// position that differs (same, or equal text when same is nil) or that
// only one side has.
func diffInOrder[T any](what string, recorded, got []T, show func(T) string, same func(r, g T) bool) []string {
	var lines []string
	for i := 0; i < max(len(recorded), len(got)); i++ {
		switch {
		case i >= len(got):
			lines = append(lines, fmt.Sprintf("%s %d: recorded %s, new none", what, i+1, show(recorded[i])))
		case i >= len(recorded):
			lines = append(lines, fmt.Sprintf("%s %d: recorded none, new %s", what, i+1, show(got[i])))
		default:
			r, g := show(recorded[i]), show(got[i])
			if same != nil && !same(recorded[i], got[i]) || same == nil && r != g {
				lines = append(lines, fmt.Sprintf("%s %d: recorded %s, new %s", what, i+1, r, g))
			}
		}
	}
	return lines
}

func clip(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…(%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// effect is what a turn's writes amount to.
type effect struct {
	cleared  bool
	keys     map[string]*[]byte // nil: deleted
	alarm    *int64             // set to (ns); with alarmSet
	alarmSet bool               // the default alarm was set or deleted
}

func recordedEffect(ws []log.Write) effect {
	e := effect{keys: map[string]*[]byte{}}
	for _, w := range ws {
		switch w.Op {
		case log.OpPut:
			v := w.Value
			e.keys[w.Key] = &v
		case log.OpDelete:
			e.keys[w.Key] = nil
		case log.OpDeleteAll:
			e.cleared = true
			clear(e.keys)
		case log.OpSetAlarm:
			if w.Key == "" {
				at := w.At
				e.alarm, e.alarmSet = &at, true
			}
		case log.OpDeleteAlarm:
			if w.Key == "" {
				e.alarm, e.alarmSet = nil, true
			}
		}
	}
	return e
}

func diffWrites(recorded []log.Write, got *replayStore) []string {
	want := recordedEffect(recorded)
	var lines []string
	if want.cleared != got.cleared {
		lines = append(lines, fmt.Sprintf("deleteAll: recorded %v, new %v", want.cleared, got.cleared))
	}
	keys := map[string]bool{}
	for k := range want.keys {
		keys[k] = true
	}
	for k := range got.writes {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	show := func(v *[]byte, ok bool) string {
		switch {
		case !ok:
			return "(no write)"
		case v == nil:
			return "(deleted)"
		}
		return clip(*v)
	}
	for _, k := range sorted {
		w, wok := want.keys[k]
		g, gok := got.writes[k]
		if wok != gok || (w == nil) != (g == nil) || w != nil && !bytes.Equal(*w, *g) {
			lines = append(lines, fmt.Sprintf("write %q: recorded %s, new %s", k, show(w, wok), show(g, gok)))
		}
	}
	wantAt, gotAt := "(unchanged)", "(unchanged)"
	if want.alarmSet {
		wantAt = "(deleted)"
		if want.alarm != nil {
			wantAt = time.Unix(0, *want.alarm).UTC().Format(time.RFC3339Nano)
		}
	}
	if got.alarmSet {
		gotAt = "(deleted)"
		if got.alarm != nil {
			gotAt = got.alarm.UTC().Format(time.RFC3339Nano)
		}
	}
	if wantAt != gotAt {
		lines = append(lines, fmt.Sprintf("alarm: recorded %s, new %s", wantAt, gotAt))
	}
	return lines
}

// replayStore is a scratch store over recorded state: writes stay in it.
type replayStore struct {
	parent   *replayStore
	base     map[string][]byte
	cleared  bool
	writes   map[string]*[]byte
	alarm    *time.Time
	alarmSet bool
	baseAt   *time.Time
	sql      *replaySQL // the replay's SQL state (its transactions' savepoints)
}

func newReplayStore(state map[string][]byte, alarm *time.Time, sql *replaySQL) *replayStore {
	return &replayStore{base: state, writes: map[string]*[]byte{}, baseAt: alarm, sql: sql}
}

func (s *replayStore) root() *replayStore { return s }

func (s *replayStore) Get(k string) ([]byte, bool, error) {
	if v, ok := s.writes[k]; ok {
		if v == nil {
			return nil, false, nil
		}
		return *v, true, nil
	}
	if s.cleared {
		return nil, false, nil
	}
	if s.parent != nil {
		return s.parent.Get(k)
	}
	v, ok := s.base[k]
	return v, ok, nil
}

func (s *replayStore) Put(k string, v []byte) error {
	if k == "" {
		return fmt.Errorf("%w: empty key", objects.ErrInvalidKey)
	}
	if len(v) > objects.ValueBytesMax {
		return fmt.Errorf("%w: value of %d bytes", objects.ErrTooLarge, len(v))
	}
	c := bytes.Clone(v)
	s.writes[k] = &c
	return nil
}

func (s *replayStore) Delete(k string) (bool, error) {
	_, ok, _ := s.Get(k)
	s.writes[k] = nil
	return ok, nil
}

func (s *replayStore) DeleteAll() error {
	s.cleared = true
	clear(s.writes)
	return nil
}

func (s *replayStore) all() map[string][]byte {
	out := map[string][]byte{}
	if !s.cleared {
		if s.parent != nil {
			out = s.parent.all()
		} else {
			for k, v := range s.base {
				out[k] = v
			}
		}
	}
	for k, v := range s.writes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}

func (s *replayStore) List(o objects.ListOptions) ([]objects.KV, error) {
	var out []objects.KV
	for k, v := range s.all() {
		if strings.HasPrefix(k, o.Prefix) && (o.Start == "" || k >= o.Start) && (o.End == "" || k < o.End) {
			out = append(out, objects.KV{Key: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if o.Reverse {
			return out[i].Key > out[j].Key
		}
		return out[i].Key < out[j].Key
	})
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[:o.Limit]
	}
	return out, nil
}

func (s *replayStore) GetAlarm() (time.Time, bool, error) {
	for p := s; p != nil; p = p.parent {
		if p.alarmSet {
			if p.alarm == nil {
				return time.Time{}, false, nil
			}
			return *p.alarm, true, nil
		}
		if p.parent == nil && p.baseAt != nil {
			return *p.baseAt, true, nil
		}
	}
	return time.Time{}, false, nil
}

func (s *replayStore) SetAlarm(at time.Time) error {
	s.alarm, s.alarmSet = &at, true
	return nil
}

func (s *replayStore) DeleteAlarm() (bool, error) {
	_, had, _ := s.GetAlarm()
	s.alarm, s.alarmSet = nil, true
	return had, nil
}

func (s *replayStore) Rollback(tx store) error {
	return s.sql.txEnd(tx.(*replayStore), false)
}

func (s *replayStore) Begin() (store, error) {
	c := &replayStore{parent: s, writes: map[string]*[]byte{}, sql: s.sql}
	if err := s.sql.txBegin(s, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *replayStore) Commit(tx store) error {
	c := tx.(*replayStore)
	if err := s.sql.txEnd(c, true); err != nil {
		return err
	}
	if c.cleared {
		s.cleared = true
		clear(s.writes)
	}
	for k, v := range c.writes {
		s.writes[k] = v
	}
	if c.alarmSet {
		s.alarm, s.alarmSet = c.alarm, true
	}
	return nil
}
