package objects

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/strata-objects/strata/log"
)

// forge publishes data on the object's subject behind Strata's back, as a
// client with access to the NATS server could, and returns its sequence.
func forge(t *testing.T, h *harness, class string, id ID, data []byte) uint64 {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(h.srv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(log.ObjectSubject(h.log.ShardOf(id), class, id), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// TestCatchUpChecksTheChain: a well-formed event on an object's subject
// that does not follow its chain (the right next version with another
// PrevHash, or a version that skips) is not applied when the object
// catches up from the log: the object answers ErrCorruptLog naming the
// message's sequence, every time (not a retryable error), and other
// objects keep working. Before catch-up checked PrevHash, the forged
// event with the right version was applied and served.
func TestCatchUpChecksTheChain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		forge func(last log.Record) *log.Event
	}{
		{"wrong prev hash", func(last log.Record) *log.Event {
			ev := *last.Event
			ev.Version++
			ev.PrevHash = log.Hash{0xfe}
			return &ev
		}},
		{"wrong version", func(last log.Record) *log.Event {
			ev := *last.Event
			ev.Version += 2
			ev.PrevHash = last.Hash()
			return &ev
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for range 3 {
				if _, err := h.add(ctx, "victim", 1); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := h.add(ctx, "bystander", 1); err != nil {
				t.Fatal(err)
			}
			h.flush()
			id := IDFromName("tally", "victim")
			last, err := h.log.Last(ctx, "tally", id)
			if err != nil {
				t.Fatal(err)
			}
			ev := tc.forge(last)
			ev.Turns = []log.Turn{{Cause: log.Cause{Via: log.ViaRPC, Method: "add"}, Writes: []log.Write{{Op: log.OpPut, Key: "n", Value: []byte("100")}}}}
			data, err := log.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			seq := forge(t, h, "tally", id, data)

			// A second node on the same log loads the object from scratch.
			h2 := newHarnessOn(t, h.srv)
			for attempt := range 2 {
				v, err := h2.add(ctx, "victim", 1)
				if !errors.Is(err, ErrCorruptLog) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("attempt %d: victim answered %d, %v; want ErrCorruptLog", attempt, v, err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("sequence %d", seq)) {
					t.Fatalf("the error does not name sequence %d: %v", seq, err)
				}
			}
			if v, err := h2.add(ctx, "bystander", 1); err != nil || v != 2 {
				t.Fatalf("bystander: %d, %v; want 2", v, err)
			}
		})
	}
}

// TestCorruptLastMessage: bytes that are not an event, as the last message
// on an object's subject, make the object answer ErrCorruptLog naming the
// sequence, not a retryable ErrUnavailable forever.
func TestCorruptLastMessage(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	if _, err := h.add(ctx, "victim", 1); err != nil {
		t.Fatal(err)
	}
	seq := forge(t, h, "tally", IDFromName("tally", "victim"), []byte("not an event"))
	h2 := newHarnessOn(t, h.srv)
	_, err := h2.add(ctx, "victim", 1)
	if !errors.Is(err, ErrCorruptLog) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), fmt.Sprintf("sequence %d", seq)) {
		t.Fatalf("victim over garbage at %d: %v; want ErrCorruptLog naming it", seq, err)
	}
	if v, err := h2.add(ctx, "bystander", 1); err != nil || v != 1 {
		t.Fatalf("bystander: %d, %v", v, err)
	}
}

// TestSnapshotAheadOfTheLog: a snapshot that holds an event the log does
// not (here applied to the projector behind the log's back) fails the
// load. On one node that is a log that lost acknowledged events, and the
// error says so, not "unavailable". In a cluster the same answer can come
// from a deposed leader that has not heard of its successor, so it is
// ErrUnavailable there (a 503 the client may retry).
func TestSnapshotAheadOfTheLog(t *testing.T) {
	h := newHarness(t)
	id := IDFromName("tally", "ahead")
	ev := &log.Event{Format: log.FormatVersion, Class: "tally", ID: id, Version: 1, Time: 1,
		Turns: []log.Turn{{Cause: log.Cause{Via: log.ViaRPC, Method: "add"}, Writes: []log.Write{{Op: log.OpPut, Key: "n", Value: []byte("1")}}}}}
	data, err := log.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.proj.Apply([]log.Record{{Shard: h.log.ShardOf(id), Seq: 999, Data: data, Event: ev}}); err != nil {
		t.Fatal(err)
	}
	_, err = h.add(context.Background(), "ahead", 1)
	if err == nil || !strings.Contains(err.Error(), "snapshot at sequence 999 is ahead of the log at 0") || errors.Is(err, ErrUnavailable) {
		t.Fatalf("load of a snapshot ahead of its log on one node: %v; want the error, not ErrUnavailable", err)
	}
	if err := aheadOfLog(true, "snapshot", 999, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("in a cluster: %v, want ErrUnavailable", err)
	}
}
