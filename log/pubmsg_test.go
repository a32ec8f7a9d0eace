package log

import (
	"context"
	"reflect"
	"testing"
)

// TestPipelinedMessageReused: a pipelined publish fills the committer's one
// message (fillMessage) with each append's subject, id and expectation,
// and lets go of the event's bytes once the pipeline is answered, so an
// idle committer holds no event.
func TestPipelinedMessageReused(t *testing.T) {
	l := openLog(t, startServer(t), Config{Shards: 1})
	c := l.committers[0]
	ctx := context.Background()
	var hdr uintptr
	for i := range 2 {
		id := objID(i)
		var expect uint64
		for v := uint64(1); v <= 3; v++ {
			rec, err := l.Append(ctx, testEvent(id, v, "x"), expect)
			if err != nil {
				t.Fatalf("append %x v%d expecting %d: %v", id[:4], v, expect, err)
			}
			expect = rec.Seq
			m := &c.pubMsg
			if m.Data != nil {
				t.Fatalf("after v%d the committer still holds %d bytes of event", v, len(m.Data))
			}
			if len(m.Header) != 2 || m.Header.Get(hdrExpectSubj) == "" || m.Header.Get(hdrMsgID) == "" {
				t.Fatalf("after v%d the committer's message has headers %v, want its id and expectation", v, m.Header)
			}
			p := reflect.ValueOf(m.Header).UnsafePointer()
			if hdr != 0 && uintptr(p) != hdr {
				t.Fatalf("after v%d the header map was replaced", v)
			}
			hdr = uintptr(p)
		}
		last, err := l.Last(ctx, "test", id)
		if err != nil {
			t.Fatal(err)
		}
		if last.Seq != expect || last.Event.Version != 3 {
			t.Fatalf("last of %x: v%d at %d, want v3 at %d", id[:4], last.Event.Version, last.Seq, expect)
		}
	}
}
