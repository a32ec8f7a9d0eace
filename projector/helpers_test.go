package projector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// quiet discards logs in tests that do not look at them.
var quiet = slog.New(slog.DiscardHandler)

func open(t testing.TB, cfg Config) *Projector {
	t.Helper()
	if cfg.Dir == "" && !cfg.InMemory {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	p, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func testID(name string) log.ID { return sha256.Sum256([]byte(name)) }

// obj names one object.
type obj struct {
	class string
	id    log.ID
}

func newObj(class, name string) obj { return obj{class, testID(class + "/" + name)} }

// stream builds the records a shard's stream would hold: per object,
// versions from 1 without gaps, each chained to the previous one's hash;
// one stream sequence across objects.
type stream struct {
	t    testing.TB
	seq  uint64
	last map[obj]log.Record
}

func newStream(t testing.TB) *stream { return &stream{t: t, last: map[obj]log.Record{}} }

// next returns the object's next event, with one turn per writes list.
func (s *stream) next(o obj, turns ...[]log.Write) log.Record {
	s.t.Helper()
	ts := make([]log.Turn, len(turns))
	for i, w := range turns {
		ts[i] = log.Turn{Cause: log.Cause{Via: log.ViaRPC, RequestID: fmt.Sprint("r", s.seq, ".", i)}, Writes: w}
	}
	return s.nextTurns(o, ts...)
}

// nextTurns returns the object's next event with these turns.
func (s *stream) nextTurns(o obj, turns ...log.Turn) log.Record {
	s.t.Helper()
	prev, ok := s.last[o]
	ev := &log.Event{Format: log.FormatVersion, Class: o.class, ID: o.id, Version: 1, Time: time.Unix(1700000000, 0).UnixNano() + int64(s.seq)}
	if ok {
		ev.Version = prev.Event.Version + 1
		ev.PrevHash = prev.Hash()
	} else {
		ev.Name = fmt.Sprintf("name-of-%x", o.id[:4])
	}
	ev.Turns = turns
	data, err := log.Encode(ev)
	if err != nil {
		s.t.Fatal(err)
	}
	s.seq++
	rec := log.Record{Seq: s.seq, Data: data, Event: ev}
	s.last[o] = rec
	return rec
}

func put(k, v string) log.Write { return log.Write{Op: log.OpPut, Key: k, Value: []byte(v)} }
func del(k string) log.Write    { return log.Write{Op: log.OpDelete, Key: k} }
func delAll() log.Write         { return log.Write{Op: log.OpDeleteAll} }
func setAlarm(name string, at int64) log.Write {
	return log.Write{Op: log.OpSetAlarm, Key: name, At: at}
}
func delAlarm(name string) log.Write { return log.Write{Op: log.OpDeleteAlarm, Key: name} }

// dump is the whole snapshot as text, for comparing two snapshots.
func dump(t testing.TB, p *Projector) string {
	t.Helper()
	var b bytes.Buffer
	err := p.Dump(func(k, v []byte) error {
		fmt.Fprintf(&b, "%q=%x\n", k, v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// state lists all of an object's keys.
func state(t testing.TB, p *Projector, o obj) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := p.List(o.class, o.id, ListOptions{}, func(k string, v []byte) bool {
		m[k] = string(v)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustApply(t testing.TB, p *Projector, recs ...log.Record) {
	t.Helper()
	if err := p.Apply(recs); err != nil {
		t.Fatal(err)
	}
}

// logSink is a slog.Handler that keeps what it is given.
type logSink struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (s *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, r.Clone())
	return nil
}
func (s *logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *logSink) WithGroup(string) slog.Handler      { return s }

// find returns the attributes of the first record at level with a message
// containing msg.
func (s *logSink) find(level slog.Level, msg string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if r.Level != level || !bytes.Contains([]byte(r.Message), []byte(msg)) {
			continue
		}
		attrs := map[string]any{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Any()
			return true
		})
		return attrs, true
	}
	return nil, false
}

// appliedLog records OnApplied calls.
type appliedLog struct {
	mu    sync.Mutex
	calls [][]Applied
}

func (a *appliedLog) add(b []Applied) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, append([]Applied(nil), b...))
}

func (a *appliedLog) all() []Applied {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Applied
	for _, c := range a.calls {
		out = append(out, c...)
	}
	return out
}

// randomRecords returns n records over objects objects of two classes:
// puts, overwrites, deletes, the odd delete-all, and alarms.
func randomRecords(t testing.TB, seed uint64, objects, n int) []log.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	objs := make([]obj, objects)
	for i := range objs {
		objs[i] = newObj([]string{"counter", "chat"}[i%2], fmt.Sprint("obj", i))
	}
	s := newStream(t)
	recs := make([]log.Record, 0, n)
	for range n {
		var turns [][]log.Write
		for range 1 + rng.IntN(3) {
			var ws []log.Write
			for range rng.IntN(6) {
				k := fmt.Sprint("k", rng.IntN(20))
				switch r := rng.IntN(100); {
				case r < 60:
					ws = append(ws, put(k, fmt.Sprint("v", rng.Uint32())))
				case r < 85:
					ws = append(ws, del(k))
				case r < 88:
					ws = append(ws, delAll())
				case r < 95:
					ws = append(ws, setAlarm(fmt.Sprint("al", rng.IntN(3)), rng.Int64()))
				default:
					ws = append(ws, delAlarm(fmt.Sprint("al", rng.IntN(3))))
				}
			}
			turns = append(turns, ws)
		}
		recs = append(recs, s.next(objs[rng.IntN(objects)], turns...))
	}
	return recs
}
