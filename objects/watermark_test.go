package objects

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// With TrackWatermarks, a node's shard watermarks follow the projector
// while it runs: a restart that missed the graceful stop (no
// MarkCaughtUp) replays only what was not yet settled, not every event
// since the last start (issue 15).
func TestWatermarksAdvanceWhileRunning(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	l, err := log.Open(ctx, log.Config{Server: srv, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	dir := t.TempDir()
	var rt *Runtime
	openProj := func() *projector.Projector {
		p, err := projector.Open(projector.Config{Dir: dir, Logger: quiet, Log: l, TrackWatermarks: true, OnApplied: func(b []projector.Applied) {
			if rt != nil {
				rt.OnApplied(b)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := openProj()
	if n, err := CatchUp(ctx, l, p, nil); err != nil || n != 0 {
		t.Fatalf("first catch-up: %d events, %v", n, err)
	}
	rt, err = New(Config{Log: l, Projector: p, Classes: testClasses(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: l, proj: p, rt: rt}
	const objects, each = 20, 5
	for i := 0; i < objects; i++ {
		for j := 0; j < each; j++ {
			if _, err := h.add(ctx, fmt.Sprint("w", i), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every shard's watermark reaches its log's end without a stop.
	waitFor(t, "watermarks at the log's end", func() bool {
		for shard := 0; shard < l.Shards(); shard++ {
			last, err := l.LastSeq(ctx, shard)
			if err != nil {
				t.Fatal(err)
			}
			w, err := p.Watermark(shard)
			if err != nil {
				t.Fatal(err)
			}
			if w != last {
				return false
			}
		}
		return true
	})
	// Stop as a crash would: nothing marks the log caught up.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rt.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(cctx); err != nil {
		t.Fatal(err)
	}
	rt = nil
	p = openProj()
	t.Cleanup(func() { p.Close(context.Background()) })
	n, err := CatchUp(ctx, l, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("restart replayed %d of %d events; the watermarks were at the log's end", n, objects*each)
	}
}
