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
	go func() {
		done <- l.Tail(tctx, "test", func(r Record) error {
			got <- r
			if len(got) == 10 {
				return errors.New("enough")
			}
			return nil
		})
	}()
	// The consumers start asynchronously: keep writing until ten arrive.
	for i := 0; ; i++ {
		appendOne("other", 2000+i)
		appendOne("test", i)
		select {
		case err := <-done:
			if err == nil || err.Error() != "enough" {
				t.Fatalf("tail ended with %v", err)
			}
			close(got)
			for r := range got {
				if r.Event.Class != "test" || r.Event.ID == objID(1000) {
					t.Fatalf("tail delivered %s %s", r.Event.Class, r.Event.ID)
				}
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if i > 500 {
			t.Fatal("tail delivered fewer than 10 events")
		}
	}
}
