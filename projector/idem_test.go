package projector

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/strata-objects/strata/log"
)

func keyedTurn(key string, body string, writes ...log.Write) log.Turn {
	return log.Turn{
		Cause:  log.Cause{Via: log.ViaRPC, Method: "increment", IdemKey: key, IdemHash: bytes.Repeat([]byte{1}, 32), Outcome: &log.Outcome{Status: 200, Body: []byte(body)}},
		Writes: writes,
	}
}

// TestIdemIndex: a keyed turn's record is in the snapshot with its event
// (a keyed turn with no writes too), and unkeyed turns leave none.
func TestIdemIndex(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	o, other := newObj("counter", "a"), newObj("counter", "b")
	r1 := s.nextTurns(o, keyedTurn("k1", `{"n":1}`, put("n", "1")), log.Turn{Cause: log.Cause{Via: log.ViaRPC}, Writes: []log.Write{put("m", "1")}})
	r2 := s.nextTurns(o, keyedTurn("k2", `{"n":1}`))
	mustApply(t, p, r1, r2)
	for _, c := range []struct {
		o    obj
		key  string
		want *log.Turn
		at   int64
	}{
		{o, "k1", &r1.Event.Turns[0], r1.Event.Time},
		{o, "k2", &r2.Event.Turns[0], r2.Event.Time},
		{o, "k3", nil, 0},
		{other, "k1", nil, 0},
	} {
		rec, ok, err := p.Idem(c.o.class, c.o.id, c.key)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (c.want != nil) {
			t.Fatalf("Idem(%q) found %v, want %v", c.key, ok, c.want != nil)
		}
		if ok && (rec.Time != c.at || !reflect.DeepEqual(rec.Cause.Outcome, c.want.Cause.Outcome) || !bytes.Equal(rec.Cause.IdemHash, c.want.Cause.IdemHash)) {
			t.Fatalf("Idem(%q) = %+v, want the turn's cause %+v at %d", c.key, rec, c.want.Cause, c.at)
		}
	}
}

// TestIdemExpire: records go oldest first, at most max per call, and a
// record made again under the same key after its first one expired stays.
func TestIdemExpire(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	o := newObj("counter", "a")
	var recs []log.Record
	for _, k := range []string{"a", "b", "c", "a"} { // "a" again: its first record is older
		recs = append(recs, s.nextTurns(o, keyedTurn(k, "{}", put("n", k))))
	}
	mustApply(t, p, recs...)
	has := func(k string) int64 {
		rec, ok, err := p.Idem(o.class, o.id, k)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return 0
		}
		return rec.Time
	}
	if n, err := p.ExpireIdem(recs[2].Event.Time, 1); err != nil || n != 1 {
		t.Fatalf("ExpireIdem(max 1) = %d, %v; want 1", n, err)
	}
	if has("a") != recs[3].Event.Time || has("b") == 0 {
		t.Fatal("the first expiry dropped the newer record of a, or b before its turn")
	}
	if n, err := p.ExpireIdem(recs[2].Event.Time, 100); err != nil || n != 1 {
		t.Fatalf("ExpireIdem = %d, %v; want 1 (b only)", n, err)
	}
	if has("b") != 0 || has("c") == 0 || has("a") == 0 {
		t.Fatalf("after expiring before c: b=%d c=%d a=%d", has("b"), has("c"), has("a"))
	}
	if n, err := p.ExpireIdem(recs[3].Event.Time+1, 100); err != nil || n != 2 {
		t.Fatalf("ExpireIdem(all) = %d, %v; want 2", n, err)
	}
	if has("a") != 0 || has("c") != 0 {
		t.Fatal("records left after everything expired")
	}
	if n, err := p.ExpireIdem(recs[3].Event.Time+1, 100); err != nil || n != 0 {
		t.Fatalf("ExpireIdem on nothing = %d, %v", n, err)
	}
	if got := state(t, p, o); got["n"] != "a" {
		t.Fatalf("expiry touched state: %v", got)
	}
}

// TestInstallKeyed: records read from checkpoints are indexed (and expire)
// like those of applied events, without touching the object's meta.
func TestInstallKeyed(t *testing.T) {
	p := open(t, Config{InMemory: true})
	o := newObj("counter", "a")
	recs := []log.KeyedTurn{{Time: 10, Cause: keyedTurn("k1", "{}").Cause}, {Time: 20, Cause: keyedTurn("k2", "{}").Cause}}
	if err := p.InstallKeyed(o.class, o.id, recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		got, ok, err := p.Idem(o.class, o.id, r.Cause.IdemKey)
		if err != nil || !ok || got.Time != r.Time {
			t.Fatalf("Idem(%s) = %+v, %v, %v", r.Cause.IdemKey, got, ok, err)
		}
	}
	if m, err := p.Meta(o.class, o.id); err != nil || m.Version != 0 {
		t.Fatalf("meta after InstallKeyed: %+v, %v", m, err)
	}
	if n, err := p.ExpireIdem(15, 10); err != nil || n != 1 {
		t.Fatalf("ExpireIdem = %d, %v; want 1", n, err)
	}
}
