package objects

import (
	"fmt"
	"testing"
)

// TestOutboxWorkerTakesTheNextSender: a worker whose queue emptied waits
// for the next sender's queue instead of ending, so senders that send one
// after another are delivered by one goroutine; and the waiting worker
// ends when the runtime closes (the harness's Close waits for it).
func TestOutboxWorkerTakesTheNextSender(t *testing.T) {
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
