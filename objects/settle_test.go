package objects

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// events reads every event of inbox/name from the log.
func (m *msgHarness) events(name string) []log.Event {
	m.t.Helper()
	var evs []log.Event
	if err := m.log.Read(context.Background(), "inbox", IDFromName("inbox", name), 0, func(r log.Record) error {
		evs = append(evs, *r.Event)
		return nil
	}); err != nil {
		m.t.Fatal(err)
	}
	return evs
}

// settlesIn counts, per message, the plain Settles in evs, and the
// messages the events sent.
func settlesIn(evs []log.Event) (settles map[projector.MessagePos]int, sent int) {
	settles = map[projector.MessagePos]int{}
	for _, ev := range evs {
		for _, t := range ev.Turns {
			sent += len(t.Sends)
			for _, s := range t.Settles {
				if s.Dead == "" && !s.Retry {
					settles[projector.MessagePos{Version: s.Version, Turn: s.Turn, Index: s.Index}]++
				}
			}
		}
	}
	return settles, sent
}

// TestSettleCarriedByTheNextEvent: a delivered plain message costs its
// sender no event of its own: its Settle waits in memory and goes with the
// sender's next event. Until then the log says the message is pending;
// the outbox listing does not list it, since its target has applied it.
func TestSettleCarriedByTheNextEvent(t *testing.T) {
	m := newMsgHarness(t, func(c *Config) { c.SettleDelay = time.Hour })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 1}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1) // r ran it and s noted its Settle
	var got []int
	m.read("r", "got", &got)
	if fmt.Sprint(got) != "[1]" {
		t.Fatalf("r took %v, want [1]", got)
	}
	m.flush()
	if evs := m.events("s"); len(evs) != 1 {
		t.Fatalf("s has %d events after the delivery, want 1: the settle waits for the next", len(evs))
	}
	if settles, _ := settlesIn(m.events("s")); len(settles) != 0 {
		t.Fatalf("s's log settles %v before its next event", settles)
	}
	if out := m.pendingOf("s"); len(out) != 0 {
		t.Fatalf("s's outbox %+v: a delivered message whose Settle is noted is listed", out)
	}
	// s's next turn, which sends another message, carries the Settle.
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 2}); err != nil {
		t.Fatal(err)
	}
	evs := m.events("s")
	if len(evs) != 2 {
		t.Fatalf("s has %d events, want 2", len(evs))
	}
	last := evs[1].Turns[len(evs[1].Turns)-1]
	if len(last.Sends) != 1 || len(last.Settles) != 1 || last.Settles[0] != (log.Settle{Version: 1}) {
		t.Fatalf("s's v2 turn %+v: want its send and the Settle of v1's message", last)
	}
	m.waitSettled(2)
	m.flush()
	if out := m.pendingOf("s"); len(out) != 0 {
		t.Fatalf("s's outbox %+v: want none, v2's message delivered", out)
	}
}

// TestSettleWrittenAfterTheDelay: with no event of the sender to carry
// them, the Settles noted by then are written SettleDelay after the first,
// in one settle turn.
func TestSettleWrittenAfterTheDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	var noted atomic.Int64 // when the first message was noted, Unix nanoseconds
	var settleAcked atomic.Int64
	sid := IDFromName("inbox", "s")
	m := &msgHarness{}
	m.harness = newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("inbox", func() *inbox { return &inbox{} }))
		c.SettleDelay = delay
		c.Hooks.Delivered = func(string, ID, bool) {
			noted.CompareAndSwap(0, time.Now().UnixNano())
			m.settled.Add(1)
		}
		c.Hooks.Acked = func(_ string, id ID, v, _ uint64) {
			if id == sid && v == 2 {
				settleAcked.Store(time.Now().UnixNano())
			}
		}
	})
	if _, err := m.call("s", "send", SendIn{To: "r", N: 5, First: 1}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(5)
	waitFor(t, "s's settle turn", func() bool { return settleAcked.Load() != 0 })
	if waited := time.Duration(settleAcked.Load() - noted.Load()); waited < delay {
		t.Fatalf("the settle turn came %s after the first delivery, want at least SettleDelay %s", waited, delay)
	}
	waitFor(t, "every Settle written", func() bool {
		settles, _ := settlesIn(m.events("s"))
		return len(settles) == 5
	})
	evs := m.events("s")
	settles, sent := settlesIn(evs)
	for i := range sent {
		if n := settles[projector.MessagePos{Version: 1, Index: i}]; n != 1 {
			t.Fatalf("message %d settled %d times, want 1", i, n)
		}
	}
	for _, ev := range evs[1:] {
		for _, tt := range ev.Turns {
			if tt.Cause.Method != "outbox settle" || len(tt.Writes) > 0 || len(tt.Settles) == 0 {
				t.Fatalf("s's v%d turn %+v: want a settle turn", ev.Version, tt)
			}
		}
	}
	// The five deliveries take far less than the delay: their Settles
	// share the settle turns (one, unless a delivery was slow).
	if len(evs)-1 >= sent {
		t.Fatalf("%d settle events for %d messages: one each, the delay gathered none", len(evs)-1, sent)
	}
	m.flush()
	if out := m.pendingOf("s"); len(out) != 0 {
		t.Fatalf("s's outbox %+v after the settle turn", out)
	}
}

