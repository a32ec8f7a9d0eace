package objects

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestOutboxWorkerTakesTheNextSender: a worker whose queue emptied waits
// for the next sender's queue instead of ending, so senders that send one
// after another are delivered by one goroutine; and the waiting worker
// ends when the runtime closes (the harness's Close waits for it).
func TestOutboxWorkerTakesTheNextSender(t *testing.T) {
	// Long enough that no worker ends between the sends, however slow
	// the machine; put back after the runtime closed (cleanups run last
	// registered first).
	idle := outboxWorkerIdle
	t.Cleanup(func() { outboxWorkerIdle = idle })
	outboxWorkerIdle = time.Minute
	m := newMsgHarness(t)
	o := m.rt.outbox
	const senders = 5
	for i := range senders {
		if _, err := m.call(fmt.Sprintf("s%d", i), "send", SendIn{To: "r", N: 1, First: i}); err != nil {
			t.Fatal(err)
		}
		m.waitSettled(int64(i + 1))
		waitFor(t, "a worker waiting for the next sender", func() bool { return o.waiting.Load() == 1 })
	}
	if n := o.started.Load(); n != 1 {
		t.Fatalf("%d workers started for %d senders one after another, want 1", n, senders)
	}
	var got []int
	m.read("r", "got", &got)
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("r took %v", got)
	}
}

// TestLazySettleRunsInline: the settle call of a delivered plain message
// that finds its sender idle is noted on the outbox worker's goroutine,
// as an inline turn would be, waking no goroutine of the sender's; so the
// settle event that the settlesNotedMax-th noted Settle stages is appended
// from that goroutine too.
func TestLazySettleRunsInline(t *testing.T) {
	sender := IDFromName("inbox", "s")
	var appendedBy atomic.Value // the stack that appended s's settle event, v3
	m := newMsgHarness(t, func(c *Config) {
		c.SettleDelay = time.Hour
		c.Hooks.BeforeAppend = func(_ string, id ID, v uint64) {
			if id == sender && v == 3 {
				appendedBy.Store(goroutineStack())
			}
		}
	})
	// The target refuses until both sends are acknowledged, so the
	// messages of both are delivered, and noted, with no event of s
	// between them.
	inboxDown.Store(true)
	defer inboxDown.Store(false)
	for first := 0; first < settlesNotedMax; first += TurnSendsMax {
		if _, err := m.call("s", "send", SendIn{To: "r", N: TurnSendsMax, First: first}); err != nil {
			t.Fatal(err)
		}
	}
	inboxDown.Store(false)
	m.waitSettled(settlesNotedMax)
	waitFor(t, "s's settle event", func() bool { return appendedBy.Load() != nil })
	if st := appendedBy.Load().(string); !strings.Contains(st, "(*outbox).drain") {
		t.Fatalf("s's settle event was appended off the outbox's goroutine:\n%s", st)
	}
	evs := m.events("s")
	if settles, sent := settlesIn(evs); len(evs) != 3 || sent != settlesNotedMax || len(settles) != settlesNotedMax {
		t.Fatalf("s wrote %d events, %d messages sent and %d settled; want 3, %d and %d", len(evs), sent, len(settles), settlesNotedMax, settlesNotedMax)
	}
}
