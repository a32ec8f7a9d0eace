package log

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// backgroundRound holds the committer on a plug publish, queues the
// appends of fore (plain) and back (background), the first plain one
// before the others so that the committer takes it while it waits, lets
// the plug go and returns the sizes of the next publishes until every
// append is answered. An append that fails, or is not stored, fails the
// test.
//
// The committer holds background appends for an hour at most here, so
// what releases them is the queue running empty or their number.
func backgroundRound(t *testing.T, fore, back int) ([]int, *Log) {
	t.Helper()
	g := newGate()
	h := g.hooks()
	h.backgroundWait = time.Hour
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: h})
	ctx := context.Background()

	g.setShut(true)
	plugDone := make(chan error, 1)
	go func() { _, err := l.Append(ctx, testEvent(objID(1), 1, "plug"), 0); plugDone <- err }()
	if n := g.nextSize(t); n != 1 {
		t.Fatalf("plug publish of %d messages", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, fore+back)
	add := func(i int, background bool) {
		wg.Go(func() {
			e := testEvent(objID(100+i), 1, fmt.Sprint(i))
			var err error
			if background {
				_, err = l.AppendBackground(ctx, e, 0)
			} else {
				_, err = l.Append(ctx, e, 0)
			}
			if err != nil {
				errs <- fmt.Errorf("append %d (background %v): %w", i, background, err)
			}
		})
	}
	add(0, false)
	queued(t, l, 0, 1)
	for i := range back {
		add(1+i, true)
	}
	for i := 1; i < fore; i++ {
		add(back+i, false)
	}
	queued(t, l, 0, fore+back)

	g.setShut(false)
	g.pass <- struct{}{}
	if err := <-plugDone; err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for total := 0; total < fore+back; {
		n := g.nextSize(t)
		sizes = append(sizes, n)
		total += n
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range fore + back {
		if recs := readAll(t, l, "test", objID(100+i), 0); len(recs) != 1 {
			t.Fatalf("append %d: %d events stored", i, len(recs))
		}
	}
	return sizes, l
}

// TestBackgroundAppendsGoLast: while plain appends are queued, the
// committer holds the background ones back and sends the plain ones
// first; once nothing else is queued it sends them at once, together.
func TestBackgroundAppendsGoLast(t *testing.T) {
	sizes, l := backgroundRound(t, 2, 3)
	if len(sizes) != 2 || sizes[0] != 2 || sizes[1] != 3 {
		t.Fatalf("publishes after the plug of %v messages; want [2 3]: the plain appends, then the background ones", sizes)
	}
	if s := l.Stats(); s.Background != 3 {
		t.Fatalf("stats %+v: want 3 background appends", s)
	}
}

// TestBackgroundAppendsBatch: once backgroundBatch background appends are
// held, they go with the plain ones queued, in one atomic batch.
func TestBackgroundAppendsBatch(t *testing.T) {
	sizes, l := backgroundRound(t, 2, backgroundBatch)
	if len(sizes) != 1 || sizes[0] != 2+backgroundBatch {
		t.Fatalf("publishes after the plug of %v messages; want one of %d", sizes, 2+backgroundBatch)
	}
	if s := l.Stats(); s.Batches != 1 || s.BatchedMessages != uint64(2+backgroundBatch) {
		t.Fatalf("stats %+v: want one atomic batch of %d", s, 2+backgroundBatch)
	}
}

// TestBackgroundAppendAlone: a background append with nothing else to
// send goes at once, though the committer may hold one for an hour.
func TestBackgroundAppendAlone(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: &hooks{backgroundWait: time.Hour}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last uint64
	for v := uint64(1); v <= 3; v++ {
		r, err := l.AppendBackground(ctx, testEvent(objID(1), v, fmt.Sprint(v)), last)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		last = r.Seq
	}
	if recs := readAll(t, l, "test", objID(1), 0); len(recs) != 3 || value(recs[2]) != "3" {
		t.Fatalf("stored %d events", len(recs))
	}
}
