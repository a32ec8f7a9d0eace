package objects

import (
	"context"
	"fmt"
	"testing"

	"github.com/strata-objects/strata/history"
)

// TestTraceFollowsReplies: s sends r a message with a reply; the trace
// from s's sending event and from s's reply event is the same tree: s's
// send, r's turn (the message), and s's reply turn under r's.
func TestTraceFollowsReplies(t *testing.T) {
	m := newMsgHarness(t)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 4, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	s, r := m.ref("inbox", "s"), m.ref("inbox", "r")
	for _, v := range []uint64{1, 2} {
		tr, err := m.rt.Trace(context.Background(), s, v, history.TraceLimits{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range tr.Nodes {
			var versions []uint64
			for _, p := range n.Parts {
				versions = append(versions, p.Version)
			}
			got = append(got, fmt.Sprintf("%d<-%d %s %s.%s %v asked=%v", n.Index, n.Parent, n.Link, n.ID.String()[:6], n.Method, versions, n.Asked))
		}
		want := []string{
			fmt.Sprintf("0<--1  %s.send [1] asked=%v", s.ID.String()[:6], v == 1),
			fmt.Sprintf("1<-0 message %s.take [1] asked=false", r.ID.String()[:6]),
			fmt.Sprintf("2<-1 reply %s.replied [2] asked=%v", s.ID.String()[:6], v == 2),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(tr.Notes) != 0 {
			t.Fatalf("trace from s v%d:\n%v\nwant\n%v\nnotes %v", v, got, want, tr.Notes)
		}
		if c := tr.Nodes[2].Parts[0].Record.Changes; len(c) != 1 || c[0].Key != "replies" {
			t.Fatalf("the reply's changes %+v", c)
		}
	}
}