// TestSettleWrittenWhenTheNodeStops: an activation that ends on purpose
// (the runtime closing, as a move's release does) writes the Settles it
// holds before it goes, however long the delay.
func TestSettleWrittenWhenTheNodeStops(t *testing.T) {
	srv := startServer(t)
	m := newMsgHarnessOn(t, srv, func(c *Config) { c.SettleDelay = time.Hour })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(2)
	if err := m.rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	settles, sent := settlesIn(m.events("s"))
	if sent != 2 || len(settles) != 2 || settles[projector.MessagePos{Version: 1}] != 1 || settles[projector.MessagePos{Version: 1, Index: 1}] != 1 {
		t.Fatalf("s's log settles %v of %d messages, want each once", settles, sent)
	}
}

// TestSettleLostWithItsActivationRedelivers: the Settles a node holds
// are lost if its activation does not end on purpose (here it is fenced:
// another node loaded the sender first, as after a crash or a move).
// The other node finds the messages pending in the log and delivers them
// again; the target answers from its record without running them, and
// each message is settled once in the sender's log.
func TestSettleLostWithItsActivationRedelivers(t *testing.T) {
	srv := startServer(t)
	h1 := newMsgHarnessOn(t, srv, func(c *Config) { c.SettleDelay = time.Hour })
	if _, err := h1.call("s", "send", SendIn{To: "r", N: 3, First: 1}); err != nil {
		t.Fatal(err)
	}
	h1.waitSettled(3)
	if _, sent := settlesIn(h1.events("s")); sent != 3 {
		t.Fatalf("s sent %d messages, want 3", sent)
	}
	var replayed atomic.Int64
	h2 := newMsgHarnessOn(t, srv, func(c *Config) {
		c.SettleDelay = 10 * time.Millisecond
		c.Hooks.Replayed = func(string, ID) { replayed.Add(1) }
	})
	if err := h2.rt.RepairOutbox(context.Background(), h2.ref("inbox", "s")); err != nil {
		t.Fatal(err)
	}
	h2.waitSettled(3)
	if replayed.Load() != 3 {
		t.Fatalf("r answered %d redeliveries from its record, want 3", replayed.Load())
	}
	waitFor(t, "the second node's settles", func() bool {
		settles, _ := settlesIn(h2.events("s"))
		return len(settles) == 3
	})
	var got []int
	h2.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("r took %v, want [1 2 3]: a redelivery ran again", got)
	}
	// The first node's activation of s writes its Settles as it stops:
	// that append is fenced, so nothing is settled twice.
	if err := h1.rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	settles, _ := settlesIn(h2.events("s"))
	for pos, n := range settles {
		if n != 1 {
			t.Fatalf("message %+v settled %d times, want once", pos, n)
		}
	}
	if h1.fences.Load() == 0 {
		t.Fatal("the first node's stale activation of s was not fenced")
	}
}

