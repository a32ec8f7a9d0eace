package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// hopper calls along a path of hoppers, wherever they live.
type hopper struct{}

type HopIn struct {
	Path    []string      `json:"path,omitempty"`
	Block   bool          `json:"block,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

type HopOut struct {
	Visited []string `json:"visited"`
	Err     string   `json:"err,omitempty"`
}

func (*hopper) Hop(c *objects.Ctx, in HopIn) (HopOut, error) {
	if len(in.Path) == 0 {
		if in.Block {
			<-c.Done()
			return HopOut{}, c.Err()
		}
		return HopOut{Visited: []string{c.Name()}}, nil
	}
	ctx := context.Context(c)
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(c, in.Timeout)
		defer cancel()
	}
	var out HopOut
	if err := c.Object("hopper", in.Path[0]).Call(ctx, "hop", HopIn{Path: in.Path[1:], Block: in.Block}, &out); err != nil {
		if in.Timeout > 0 {
			return HopOut{Err: err.Error()}, nil
		}
		return HopOut{}, err
	}
	out.Visited = append(out.Visited, c.Name())
	return out, nil
}

// Post sends n durable messages to the hopper named to, with replies
// unless plain.
func (*hopper) Post(c *objects.Ctx, in PostIn) error {
	for i := 0; i < in.N; i++ {
		stub := c.Object("hopper", in.To)
		send := func() error { return stub.SendWithReply("take", i, "replied") }
		if in.Plain {
			send = func() error { return stub.Send("take", i) }
		}
		if err := send(); err != nil {
			return err
		}
	}
	return nil
}

type PostIn struct {
	To    string `json:"to"`
	N     int    `json:"n"`
	Plain bool   `json:"plain,omitempty"`
}

// Take appends n to "got" and answers n+100.
func (*hopper) Take(c *objects.Ctx, n int) (int, error) {
	got, _, err := objects.GetJSON[[]int](c.Storage(), "got")
	if err != nil {
		return 0, err
	}
	return n + 100, objects.PutJSON(c.Storage(), "got", append(got, n))
}

// Replied appends the reply's output to "replies".
func (*hopper) Replied(c *objects.Ctx, r objects.Reply) error {
	got, _, err := objects.GetJSON[[]string](c.Storage(), "replies")
	if err != nil {
		return err
	}
	return objects.PutJSON(c.Storage(), "replies", append(got, string(r.Out)))
}

// Get returns the JSON at key.
func (*hopper) Get(c *objects.Ctx, key string) (json.RawMessage, error) {
	v, ok, err := c.Storage().Get(key)
	if !ok {
		return json.RawMessage("null"), err
	}
	return v, err
}

var hopperClass = objects.Define("hopper", func() *hopper { return &hopper{} })

// startCallers starts nodes a and b for calls (startPair).
func startCallers(t *testing.T) (na, nb *member) {
	t.Helper()
	return startPair(t, nil)
}

// startPair starts nodes a and b on one embedded server, whose runtimes
// run hoppers and reach other objects through the router, with their
// configuration then changed by edit (if not nil), and waits until each
// sees both.
func startPair(t *testing.T, edit func(*objects.Config, *member)) (na, nb *member) {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	start := func(name string) *member {
		return startMemberWith(t, srv, name, false, func(oc *objects.Config, m *member) {
			oc.Classes = []*objects.Class{hopperClass}
			oc.Calls, oc.Codec = m.router, jsonCodec{}
			if edit != nil {
				edit(oc, m)
			}
		})
	}
	na, nb = start("a"), start("b")
	deadline := time.Now().Add(20 * time.Second)
	for len(na.router.Nodes()) != 2 || len(nb.router.Nodes()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("views %v and %v, want both nodes", na.router.Nodes(), nb.router.Nodes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return na, nb
}

// hopperOn finds a hopper name that node owns of the nodes.
func hopperOn(t *testing.T, m *member, node string, nodes []string, prefix string) string {
	return objectOn(t, m, "hopper", node, nodes, prefix)
}

// objectOn returns the first name prefix0, prefix1, ... of class that node
// owns among nodes.
func objectOn(t *testing.T, m *member, class, node string, nodes []string, prefix string) string {
	for i := 0; ; i++ {
		name := fmt.Sprint(prefix, i)
		ref, err := m.rt.RefByName(class, name)
		if err != nil {
			t.Fatal(err)
		}
		if cluster.Owner(ref.ID, nodes) == node {
			return name
		}
	}
}

// TestCallsAcrossNodes: a chain a(on a)→b(on b)→c(on a) returns through
// all three, and node b traces it from b's event; a cycle through both nodes fails with call_cycle at once; a
// deadline passed in c is reported in a.
func TestCallsAcrossNodes(t *testing.T) {
	na, nb := startCallers(t)
	nodes := []string{"a", "b"}
	x := hopperOn(t, na, "a", nodes, "x")
	y := hopperOn(t, na, "b", nodes, "y")
	z := hopperOn(t, na, "a", nodes, "z")
	call := func(ctx context.Context, name string, in HopIn) (HopOut, error) {
		ref, err := na.rt.RefByName("hopper", name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(in)
		b, err := na.router.Call(ctx, ref, "hop", body, jsonCodec{}, objects.Cause{})
		if err != nil {
			return HopOut{}, err
		}
		var out HopOut
		return out, json.Unmarshal(b, &out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := nb.router.Status().Stats
	out, err := call(ctx, x, HopIn{Path: []string{y, z}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(out.Visited, ","), strings.Join([]string{z, y, x}, ","); got != want {
		t.Fatalf("visited %s, want %s", got, want)
	}
	if served := nb.router.Status().Stats.Served - before.Served; served < 1 {
		t.Fatalf("b served %d forwarded requests, want the call to y", served)
	}
	// The callee on b names its caller on a.
	rec, err := nb.log.Last(ctx, "hopper", objects.IDFromName("hopper", y))
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Cause.Caller; c == nil || c.ID != objects.IDFromName("hopper", x) {
		t.Fatalf("y's cause names caller %+v, want %s", c, x)
	}
	// Node b traces the chain from y's event, from the log alone: up to x
	// on a, and down to z on a, whose turn wrote nothing (no event).
	tr, err := nb.router.Trace(ctx, objects.Ref{Class: "hopper", ID: objects.IDFromName("hopper", y)}, rec.Event.Version, objects.TraceLimits{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range tr.Nodes {
		got = append(got, fmt.Sprintf("%d<-%d %s %s parts=%d asked=%v missing=%v", n.Index, n.Parent, n.Link, n.Name, len(n.Parts), n.Asked, n.Missing != ""))
	}
	want := []string{
		fmt.Sprintf("0<--1  %s parts=1 asked=false missing=false", x),
		fmt.Sprintf("1<-0 call %s parts=1 asked=true missing=false", y),
		"2<-1 call  parts=0 asked=false missing=true",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("trace from y on node b:\n%v\nwant\n%v", got, want)
	}

	_, err = call(ctx, x, HopIn{Path: []string{y, x}})
	if !errors.Is(err, objects.ErrCallCycle) {
		t.Fatalf("x→y→x across nodes: %v, want ErrCallCycle", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the cycle waited for the deadline")
	}
	out, err = call(ctx, x, HopIn{Path: []string{y, z}, Block: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Err, "deadline exceeded") {
		t.Fatalf("x got %q, want the deadline exceeded in z", out.Err)
	}
	for _, n := range []string{x, y, z} {
		if _, err := call(ctx, n, HopIn{}); err != nil {
			t.Fatalf("%s after the cycle and the deadline: %v", n, err)
		}
	}
}

// TestMessagesAcrossNodes: a sender on node a sends durable messages with
// replies to a target on node b; they apply in order, and the replies come
// back to a.
func TestMessagesAcrossNodes(t *testing.T) {
	na, _ := startCallers(t)
	nodes := []string{"a", "b"}
	s := hopperOn(t, na, "a", nodes, "s")
	r := hopperOn(t, na, "b", nodes, "r")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(name, method string, in any) []byte {
		ref, err := na.rt.RefByName("hopper", name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(in)
		out, err := na.router.Call(ctx, ref, method, body, jsonCodec{}, objects.Cause{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	call(s, "post", PostIn{To: r, N: 5})
	for string(call(s, "get", "replies")) != `["100","101","102","103","104"]` {
		if ctx.Err() != nil {
			t.Fatalf("replies %s, got %s", call(s, "get", "replies"), call(r, "get", "got"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := string(call(r, "get", "got")); got != "[0,1,2,3,4]" {
		t.Fatalf("r took %s", got)
	}
}

// TestLivenessFromOwners: node a reports an object's life as its owner b
// tells it (b's activation, not a's), and objects of both nodes in one
// question.
func TestLivenessFromOwners(t *testing.T) {
	na, _ := startCallers(t)
	nodes := []string{"a", "b"}
	onA, onB := hopperOn(t, na, "a", nodes, "la"), hopperOn(t, na, "b", nodes, "lb")
	ids := []objects.ID{objects.IDFromName("hopper", onA), objects.IDFromName("hopper", onB)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ask := func() []objects.Liveness {
		t.Helper()
		live := na.router.Liveness(ctx, "hopper", ids)
		if len(live) != 2 {
			t.Fatalf("liveness: %v", live)
		}
		return live
	}
	if live := ask(); live[0].Active || live[1].Active || live[0].Unknown || live[1].Unknown {
		t.Fatalf("before any call: %+v", live)
	}
	for _, name := range []string{onA, onB} {
		ref, err := na.rt.RefByName("hopper", name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := na.router.Call(ctx, ref, "hop", []byte(`{}`), jsonCodec{}, objects.Cause{}); err != nil {
			t.Fatal(err)
		}
	}
	if live := ask(); !live[0].Active || !live[1].Active {
		t.Fatalf("after a call to each: %+v, want both active", live)
	}
	// Node a's own runtime does not run b's object: the answer was b's.
	if local := na.rt.Liveness(ctx, "hopper", ids); !local[0].Active || local[1].Active {
		t.Fatalf("a's own view: %+v, want only its object active", local)
	}
}

// TestOutboxFromOwner: node a lists the outbox of a sender that node b
// owns as b has it: a's own snapshot holds none of the sender's events.
// The messages have no reply and the settle delay is long, so they stay
// listed once delivered.
func TestOutboxFromOwner(t *testing.T) {
	na, _ := startPair(t, func(oc *objects.Config, _ *member) { oc.SettleDelay = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := []string{"a", "b"}
	s, r := hopperOn(t, na, "b", nodes, "os"), hopperOn(t, na, "a", nodes, "or")
	ref, err := na.rt.RefByName("hopper", s)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(PostIn{To: r, N: 3, Plain: true})
	if _, err := na.router.Call(ctx, ref, "post", body, jsonCodec{}, objects.Cause{}); err != nil {
		t.Fatal(err)
	}
	for {
		es, err := na.router.Outbox(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 3 {
			for i, e := range es {
				if e.Sender.ID != ref.ID || e.Target.ID != objects.IDFromName("hopper", r) || e.Method != "take" || e.Reply != "" || e.Index != i {
					t.Fatalf("entry %d: %+v", i, e)
				}
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a lists %d messages of b's sender, want 3: %+v", len(es), es)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pending, _, _, err := na.proj.Outbox("hopper", ref.ID); err != nil || len(pending) != 0 {
		t.Fatalf("a's own snapshot lists %+v (%v): the answer above was not b's", pending, err)
	}
	if na.rt.IsActive(ref) {
		t.Fatal("the sender is active on a: the listing moved it")
	}
}

// TestDeadLettersFromEveryNode: node a lists the dead letters of the whole
// cluster, its own sender's and those of a sender only node b ran (a's
// snapshot holds none of them), and retries them all; each is delivered
// once, and none is left dead.
func TestDeadLettersFromEveryNode(t *testing.T) {
	na, _ := startPair(t, func(oc *objects.Config, _ *member) {
		oc.Classes = []*objects.Class{stuckClass}
		oc.MessageBackoff = time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := []string{"a", "b"}
	ref := func(name string) objects.Ref {
		r, err := na.rt.RefByName("stuck", name)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	stuckDown.Store(true)
	defer stuckDown.Store(false)
	var targets []objects.Ref
	senders := map[objects.ID]string{}
	for _, node := range nodes {
		s, r := objectOn(t, na, "stuck", node, nodes, "dl-s-"+node), objectOn(t, na, "stuck", node, nodes, "dl-t-"+node)
		in, _ := json.Marshal(r)
		if _, err := na.router.Call(ctx, ref(s), "post", in, jsonCodec{}, objects.Cause{}); err != nil {
			t.Fatal(err)
		}
		senders[ref(s).ID], targets = node, append(targets, ref(r))
	}
	var dead []objects.OutboxEntry
	var err error
	for len(dead) != 2 {
		if dead, err = na.router.AllDeadLetters(ctx, 100); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("a lists %d dead letters, want 2: %+v", len(dead), dead)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, e := range dead {
		if _, ok := senders[e.Sender.ID]; !ok || !e.Dead || e.Method != "take" {
			t.Fatalf("dead letter %+v", e)
		}
	}
	local, err := na.rt.DeadSenders(ctx, 100)
	if err != nil || len(local) != 1 || senders[local[0].ID] != "a" {
		t.Fatalf("a's own snapshot names %v (%v), want only a's sender: the list above was not the cluster's", local, err)
	}
	stuckDown.Store(false)
	if n, err := na.router.RetryAllDead(ctx); err != nil || n != 2 {
		t.Fatalf("retried %d (%v), want 2", n, err)
	}
	for _, target := range targets {
		waitGot(ctx, t, na, target)
	}
	if dead, err = na.router.AllDeadLetters(ctx, 100); err != nil || len(dead) != 0 {
		t.Fatalf("after the retry: %+v (%v), want no dead letters", dead, err)
	}
}

// crossing holds two crossers' turns until both run
// (TestCallCycleThroughTwoNodes).
var crossing struct {
	entered chan string
	proceed chan struct{}
}

// crosser's Cross, once both crossers' turns run, calls the other's Name.
type crosser struct{}

func (*crosser) Cross(c *objects.Ctx, other string) (string, error) {
	crossing.entered <- c.Name()
	<-crossing.proceed
	var out string
	if err := c.Object("crosser", other).Call(c, "name", nil, &out); err != nil {
		return "", err
	}
	return out, nil
}

func (*crosser) Name(c *objects.Ctx) (string, error) { return c.Name(), nil }

var crosserClass = objects.Define("crosser", func() *crosser { return &crosser{} })

// TestCallCycleThroughTwoNodes: x on node a calls y on node b in one
// request while y calls x in another. Each node refuses the call that
// arrives for its object when that object waits on the caller: the calls
// fail at once with call_cycle instead of both waiting for their deadline.
func TestCallCycleThroughTwoNodes(t *testing.T) {
	na, nb := startPair(t, func(oc *objects.Config, _ *member) {
		oc.Classes = []*objects.Class{crosserClass}
	})
	nodes := []string{"a", "b"}
	x, y := objectOn(t, na, "crosser", "a", nodes, "x"), objectOn(t, na, "crosser", "b", nodes, "y")
	crossing.entered, crossing.proceed = make(chan string, 2), make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type answer struct {
		out string
		err error
	}
	answers := make(chan answer, 2)
	for _, p := range []struct {
		m           *member
		from, other string
	}{{na, x, y}, {nb, y, x}} {
		go func() {
			ref, err := p.m.rt.RefByName("crosser", p.from)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			in, _ := json.Marshal(p.other)
			out, err := p.m.router.Call(ctx, ref, "cross", in, jsonCodec{}, objects.Cause{})
			answers <- answer{string(out), err}
		}()
	}
	for range 2 {
		select {
		case <-crossing.entered:
		case <-ctx.Done():
			t.Fatal("the two turns did not both start")
		}
	}
	close(crossing.proceed)
	cycles := 0
	for range 2 {
		a := <-answers
		switch {
		case errors.Is(a.err, objects.ErrCallCycle):
			cycles++
		case a.err != nil:
			t.Errorf("%q, %v: want an answer or call_cycle", a.out, a.err)
		}
	}
	if cycles == 0 {
		t.Fatal("no call was refused as a cycle")
	}
	if ctx.Err() != nil {
		t.Fatal("the calls waited for their deadline")
	}
}
