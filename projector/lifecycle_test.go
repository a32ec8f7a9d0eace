package projector

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// TestSubmitEqualsApply: records submitted concurrently by many writers
// (each object's in order, as activations submit them) and flushed leave
// the same snapshot as one synchronous Apply of them all.
func TestSubmitEqualsApply(t *testing.T) {
	recs := randomRecords(t, 99, 40, 2000)
	syncP := open(t, Config{InMemory: true})
	mustApply(t, syncP, recs...)

	// A short queue and small batches make Submit block and the loop
	// take many batches.
	async := open(t, Config{Dir: t.TempDir(), QueueLen: 8, BatchMax: 16})
	byObj := map[obj][]log.Record{}
	for _, r := range recs {
		o := obj{r.Event.Class, r.Event.ID}
		byObj[o] = append(byObj[o], r)
	}
	var wg sync.WaitGroup
	for _, rs := range byObj {
		wg.Go(func() {
			for _, r := range rs {
				if err := async.Submit(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := async.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, async), dump(t, syncP); got != want {
		t.Errorf("async snapshot differs from the sync one")
	}
}

// TestFlushWaitsForEarlierRecords: Flush returns only once what was
// submitted before it is readable.
func TestFlushWaitsForEarlierRecords(t *testing.T) {
	p := open(t, Config{InMemory: true, BatchMax: 3})
	recs := randomRecords(t, 5, 3, 100)
	for _, r := range recs {
		if err := p.Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := map[obj]log.Record{}
	for _, r := range recs {
		last[obj{r.Event.Class, r.Event.ID}] = r
	}
	for o, r := range last {
		checkMeta(t, p, o, r)
	}
}

// TestReopenKeepsData: a closed snapshot opens with what was applied, and
// applying continues from there.
func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	recs := randomRecords(t, 11, 10, 400)
	p, err := Open(Config{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, p, recs[:200]...)
	for _, r := range recs[200:] {
		if err := p.Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(context.Background()); err != nil { // applies what was submitted
		t.Fatal(err)
	}
	ref := open(t, Config{InMemory: true})
	mustApply(t, ref, recs...)

	p = open(t, Config{Dir: dir})
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Fatal("reopened snapshot differs from what was applied")
	}
	more := randomRecords(t, 11, 10, 500)[400:] // the same stream, continued
	mustApply(t, p, more...)
	mustApply(t, ref, more...)
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Fatal("applying after reopen differs")
	}
}

// TestClosed: after Close every method says ErrClosed, and Close again
// returns the first result.
func TestClosed(t *testing.T) {
	p, err := Open(Config{InMemory: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rec := randomRecords(t, 1, 1, 1)[0]
	o := obj{rec.Event.Class, rec.Event.ID}
	ctx := context.Background()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close = %v", err)
	}
	_, _, getErr := p.Get(o.class, o.id, "k")
	_, metaErr := p.Meta(o.class, o.id)
	_, alarmsErr := p.Alarms(o.class, o.id)
	for name, err := range map[string]error{
		"Submit": p.Submit(ctx, rec),
		"Flush":  p.Flush(ctx),
		"Apply":  p.Apply([]log.Record{rec}),
		"Get":    getErr,
		"Meta":   metaErr,
		"Alarms": alarmsErr,
		"List":   p.List(o.class, o.id, ListOptions{}, func(string, []byte) bool { return true }),
		"Dump":   p.Dump(func(_, _ []byte) error { return nil }),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// blocker holds the apply goroutine inside OnApplied until released.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan struct{}), release: make(chan struct{})}
}

func (b *blocker) onApplied([]Applied) {
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
}

// TestSubmitBlocksWhenFull: a full queue makes Submit wait for its
// context, and Close releases a waiting Submit with ErrClosed.
func TestSubmitBlocksWhenFull(t *testing.T) {
	b := newBlocker()
	p, err := Open(Config{InMemory: true, Logger: quiet, QueueLen: 2, OnApplied: b.onApplied})
	if err != nil {
		t.Fatal(err)
	}
	recs := randomRecords(t, 2, 1, 10)
	ctx := context.Background()
	if err := p.Submit(ctx, recs[0]); err != nil {
		t.Fatal(err)
	}
	<-b.entered // the loop holds recs[0]; the queue is empty
	for _, r := range recs[1:3] {
		if err := p.Submit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := p.Submit(short, recs[3]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit to a full queue = %v, want DeadlineExceeded", err)
	}

	waiting := make(chan error)
	entered := p.submitters.entered.Load()
	go func() { waiting <- p.Submit(ctx, recs[3]) }()
	waitFor(t, func() bool { return p.submitters.entered.Load() > entered })
	closed := make(chan error)
	go func() { closed <- p.Close(ctx) }()
	if err := recv(t, waiting); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit waiting during Close = %v, want ErrClosed", err)
	}
	close(b.release)
	if err := recv(t, closed); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDrainsQueue: Close applies everything submitted before it.
func TestCloseDrainsQueue(t *testing.T) {
	dir := t.TempDir()
	b := newBlocker()
	p, err := Open(Config{Dir: dir, Logger: quiet, BatchMax: 4, OnApplied: b.onApplied})
	if err != nil {
		t.Fatal(err)
	}
	recs := randomRecords(t, 3, 4, 200)
	ctx := context.Background()
	if err := p.Submit(ctx, recs[0]); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	for _, r := range recs[1:] {
		if err := p.Submit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error)
	go func() { flushed <- p.Flush(ctx) }()
	waitFor(t, func() bool { return len(p.queue) == len(recs) }) // recs[1:] and the flush
	closed := make(chan error)
	go func() { closed <- p.Close(ctx) }()
	close(b.release)
	if err := recv(t, closed); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, flushed); err != nil {
		t.Errorf("Flush queued before Close = %v", err)
	}
	p = open(t, Config{Dir: dir})
	ref := open(t, Config{InMemory: true})
	mustApply(t, ref, recs...)
	if got, want := dump(t, p), dump(t, ref); got != want {
		t.Error("Close did not apply everything submitted")
	}
}

// TestCloseContextDropsQueue: when Close's context ends, the goroutine
// stops after the transaction in progress, queued records are dropped
// (the log has them), waiting flushes get ErrClosed, and Badger is closed
// with what was committed.
func TestCloseContextDropsQueue(t *testing.T) {
	dir := t.TempDir()
	b := newBlocker()
	p, err := Open(Config{Dir: dir, Logger: quiet, OnApplied: b.onApplied})
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(t)
	o := newObj("counter", "dropped")
	first := s.next(o, []log.Write{put("a", "1")})
	ctx := context.Background()
	if err := p.Submit(ctx, first); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	for range 5 {
		if err := p.Submit(ctx, s.next(o, []log.Write{put("a", "later")})); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error)
	go func() { flushed <- p.Flush(ctx) }()
	waitFor(t, func() bool { return len(p.queue) == 6 })
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	closed := make(chan error)
	go func() { closed <- p.Close(canceled) }()
	<-p.abort // Close gave up waiting
	close(b.release)
	if err := recv(t, closed); !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled", err)
	}
	if err := recv(t, flushed); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush = %v, want ErrClosed", err)
	}
	if err := p.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("second Close = %v, want the first result", err)
	}
	p = open(t, Config{Dir: dir})
	checkMeta(t, p, o, first)
}

func TestConfigValidated(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no dir":       {},
		"dir and mem":  {Dir: t.TempDir(), InMemory: true},
		"negative len": {InMemory: true, QueueLen: -1},
		"negative max": {InMemory: true, BatchMax: -1},
	} {
		if p, err := Open(cfg); err == nil {
			p.Close(context.Background())
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// waitFor polls cond until it holds, or fails the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
	}
}

// recv waits for an error from ch, or fails the test after 10s.
func recv(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no answer in 10s")
		return nil
	}
}