// TestSettleWrittenBeforeRelease: a sender released to another node (a
// move) writes the Settles it holds before its activation ends, so the
// next owner finds nothing pending.
func TestSettleWrittenBeforeRelease(t *testing.T) {
	m := newMsgHarness(t, func(c *Config) { c.SettleDelay = time.Hour })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(2)
	if settles, _ := settlesIn(m.events("s")); len(settles) != 0 {
		t.Fatalf("s's log settles %v before the release, want nothing yet", settles)
	}
	if ok, err := m.rt.Release(context.Background(), "inbox", IDFromName("inbox", "s")); err != nil || !ok {
		t.Fatalf("release: %v, %v", ok, err)
	}
	settles, sent := settlesIn(m.events("s"))
	if sent != 2 || len(settles) != 2 {
		t.Fatalf("s's log settles %v of %d messages after the release, want both", settles, sent)
	}
}

// TestSettleWrittenBeforeEviction: an activation holding Settles is not
// idle: the idle timeout evicts it only after its settle turn.
func TestSettleWrittenBeforeEviction(t *testing.T) {
	sid := IDFromName("inbox", "s")
	var evictedAt atomic.Int64 // how many Settles s's log held when it was evicted, plus one
	var armed atomic.Bool      // s holds the Settle: count its evictions from now on
	var m *msgHarness
	m = newMsgHarness(t, func(c *Config) {
		c.IdleTimeout = 20 * time.Millisecond
		c.SettleDelay = 300 * time.Millisecond
		c.Hooks.Evicted = func(_ string, id ID) {
			if id == sid && armed.Load() && evictedAt.Load() == 0 {
				rec, err := m.log.Last(context.Background(), "inbox", sid)
				n := 0
				if err == nil {
					for _, tt := range rec.Event.Turns {
						n += len(tt.Settles)
					}
				}
				evictedAt.Store(int64(n) + 1)
			}
		}
	})
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 1}); err != nil {
		t.Fatal(err)
	}
	// The answer may take longer than the idle timeout on a loaded
	// machine, and s, holding nothing yet, may then go idle first (and be
	// activated again by the next read): only the evictions after s holds
	// the answer's Settle count.
	waitFor(t, "s holds its message's Settle", func() bool {
		out, err := m.call("s", "answered", nil)
		return err == nil && string(out) != "0"
	})
	armed.Store(true) // the settle turn is SettleDelay away: s cannot be idle before
	m.waitSettled(1)
	waitFor(t, "s's eviction", func() bool { return evictedAt.Load() != 0 })
	if n := evictedAt.Load() - 1; n != 1 {
		t.Fatalf("s was evicted with %d Settles in its last event, want its message's: evicted before its settle turn", n)
	}
}

// TestBackgroundEvents: the events no client waits on go to the log as
// background appends (log.AppendBackground): a target's turns of
// messages, a sender's turns of replies, its settle turns. An event with
// a client's turn does not, whatever else it holds. Here the clients'
// turns, and only they, send messages.
func TestBackgroundEvents(t *testing.T) {
	m := newMsgHarness(t, func(c *Config) { c.SettleDelay = 100 * time.Millisecond })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.call("r", "send", SendIn{To: "q", N: 1, First: 4}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(4)
	waitFor(t, "every message settled in its sender's log", func() bool {
		s, _ := settlesIn(m.events("s"))
		r, _ := settlesIn(m.events("r"))
		return len(s) == 3 && len(r) == 1
	})
	kinds := map[string]int{}
	for _, name := range []string{"s", "r"} {
		for _, ev := range m.events(name) {
			client := false
			for _, tt := range ev.Turns {
				switch {
				case len(tt.Sends) > 0:
					client = true
					kinds["client"]++
				case len(tt.Writes) == 0 && len(tt.Settles) > 0:
					kinds["settle"]++
				case tt.Cause.Caller != nil && tt.Cause.Caller.Kind == log.CallerReply:
					kinds["reply"]++
				default:
					kinds["message"]++
				}
			}
			if got := backgroundEvent(&ev); got == client {
				t.Errorf("%s v%d (turns %+v): background %v, want %v", name, ev.Version, ev.Turns, got, !client)
			}
		}
	}
	for _, k := range []string{"client", "settle", "reply", "message"} {
		if kinds[k] == 0 {
			t.Fatalf("no %s turn among the events (%v): the test does not cover it", k, kinds)
		}
	}
}
