package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/objects"
)

// traceLine is what a test reads of one line of GET …/trace.
type traceLine struct {
	Index, Parent, Depth int
	Link, Class, ID      string
	Name, Method         string
	Asked                bool
	Missing              string
	Events               []struct {
		Version uint64
		Via     string
		Caller  *struct {
			Class, ID string
			Version   uint64
			Kind      string
		}
		Calls   []struct{ Class, ID, Method string }
		Sends   []struct{ Class, ID, Method string }
		Changes []struct {
			Op, Key  string
			Old, New json.RawMessage
		}
	}
	Notes []string
}

func (f *fixture) trace(path string) (int, []traceLine, string) {
	f.t.Helper()
	code, body, _ := f.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		return code, nil, body
	}
	var lines []traceLine
	for _, l := range strings.Split(body, "\n") {
		var tl traceLine
		if err := json.Unmarshal([]byte(l), &tl); err != nil {
			f.t.Fatalf("trace line %q: %v", l, err)
		}
		lines = append(lines, tl)
	}
	return code, lines, body
}

// wantChain checks a trace is the chain names[0] → names[1] → … of relay
// objects, each hop linked by link, each counting one hop, with the
// object asked marked.
func wantChain(t *testing.T, lines []traceLine, body, link string, asked string, names ...string) {
	t.Helper()
	if len(lines) != len(names) {
		t.Fatalf("trace of %d lines, want %d (%v):\n%s", len(lines), len(names), names, body)
	}
	for i, l := range lines {
		id := objects.IDFromName("relay", names[i]).String()
		wantLink := link
		if i == 0 {
			wantLink = ""
		}
		switch {
		case l.Index != i || l.Parent != i-1 || l.Depth != i || l.Link != wantLink:
			t.Fatalf("line %d: index %d parent %d depth %d link %q, want %d %d %d %q:\n%s", i, l.Index, l.Parent, l.Depth, l.Link, i, i-1, i, wantLink, body)
		// A message carries its target's id, not its name: a target
		// first written by a message has no name in its log.
		case l.Class != "relay" || l.ID != id || l.Name != names[i] && !(link == "message" && l.Name == "") || l.Method != "hop":
			t.Fatalf("line %d: %s/%s %q .%s, want relay %s:\n%s", i, l.Class, l.ID, l.Name, l.Method, names[i], body)
		case l.Asked != (names[i] == asked):
			t.Fatalf("line %d: asked %v, want the trace asked of %s:\n%s", i, l.Asked, asked, body)
		case len(l.Events) == 0:
			t.Fatalf("line %d: no events:\n%s", i, body)
		}
		last := l.Events[len(l.Events)-1]
		if c := l.Events[0].Caller; i == 0 && c != nil || i > 0 && (c == nil || c.ID != lines[i-1].ID) {
			t.Fatalf("line %d: caller %+v, want the line before's object:\n%s", i, c, body)
		}
		var hops []string
		for _, e := range l.Events {
			for _, c := range e.Changes {
				hops = append(hops, fmt.Sprintf("%s %s %s→%s", c.Op, c.Key, c.Old, c.New))
			}
		}
		if len(hops) != 1 || hops[0] != "put hops →1" {
			t.Fatalf("line %d: changes %v, want hops set to 1:\n%s", i, hops, body)
		}
		if i+1 < len(names) {
			next := objects.IDFromName("relay", names[i+1]).String()
			if link == "call" && (len(last.Calls) != 1 || last.Calls[0].ID != next) || link == "message" && (len(last.Sends) != 1 || last.Sends[0].ID != next) {
				t.Fatalf("line %d: calls %v sends %v, want one %s to %s:\n%s", i, last.Calls, last.Sends, link, names[i+1], body)
			}
		}
	}
}

