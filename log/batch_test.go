package log

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBatchWithFencedObject builds one atomic batch that holds, besides
// many ordinary appends, a fenced object's stale append, a retry of an
// append that already landed, and two appends of one object under the
// same expectation. The server refuses the batch whole; the committer
// must settle each append on its own: the ordinary ones land, the fenced
// one and the loser of the pair get ErrConflict, the retry gets its
// original sequence.
func TestBatchWithFencedObject(t *testing.T) {
	g := newGate()
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: g.hooks()})
	ctx := context.Background()

	fenced, landed, pair, plug := objID(1), objID(2), objID(3), objID(4)
	f1, err := l.Append(ctx, testEvent(fenced, 1, "f1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := l.Append(ctx, testEvent(fenced, 2, "f2"), f1.Seq)
	if err != nil {
		t.Fatal(err)
	}
	landedEvent := testEvent(landed, 1, "landed")
	d, err := l.Append(ctx, landedEvent, 0)
	if err != nil {
		t.Fatal(err)
	}
	g.drain()

	// Hold the committer on a first publish so everything else queues.
	g.setShut(true)
	plugDone := make(chan error, 1)
	go func() { _, err := l.Append(ctx, testEvent(plug, 1, "plug"), 0); plugDone <- err }()
	if n := g.nextSize(t); n != 1 {
		t.Fatalf("plug publish of %d messages", n)
	}

	const others = 50
	type result struct {
		name string
		rec  Record
		err  error
	}
	results := make(chan result, others+4)
	var wg sync.WaitGroup
	try := func(name string, e *Event, expect uint64) {
		wg.Go(func() {
			r, err := l.Append(ctx, e, expect)
			results <- result{name, r, err}
		})
	}
	for i := range others {
		try(fmt.Sprint("other-", i), testEvent(objID(100+i), 1, "o"), 0)
	}
	try("fenced", testEvent(fenced, 2, "stale"), f1.Seq)
	try("landed", landedEvent, 0)
	try("pair", testEvent(pair, 1, "p1"), 0)
	try("pair", testEvent(pair, 1, "p2"), 0)
	queued(t, l, 0, others+4)

	g.setShut(false)
	g.pass <- struct{}{}
	if err := <-plugDone; err != nil {
		t.Fatal(err)
	}
	// One batch of everything but the pair's second append (a batch holds
	// one append per subject), which the server refuses whole.
	if n := g.nextSize(t); n != others+3 {
		t.Fatalf("the batch after the plug holds %d messages, want %d", n, others+3)
	}
	wg.Wait()
	close(results)

	var pairWon, pairLost int
	for r := range results {
		switch {
		case r.name == "fenced":
			if !errors.Is(r.err, ErrConflict) {
				t.Errorf("fenced append: %v, want ErrConflict", r.err)
			}
		case r.name == "landed":
			if r.err != nil || r.rec.Seq != d.Seq {
				t.Errorf("retry of a landed append: seq %d, %v; want seq %d", r.rec.Seq, r.err, d.Seq)
			}
		case r.name == "pair" && r.err == nil:
			pairWon++
		case r.name == "pair" && errors.Is(r.err, ErrConflict):
			pairLost++
		case r.err != nil:
			t.Errorf("%s: %v", r.name, r.err)
		}
	}
	if pairWon != 1 || pairLost != 1 {
		t.Errorf("two appends under one expectation: %d won, %d lost; want 1 and 1", pairWon, pairLost)
	}
	for i := range others {
		if recs := readAll(t, l, "test", objID(100+i), 0); len(recs) != 1 {
			t.Fatalf("other %d has %d events", i, len(recs))
		}
	}
	if last, _ := l.Last(ctx, "test", fenced); last.Seq != f2.Seq {
		t.Fatalf("the fenced object moved to %d", last.Seq)
	}
	if recs := readAll(t, l, "test", landed, 0); len(recs) != 1 {
		t.Fatalf("the landed object has %d events", len(recs))
	}
	s := l.Stats()
	t.Logf("stats: %+v", s)
	if s.Conflicts != 2 || s.Duplicates != 1 || s.Batches < 2 {
		t.Fatalf("stats %+v: want 2 conflicts, 1 duplicate, the refused batch and its retry", s)
	}
}

// TestBatchWithReusedMessageID: an append whose version (so message id)
// is already stored with other bytes, under an expectation that still
// holds, is refused by the server every time. In a batch it must fail
// alone, with ErrConflict, and the others land: in an atomic batch and in
// a pipeline of single publishes (fewer than pipelineBelow), whose
// duplicate ack says nothing about the others.
func TestBatchWithReusedMessageID(t *testing.T) {
	for _, others := range []int{pipelineBelow - 2, 20} {
		t.Run(fmt.Sprint(others+1, "_appends"), func(t *testing.T) { testReusedMessageID(t, others) })
	}
}

func testReusedMessageID(t *testing.T, others int) {
	g := newGate()
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: g.hooks()})
	ctx := context.Background()
	reused := objID(1)
	first, err := l.Append(ctx, testEvent(reused, 1, "first"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Alone: the server answers a duplicate ack.
	if _, err := l.Append(ctx, testEvent(reused, 1, "other"), first.Seq); !errors.Is(err, ErrConflict) {
		t.Fatalf("a reused version alone: %v, want ErrConflict", err)
	}
	g.drain()
	g.setShut(true)
	plug := make(chan error, 1)
	go func() { _, err := l.Append(ctx, testEvent(objID(2), 1, "plug"), 0); plug <- err }()
	g.nextSize(t)
	errs := make(chan error, others)
	var wg sync.WaitGroup
	for i := range others {
		wg.Go(func() { _, err := l.Append(ctx, testEvent(objID(100+i), 1, "o"), 0); errs <- err })
	}
	reusedErr := make(chan error, 1)
	wg.Go(func() { _, err := l.Append(ctx, testEvent(reused, 1, "again"), first.Seq); reusedErr <- err })
	queued(t, l, 0, others+1)
	g.setShut(false)
	g.pass <- struct{}{}
	if err := <-plug; err != nil {
		t.Fatal(err)
	}
	if n := g.nextSize(t); n != others+1 {
		t.Fatalf("the batch holds %d messages, want %d", n, others+1)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an ordinary append in the batch: %v", err)
		}
	}
	if err := <-reusedErr; !errors.Is(err, ErrConflict) {
		t.Fatalf("the reused version in a batch: %v, want ErrConflict", err)
	}
	if recs := readAll(t, l, "test", reused, 0); len(recs) != 1 || value(recs[0]) != "first" {
		t.Fatalf("the reused object holds %d events", len(recs))
	}
}

