package log

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStreamsConfigured(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	if l.Shards() != DefaultShards {
		t.Fatalf("a new log has %d shards, want %d", l.Shards(), DefaultShards)
	}
	for n := range l.Shards() {
		s, err := l.js.Stream(ctx, LogStream(n))
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if c.Subjects[0] != "strata."+strconv.Itoa(n)+".obj.>" || c.Storage != jetstream.FileStorage || !c.AllowDirect || !c.AllowAtomicPublish ||
			!c.DenyDelete || !c.DenyPurge || c.AllowRollup || c.MaxAge != 0 || c.MaxMsgs != -1 || c.MaxBytes != -1 || c.MaxMsgsPerSubject != -1 ||
			c.Duplicates != 2*time.Minute || c.Metadata["strata.shards"] != strconv.Itoa(DefaultShards) || c.Metadata["strata.format"] != "1" {
			t.Fatalf("log stream %d: %+v", n, c)
		}
		ts, err := l.js.Stream(ctx, TimerStream(n))
		if err != nil {
			t.Fatal(err)
		}
		c = ts.CachedInfo().Config
		if len(c.Subjects) != 3 || c.Subjects[0] != "strata."+strconv.Itoa(n)+".sched.>" || c.Subjects[1] != "strata."+strconv.Itoa(n)+".fire.>" || c.Subjects[2] != "strata."+strconv.Itoa(n)+".dead.>" ||
			!c.AllowMsgSchedules || !c.AllowRollup || !c.AllowDirect || !c.AllowAtomicPublish || c.MaxAge != 0 || c.MaxMsgs != -1 || c.MaxBytes != -1 {
			t.Fatalf("timer stream %d: %+v", n, c)
		}
	}
	if _, err := l.js.Stream(ctx, LogStream(DefaultShards)); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a stream past the last shard: %v", err)
	}
}