// TestTraceCalls: a request to a that calls b, which calls c, is traced
// from a's event (down) and from c's (up to the root, then down), with
// each object's cause and changes.
func TestTraceCalls(t *testing.T) {
	f := start(t)
	if code, body := f.post("/v1/objects/relay/a/rpc/hop", `{"path":["b","c"]}`); code != 200 || body != `{"hops":1}` {
		t.Fatalf("hop: %d %s", code, body)
	}
	_, lines, body := f.trace("/v1/objects/relay/a/trace?version=1")
	wantChain(t, lines, body, "call", "a", "a", "b", "c")
	_, lines, body = f.trace("/v1/objects/relay/c/trace?version=1")
	wantChain(t, lines, body, "call", "c", "a", "b", "c")
	// By id, too.
	_, lines, body = f.trace("/v1/objects/relay/id/" + objects.IDFromName("relay", "b").String() + "/trace?version=1")
	wantChain(t, lines, body, "call", "b", "a", "b", "c")
}

// TestTraceMessages: the same chain by durable messages, traced once c
// has run its message.
func TestTraceMessages(t *testing.T) {
	f := start(t)
	if code, body := f.post("/v1/objects/relay/ma/rpc/hop", `{"path":["mb","mc"],"by":"message"}`); code != 200 {
		t.Fatalf("hop: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, body := f.post("/v1/objects/relay/mc/rpc/get", ``); body == `{"hops":1}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the message never reached mc")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
	_, lines, body := f.trace("/v1/objects/relay/ma/trace?version=1")
	wantChain(t, lines, body, "message", "ma", "ma", "mb", "mc")
	_, lines, body = f.trace("/v1/objects/relay/mc/trace?version=1")
	wantChain(t, lines, body, "message", "mc", "ma", "mb", "mc")
}

// TestTraceSplitTurn: a turn that writes before it calls is two events
// (the call is a commit point); the trace shows both as one node.
func TestTraceSplitTurn(t *testing.T) {
	f := start(t)
	if code, body := f.post("/v1/objects/relay/wa/rpc/hop", `{"path":["wb"],"write_first":true}`); code != 200 {
		t.Fatalf("hop: %d %s", code, body)
	}
	for _, from := range []string{"wa/trace?version=1", "wa/trace?version=2", "wb/trace?version=1"} {
		_, lines, body := f.trace("/v1/objects/relay/" + from)
		if len(lines) != 2 || len(lines[0].Events) != 2 || lines[0].Events[0].Version != 1 || lines[0].Events[1].Version != 2 || len(lines[1].Events) != 1 {
			t.Fatalf("trace from %s, want wa's two events then wb's one:\n%s", from, body)
		}
		wantChain(t, lines, body, "call", strings.Split(from, "/")[0], "wa", "wb")
	}
}

// TestTraceEdges: an event no object caused and that caused nothing is
// its own trace; a call that wrote nothing shows as missing; unknown
// objects and versions are 404, bad versions 400.
func TestTraceEdges(t *testing.T) {
	f := start(t)
	if code, body := f.post("/v1/objects/relay/solo/rpc/hop", `{}`); code != 200 {
		t.Fatalf("hop: %d %s", code, body)
	}
	_, lines, body := f.trace("/v1/objects/relay/solo/trace?version=1")
	wantChain(t, lines, body, "", "solo", "solo")

	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/objects/relay/solo/trace?version=2", 404, "no_event"},
		{"/v1/objects/relay/nobody/trace?version=1", 404, "no_event"},
		{"/v1/objects/nosuch/solo/trace?version=1", 404, "unknown_class"},
		{"/v1/objects/relay/solo/trace", 400, "bad_input"},
		{"/v1/objects/relay/solo/trace?version=0", 400, "bad_input"},
		{"/v1/objects/relay/solo/trace?version=x", 400, "bad_input"},
		{"/v1/objects/relay/solo/trace/more?version=1", 405, "method_not_allowed"},
	} {
		code, body, _ := f.do(http.MethodGet, c.path, "")
		if code != c.code || !strings.Contains(body, `"code":"`+c.want+`"`) {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, code, body, c.code, c.want)
		}
	}
	if code, body, _ := f.do(http.MethodPost, "/v1/objects/relay/solo/trace?version=1", ""); code != 405 {
		t.Errorf("POST trace: %d %s, want 405", code, body)
	}
	// The object is unchanged by all of it.
	if code, body := f.post("/v1/objects/relay/solo/rpc/get", ``); code != 200 || body != `{"hops":1}` {
		t.Fatalf("solo after the bad traces: %d %s", code, body)
	}
}