// TestCloseFailsQueuedAppends: Close lets the publish in flight finish,
// fails the appends still queued with ErrClosed, and leaves no goroutine.
func TestCloseFailsQueuedAppends(t *testing.T) {
	srv := startServer(t)
	g := newGate()
	l, err := Open(context.Background(), Config{Server: srv, Logger: quiet, Shards: 1, hooks: g.hooks()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	g.setShut(true)
	inFlight := make(chan error, 1)
	go func() { _, err := l.Append(ctx, testEvent(objID(1), 1, "in flight"), 0); inFlight <- err }()
	g.nextSize(t)
	const waiting = 5
	errs := make(chan error, waiting)
	for i := range waiting {
		go func() { _, err := l.Append(ctx, testEvent(objID(10+i), 1, "queued"), 0); errs <- err }()
	}
	queued(t, l, 0, waiting)

	closed := make(chan error, 1)
	go func() { closed <- l.Close(ctx) }()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if !l.closed() {
			return errors.New("Close has not begun")
		}
		return nil
	})
	g.pass <- struct{}{}
	if err := <-inFlight; err != nil {
		t.Fatalf("the publish in flight: %v, want it to finish", err)
	}
	for range waiting {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("a queued append: %v, want ErrClosed", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := l.Append(ctx, testEvent(objID(2), 1, "late"), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if _, err := l.Last(ctx, "test", objID(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Last after Close: %v", err)
	}
	if err := l.Scan(ctx, 0, 0, func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Scan after Close: %v", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	noLeak(t)
}

// TestCloseAbandonsPublish: when Close's context ends while a publish is
// in flight, the publish is abandoned and its append fails with ErrClosed.
func TestCloseAbandonsPublish(t *testing.T) {
	srv := startServer(t)
	g := newGate()
	l, err := Open(context.Background(), Config{Server: srv, Logger: quiet, Shards: 1, hooks: g.hooks()})
	if err != nil {
		t.Fatal(err)
	}
	g.setShut(true)
	inFlight := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), testEvent(objID(1), 1, "stuck"), 0)
		inFlight <- err
	}()
	g.nextSize(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want a deadline error", err)
	}
	if err := <-inFlight; !errors.Is(err, ErrClosed) {
		t.Fatalf("the abandoned append: %v, want ErrClosed", err)
	}
	noLeak(t)
}

// TestAppendContextCanceled: an append whose caller gives up while queued
// returns the context's error and is not sent.
func TestAppendContextCanceled(t *testing.T) {
	g := newGate()
	l := openLog(t, startServer(t), Config{Shards: 1, hooks: g.hooks()})
	g.setShut(true)
	plug := make(chan error, 1)
	go func() { _, err := l.Append(context.Background(), testEvent(objID(1), 1, "plug"), 0); plug <- err }()
	g.nextSize(t)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { _, err := l.Append(ctx, testEvent(objID(2), 1, "gone"), 0); gone <- err }()
	queued(t, l, 0, 1)
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled append: %v", err)
	}
	g.setShut(false)
	g.pass <- struct{}{}
	if err := <-plug; err != nil {
		t.Fatal(err)
	}
	// A later append goes out; the canceled one never did.
	if _, err := l.Append(context.Background(), testEvent(objID(3), 1, "after"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Last(context.Background(), "test", objID(2)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the canceled append was stored: %v", err)
	}
	if s := l.Stats(); s.Appends != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// noLeak waits until no goroutine of the log or of its NATS client is
// left. (The embedded server keeps goroutines per stream, so a plain count
// would not do.)
func noLeak(t *testing.T) {
	t.Helper()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "nats-io/nats.go") || strings.Contains(g, "strata/log.(*") {
				return fmt.Errorf("a goroutine is left:\n%s", g)
			}
		}
		return nil
	})
}