func TestShardsRecorded(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	open := func(shards int) (*Log, error) {
		return Open(ctx, Config{Server: srv, Shards: shards, Logger: quiet})
	}
	l, err := open(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, shards := range []int{0, 3} {
		l, err := open(shards)
		if err != nil || l.Shards() != 3 {
			t.Fatalf("reopen with %d shards: %v shards, %v; want the recorded 3", shards, l.Shards(), err)
		}
		l.Close(ctx)
	}
	if l, err := open(5); err == nil || !strings.Contains(err.Error(), "never changes") {
		if l != nil {
			l.Close(ctx)
		}
		t.Fatalf("reopen with 5 shards: %v, want an error", err)
	}
	if _, err := open(-1); err == nil {
		t.Fatal("a negative shard count was accepted")
	}
}

func TestScanShard(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 3})
	ctx := context.Background()
	const objects = 30
	want := make(map[int]int) // events per shard
	for i := range objects {
		r, err := l.Append(ctx, testEvent(objID(i), 1, "a"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, testEvent(objID(i), 2, "b"), r.Seq); err != nil {
			t.Fatal(err)
		}
		want[l.ShardOf(objID(i))] += 2
	}
	if len(want) != 3 {
		t.Fatalf("objects fell on %d shards, want 3", len(want))
	}
	for shard := range l.Shards() {
		var recs []Record
		if err := l.Scan(ctx, shard, 0, func(r Record) error { recs = append(recs, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(recs) != want[shard] {
			t.Fatalf("shard %d: scanned %d events, want %d", shard, len(recs), want[shard])
		}
		for i, r := range recs {
			if l.ShardOf(r.Event.ID) != shard || i > 0 && r.Seq <= recs[i-1].Seq {
				t.Fatalf("shard %d event %d: seq %d of object on shard %d", shard, i, r.Seq, l.ShardOf(r.Event.ID))
			}
		}
		last, err := l.LastSeq(ctx, shard)
		if err != nil || last != recs[len(recs)-1].Seq {
			t.Fatalf("shard %d: LastSeq %d (%v), last scanned %d", shard, last, err, recs[len(recs)-1].Seq)
		}
		mid := recs[len(recs)/2].Seq
		n := 0
		if err := l.Scan(ctx, shard, mid, func(r Record) error { n++; return nil }); err != nil || n != len(recs)-len(recs)/2 {
			t.Fatalf("shard %d: scan from %d found %d (%v), want %d", shard, mid, n, err, len(recs)-len(recs)/2)
		}
	}
	if err := l.Scan(ctx, 3, 0, func(Record) error { return nil }); err == nil {
		t.Fatal("scan of a shard past P succeeded")
	}
}

func TestTooLarge(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	ctx := context.Background()
	sized := func(id ID, n int) *Event {
		e := testEvent(id, 1, "")
		e.Turns[0].Writes[0].Value = bytes.Repeat([]byte{7}, n)
		return e
	}
	b, _ := Encode(sized(objID(1), 1<<20))
	overhead := len(b) - 1<<20
	if _, err := l.Append(ctx, sized(objID(1), l.MaxEventBytes()-overhead+1), 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an event one byte over MaxEventBytes: %v, want ErrTooLarge", err)
	}
	if seq, _ := l.LastSeq(ctx, 0); seq != 0 {
		t.Fatalf("a refused event moved the stream to %d", seq)
	}
	// The largest event fits the server's payload with its headers.
	largest := sized(objID(2), l.MaxEventBytes()-overhead)
	r, err := l.Append(ctx, largest, 0)
	if err != nil || len(r.Data) != l.MaxEventBytes() {
		t.Fatalf("an event of exactly MaxEventBytes (%d): %d bytes, %v", l.MaxEventBytes(), len(r.Data), err)
	}
	if last, err := l.Last(ctx, "test", objID(2)); err != nil || !bytes.Equal(last.Data, r.Data) {
		t.Fatalf("reading the largest event back: %v", err)
	}
	bad := testEvent(objID(3), 0, "version 0")
	if _, err := l.Append(ctx, bad, 0); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("an invalid event: %v, want ErrBadEvent", err)
	}
}

// TestCorruptMessage: a message that is not an event, or is another
// object's event, is an error naming its stream sequence.
func TestCorruptMessage(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	ctx := context.Background()
	id, other := objID(1), objID(2)
	good, err := l.Append(ctx, testEvent(id, 1, "good"), 0)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(subj string, data []byte) uint64 {
		ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	garbage := raw(ObjectSubject(0, "test", id), []byte("not an event"))
	var seen int
	err = l.Read(ctx, "test", id, 0, func(Record) error { seen++; return nil })
	if !errors.Is(err, ErrBadEvent) || !strings.Contains(err.Error(), "sequence "+strconv.Itoa(int(garbage))) || seen != 1 {
		t.Fatalf("read over garbage at %d: %v after %d events", garbage, err, seen)
	}
	if _, err := l.Last(ctx, "test", id); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("Last of garbage: %v", err)
	}
	// A valid event of another object, stored on this object's subject.
	misplaced, _ := Encode(testEvent(other, 1, "elsewhere"))
	raw(ObjectSubject(0, "test", objID(5)), misplaced)
	if _, err := l.Last(ctx, "test", objID(5)); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("Last of a misplaced event: %v", err)
	}
	if err := l.Scan(ctx, 0, good.Seq+1, func(Record) error { return nil }); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("Scan over garbage: %v", err)
	}
}

func TestEmbeddedConfig(t *testing.T) {
	if _, err := RunEmbedded(EmbeddedConfig{}); err == nil {
		t.Fatal("no directory accepted")
	}
	if _, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Port: -5}); err == nil {
		t.Fatal("a negative port accepted")
	}
	// A second server on the same store fails with an error, not a hang.
	dir := t.TempDir()
	srv, err := RunEmbedded(EmbeddedConfig{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	start := time.Now()
	if s2, err := RunEmbedded(EmbeddedConfig{Dir: dir, Logger: quiet}); err == nil {
		s2.Shutdown(context.Background())
		t.Log("a second server on the same store started (the store is not locked on this platform)")
	} else if time.Since(start) > 5*time.Second {
		t.Fatalf("the second server took %s to fail: %v", time.Since(start), err)
	}
}
