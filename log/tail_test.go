package log

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestTail: a tail sees events committed after it started, of its class
// only, across shards, and none from before.
func TestTail(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 3})
	ctx := context.Background()
	appendOne := func(class string, i int) {
		e := benchEvent(objID(i), 1)
		e.Class = class
		if _, err := l.Append(ctx, e, 0); err != nil {
			t.Fatal(err)
		}
	}
	appendOne("test", 1000) // before the tail: not seen
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := make(chan Record, 100)
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- l.Tail(tctx, "test", func() { close(ready) }, func(r Record) error {
			got <- r
			if len(got) == 10 {
				return errors.New("enough")
			}
			return nil
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("tail ended before it was ready: %v", err)
	}
	// Every event acknowledged after ready is delivered: exactly ten writes
	// of the class, the first one right away.
	for i := 0; i < 10; i++ {
		appendOne("test", i)
		appendOne("other", 2000+i)
	}
	if err := <-done; err == nil || err.Error() != "enough" {
		t.Fatalf("tail ended with %v", err)
	}
	close(got)
	for r := range got {
		if r.Event.Class != "test" || r.Event.ID == objID(1000) {
			t.Fatalf("tail delivered %s %s", r.Event.Class, r.Event.ID)
		}
	}
}
