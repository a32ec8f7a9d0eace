package log

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestLastAllocation: reading an object's last event (what every
// activation's load does) allocates kilobytes, not the half megabyte of a
// SubscribeSync channel with nats.go's default pending length.
func TestLastAllocation(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	ids := make([]ID, 50)
	for i := range ids {
		ids[i] = ID{byte(i), 1}
		if _, err := l.Append(ctx, testEvent(ids[i], 1, "v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Last(ctx, "test", ids[0]); err != nil { // warm up
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		rec, err := l.Last(ctx, "test", id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Event.ID != id {
			t.Fatalf("last of %x is an event of %x", id, rec.Event.ID)
		}
	}
	runtime.ReadMemStats(&after)
	// The embedded server and the log's other goroutines allocate too:
	// the bound is far above a get's own few kilobytes and far below
	// 512 KB.
	const perGetMax = 64 << 10
	per := (after.TotalAlloc - before.TotalAlloc) / uint64(len(ids))
	if per > perGetMax {
		t.Fatalf("Last allocated %d bytes per call, want at most %d", per, perGetMax)
	}
	t.Logf("%d bytes allocated per Last", per)
}

// TestDirectGetNoResponders: a direct get nobody answers (no such stream)
// fails once its context ends, with the server's "no responders" or the
// context's error, and does not hang.
func TestDirectGetNoResponders(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := l.directGet(ctx, "NO_SUCH_STREAM", directGetRequest{LastFor: "x"}, "last of x")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders)) {
			t.Fatalf("direct get with no responders: %v, want no responders or the deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("direct get with no responders did not return after its context ended")
	}
}
