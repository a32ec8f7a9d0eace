package objects

import (
	"context"
	"fmt"
	"testing"

	"github.com/strata-objects/strata/projector"
)

// TestCatchUp: a snapshot that missed events (here: all of them) gets
// every one from the log at start, and a second catch-up reads nothing.
func TestCatchUpFromWatermark(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 10; i++ {
		h.must(fmt.Sprint("c", i%3), put(fmt.Sprint("k", i), "v"))
	}
	h.flush()
	fresh, err := projector.Open(projector.Config{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	ctx := context.Background()
	n, err := CatchUp(ctx, h.log, fresh, nil)
	if err != nil || n != 10 {
		t.Fatalf("catch-up read %d events (%v), want 10", n, err)
	}
	if live, got := dump(t, h.proj), dump(t, fresh); !bytesHavePrefix(got, live) {
		t.Fatal("caught-up snapshot differs from the live one")
	}
	if n, err := CatchUp(ctx, h.log, fresh, nil); err != nil || n != 0 {
		t.Fatalf("second catch-up read %d events (%v), want 0", n, err)
	}
	h.must("c0", put("later", "v"))
	if n, _ := CatchUp(ctx, h.log, fresh, nil); n != 1 {
		t.Fatalf("catch-up after one more event read %d", n)
	}
}

// bytesHavePrefix compares dumps without the watermark keys, which only
// the caught-up snapshot has ('w' sorts after 'd', 'm' and 'a').
func bytesHavePrefix(withWatermarks, live []byte) bool {
	return len(withWatermarks) >= len(live) && string(withWatermarks[:len(live)]) == string(live)
}
