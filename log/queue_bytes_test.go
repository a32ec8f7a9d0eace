package log

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// A committer's queue is bounded in bytes as well as in appends: while
// its publish is held, appends past AppendQueueBytesMax wait.
func TestAppendQueueBoundedInBytes(t *testing.T) {
	g := newGate()
	big := strings.Repeat("v", 16<<10)
	data, err := Encode(testEvent(objID(1), 1, big))
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: g.hooks(), AppendQueueBytesMax: 3 * len(data)})
	ctx := context.Background()

	// Hold the committer on a first (inline) publish so the rest queue.
	// Inline only once the committer waits idle: before that the first
	// append would take its bytes from the queue's budget too.
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if !l.committers[0].idle.Load() {
			return errors.New("the committer is not waiting yet")
		}
		return nil
	})
	g.setShut(true)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() { _, err := l.Append(ctx, testEvent(objID(1), 1, big), 0); errs <- err })
	g.nextSize(t)
	for i := 2; i <= 4; i++ {
		wg.Go(func() { _, err := l.Append(ctx, testEvent(objID(i), 1, big), 0); errs <- err })
	}
	queued(t, l, 0, 3)
	c := l.committers[0]
	if used := c.queued.Used(); used != 3*len(data) {
		t.Fatalf("%d bytes queued, want %d", used, 3*len(data))
	}
	// Full: an append waits, so one whose context has ended never joins
	// the queue (with room it would, about half the time).
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 {
		if _, err := l.Append(gone, testEvent(objID(5), 1, big), 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with its context ended: %v", err)
		}
	}
	if n := len(c.in) + int(c.held.Load()); n != 3 {
		t.Fatalf("%d appends queued past the byte bound, want 3", n)
	}
	g.setShut(false)
	g.pass <- struct{}{}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, testEvent(objID(5), 1, big), 0); err != nil {
		t.Fatal(err)
	}
	if used := c.queued.Used(); used != 0 {
		t.Fatalf("%d bytes still counted with nothing queued", used)
	}
}
