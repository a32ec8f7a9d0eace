package projector

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/strata-objects/strata/log"
)

// The queue is bounded in bytes as well as in records: while the apply
// goroutine is held, Submit waits once the queued records' bytes reach
// QueueBytesMax, though the queue has room for many more records.
func TestQueueBoundedInBytes(t *testing.T) {
	s := newStream(t)
	o := newObj("kv", "big")
	big := string(make([]byte, 8<<10))
	var recs []log.Record
	for i := 0; i < 6; i++ {
		recs = append(recs, s.next(o, []log.Write{put("k", big)}))
	}
	four := recsBytes(recs[:4])
	hold, holding := make(chan struct{}), make(chan struct{})
	first := true
	p := open(t, Config{InMemory: true, QueueLen: 1000, QueueBytesMax: four, BeforeCommit: func(int) error {
		if first { // the apply goroutine only
			first = false
			close(holding)
			<-hold
		}
		return nil
	}})
	var released sync.Once
	release := func() { released.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the projector closes
	submit(t, p, recs[0])
	<-holding // recs[0] is being applied, and still counts
	submit(t, p, recs[1:4]...)
	if used := p.queued.Used(); used != four {
		t.Fatalf("queued %d bytes, want %d", used, four)
	}
	// Full: a submit waits, so one whose context has ended fails, every
	// time (were it not full, it would succeed about half the time).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 20; i++ {
		if err := p.Submit(ctx, recs[4]); !errors.Is(err, context.Canceled) {
			t.Fatalf("submit past the byte bound: %v, want it to wait", err)
		}
	}
	release()
	submit(t, p, recs[4:]...)
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := metaVersion(t, p, o); v != 6 {
		t.Fatalf("applied v%d, want 6", v)
	}
	if used := p.queued.Used(); used != 0 {
		t.Fatalf("%d bytes still counted with nothing queued", used)
	}
}
