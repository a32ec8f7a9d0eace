package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// relay is a test class that calls along a path of relay objects.
type relay struct{}

// RelayIn: Path is the names still to call, in order; the last object
// waits for its context to end if Block is set. Put is written before the
// call (so the commit point has something to make durable). Timeout, if
// set, is the deadline the first caller gives its call.
type RelayIn struct {
	Path    []string      `json:"path,omitempty"`
	Block   bool          `json:"block,omitempty"`
	Put     string        `json:"put,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Method  string        `json:"method,omitempty"` // default "relay"
	Class   string        `json:"class,omitempty"`  // default "relay"
	InTx    bool          `json:"in_tx,omitempty"`  // call from inside Storage.Transaction
	Fail    bool          `json:"fail,omitempty"`   // fail the turn after a successful call
}

// RelayOut lists the objects that answered, the deepest first; Err is the
// error of the call this object made, if it kept going despite it.
type RelayOut struct {
	Visited []string `json:"visited"`
	Err     string   `json:"err,omitempty"`
}

func (*relay) Relay(c *Ctx, in RelayIn) (RelayOut, error) {
	if in.Put != "" {
		if err := c.Storage().Put("k", []byte(in.Put)); err != nil {
			return RelayOut{}, err
		}
	}
	if len(in.Path) == 0 {
		if in.Block {
			<-c.Done()
			return RelayOut{}, c.Err()
		}
		return RelayOut{Visited: []string{c.Name()}}, nil
	}
	next := RelayIn{Path: in.Path[1:], Block: in.Block}
	ctx := context.Context(c)
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(c, in.Timeout)
		defer cancel()
	}
	class, method := "relay", "relay"
	if in.Class != "" {
		class = in.Class
	}
	if in.Method != "" {
		method = in.Method
	}
	var out RelayOut
	call := func() error { return c.Object(class, in.Path[0]).Call(ctx, method, next, &out) }
	var err error
	if in.InTx {
		err = c.Storage().Transaction(func(*Storage) error { return call() })
	} else {
		err = call()
	}
	if err != nil {
		if in.Timeout > 0 { // the first caller reports what its call met
			return RelayOut{Visited: []string{c.Name()}, Err: err.Error()}, nil
		}
		return RelayOut{}, err
	}
	if in.Fail {
		return RelayOut{}, Errorf(409, "failed_after_call", "failed after the call")
	}
	out.Visited = append(out.Visited, c.Name())
	return out, nil
}

// Read returns the value at "k".
func (*relay) Read(c *Ctx) (string, error) {
	v, _, err := c.Storage().Get("k")
	return string(v), err
}

func withRelay(c *Config) {
	c.Classes = append(c.Classes, Define("relay", func() *relay { return &relay{} }))
}

func relayCall(h *harness, ctx context.Context, name string, in RelayIn) (RelayOut, error) {
	body, _ := json.Marshal(in)
	b, err := h.rt.Call(ctx, h.ref("relay", name), "relay", body, jsonCodec{}, Cause{RequestID: "req-" + name})
	if err != nil {
		return RelayOut{}, err
	}
	var out RelayOut
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatal(err)
	}
	return out, nil
}

// TestCallChain: A→B→C returns through all three, and each callee's event
// names its caller, whose event records the call.
func TestCallChain(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx := context.Background()
	out, err := relayCall(h, ctx, "a", RelayIn{Path: []string{"b", "c"}, Put: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.Visited, ","); got != "c,b,a" {
		t.Fatalf("visited %s, want c,b,a", got)
	}
	// a wrote at v1 (its commit point), recorded its call at v2; b made no
	// write but its call is recorded at v1; c wrote nothing and called
	// nobody: no event.
	for _, want := range []struct {
		name string
		v    uint64
	}{{"a", 2}, {"b", 1}, {"c", 0}} {
		if v := h.lastVersion("relay", want.name); v != want.v {
			t.Fatalf("%s is at version %d, want %d", want.name, v, want.v)
		}
	}
	recA, err := h.log.Last(ctx, "relay", IDFromName("relay", "a"))
	if err != nil {
		t.Fatal(err)
	}
	calls := recA.Event.Turns[0].Calls
	if len(calls) != 1 || calls[0].ID != IDFromName("relay", "b") || calls[0].Method != "relay" || calls[0].Error != "" {
		t.Fatalf("a's v2 records calls %+v, want one to b", calls)
	}
	recB, err := h.log.Last(ctx, "relay", IDFromName("relay", "b"))
	if err != nil {
		t.Fatal(err)
	}
	cause := recB.Event.Turns[0].Cause
	want := log.Caller{Class: "relay", ID: IDFromName("relay", "a"), Version: 2}
	if cause.Caller == nil || *cause.Caller != want {
		t.Fatalf("b's cause names caller %+v, want %+v", cause.Caller, want)
	}
	if cause.RequestID != "req-a" || cause.Method != "relay" || cause.Via != ViaRPC {
		t.Fatalf("b's cause %+v: want a's request id, method relay, via rpc", cause)
	}
	if c := recB.Event.Turns[0].Calls; len(c) != 1 || c[0].ID != IDFromName("relay", "c") {
		t.Fatalf("b records calls %+v, want one to c", c)
	}
}

// TestCallCycle: A→B→A fails at once with ErrCallCycle (no deadline is
// spent), and neither object is left blocked. A self-call is a cycle too.
func TestCallCycle(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := relayCall(h, ctx, "a", RelayIn{Path: []string{"b", "a"}})
	if !errors.Is(err, ErrCallCycle) {
		t.Fatalf("A→B→A: %v, want ErrCallCycle", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the cycle waited for the deadline")
	}
	if _, err := relayCall(h, ctx, "a", RelayIn{Path: []string{"a"}}); !errors.Is(err, ErrCallCycle) {
		t.Fatalf("A→A: %v, want ErrCallCycle", err)
	}
	for _, n := range []string{"a", "b"} {
		if out, err := relayCall(h, ctx, n, RelayIn{}); err != nil || len(out.Visited) != 1 {
			t.Fatalf("%s after the cycle: %+v, %v", n, out, err)
		}
	}
	// b's call, refused before it left, is no call; a's failed, and a's
	// record names the code.
	if v := h.lastVersion("relay", "b"); v != 0 {
		t.Fatalf("b is at version %d, want 0", v)
	}
	rec, err := h.log.Last(ctx, "relay", IDFromName("relay", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Calls; len(c) != 1 || c[0].Error != "call_cycle" {
		t.Fatalf("a recorded %+v, want its call to b failed with call_cycle", c)
	}
}

// TestCallDepth: a chain of CallDepthMax objects cannot call further.
func TestCallDepth(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx := context.Background()
	path := make([]string, CallDepthMax)
	for i := range path {
		path[i] = fmt.Sprint("d", i+1)
	}
	if _, err := relayCall(h, ctx, "d0", RelayIn{Path: path[:CallDepthMax-1]}); err != nil {
		t.Fatalf("a chain of %d objects: %v", CallDepthMax, err)
	}
	if _, err := relayCall(h, ctx, "d0", RelayIn{Path: path}); !errors.Is(err, ErrCallDepth) {
		t.Fatalf("a chain of %d objects: %v, want ErrCallDepth", CallDepthMax+1, err)
	}
}

// TestCallDeadline: a deadline A gives its call passes while C waits; A
// sees context.DeadlineExceeded, and every object serves again.
func TestCallDeadline(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx := context.Background()
	out, err := relayCall(h, ctx, "a", RelayIn{Path: []string{"b", "c"}, Block: true, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Err, context.DeadlineExceeded.Error()) {
		t.Fatalf("A got %q, want the deadline exceeded in C", out.Err)
	}
	for _, n := range []string{"b", "c"} {
		if _, err := relayCall(h, ctx, n, RelayIn{}); err != nil {
			t.Fatalf("%s after the deadline: %v", n, err)
		}
	}
}

// TestCallOutputGate: the call leaves only once the caller's write is
// acknowledged. A's append is stalled by a hook; while it is, the call has
// not left (the Calling hook has not run) and B has run nothing.
func TestCallOutputGate(t *testing.T) {
	stalled, release := make(chan struct{}), make(chan struct{})
	var acked, ackedAtCall atomic.Uint64
	var calls atomic.Int64
	aID := IDFromName("relay", "a")
	h := newHarness(t, withRelay, func(c *Config) {
		c.Hooks.BeforeAppend = func(class string, id ID, v uint64) {
			if id == aID && v == 1 {
				close(stalled)
				<-release
			}
		}
		c.Hooks.Acked = func(class string, id ID, v, _ uint64) {
			if id == aID {
				acked.Store(v)
			}
		}
		c.Hooks.Calling = func(class string, id ID, _ Ref) {
			if id == aID {
				ackedAtCall.Store(acked.Load())
				calls.Add(1)
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := relayCall(h, context.Background(), "a", RelayIn{Path: []string{"b"}, Put: "durable"})
		done <- err
	}()
	<-stalled
	// The append of a's write is held; give the call every chance to leave.
	for range 20 {
		time.Sleep(5 * time.Millisecond)
		if calls.Load() != 0 || h.lastVersion("relay", "b") != 0 {
			t.Fatal("the call left before the caller's write was durable")
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || ackedAtCall.Load() != 1 {
		t.Fatalf("calls %d, a's acked version when the call left %d: want 1 and 1", calls.Load(), ackedAtCall.Load())
	}
}

// TestCallBadInput: an unknown class or method, or an oversize input, is
// refused before the call leaves, and the turn that returns the error
// keeps nothing.
func TestCallBadInput(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx := context.Background()
	for _, c := range []struct {
		in   RelayIn
		want error
	}{
		{RelayIn{Path: []string{"b"}, Put: "x", Class: "nope"}, ErrUnknownClass},
		{RelayIn{Path: []string{"b"}, Put: "x", Method: "nope"}, ErrUnknownMethod},
		{RelayIn{Path: []string{"b"}, Put: "x", Class: "Bad!"}, ErrInvalidClass},
		{RelayIn{Path: []string{""}, Put: "x"}, ErrInvalidName},
		{RelayIn{Path: []string{strings.Repeat("b", CallInputBytesMax)}, Put: "x"}, ErrInvalidName},
		{RelayIn{Path: []string{"b", strings.Repeat("b", CallInputBytesMax)}, Put: "x"}, ErrTooLarge},
		{RelayIn{Path: []string{"b"}, Put: "x", InTx: true}, ErrCallInTransaction},
	} {
		if _, err := relayCall(h, ctx, "a", c.in); !errors.Is(err, c.want) {
			t.Fatalf("%.80v: %v, want %v", c.in, err, c.want)
		}
	}
	if v := h.lastVersion("relay", "a"); v != 0 {
		t.Fatalf("a is at version %d after refused calls, want 0", v)
	}
	if v := h.lastVersion("relay", "b"); v != 0 {
		t.Fatalf("b is at version %d, want 0: nothing reached it", v)
	}
}

// TestCallFailedTurnRecordsCall: a turn that fails after a call keeps no
// write of its own (but the commit point's), and records the call.
func TestCallFailedTurnRecordsCall(t *testing.T) {
	h := newHarness(t, withRelay)
	ctx := context.Background()
	if _, err := relayCall(h, ctx, "a", RelayIn{Path: []string{"b"}, Put: "x", Fail: true}); err == nil {
		t.Fatal("the turn did not fail")
	}
	// v1: the write made durable by the commit point; v2: the call.
	rec, err := h.log.Last(ctx, "relay", IDFromName("relay", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Event.Version != 2 || len(rec.Event.Turns[0].Calls) != 1 || len(rec.Event.Turns[0].Writes) != 0 {
		t.Fatalf("a's last event %+v: want v2 with the call and no write", rec.Event)
	}
}

// crossing holds two turns until both run (TestCallCycleAcrossRequests).
var crossing struct {
	entered chan string
	proceed chan struct{}
}

// crosser's Cross, once both crossers' turns run, calls the other's Name
// (other: a crosser's name, or "class/name").
type crosser struct{}

func (*crosser) Cross(c *Ctx, other string) (string, error) {
	crossing.entered <- c.Name()
	<-crossing.proceed
	class, name, ok := strings.Cut(other, "/")
	if !ok {
		class, name = "crosser", other
	}
	var out string
	if err := c.Object(class, name).Call(c, "name", nil, &out); err != nil {
		return "", err
	}
	return out, nil
}

func (*crosser) Name(c *Ctx) (string, error) { return c.Name(), nil }

func (*fanner) Name(c *Ctx) (string, error) { return c.Name(), nil }

// TestCallCycleAcrossRequests: A calls B in one request while B calls A in
// another. Neither chain holds the other object, but each turn waits on
// the other: the second call to leave fails at once with ErrCallCycle,
// and the first is answered, instead of both waiting for their deadline.
func TestCallCycleAcrossRequests(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("crosser", func() *crosser { return &crosser{} }))
	})
	crossing.entered, crossing.proceed = make(chan string, 2), make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type answer struct {
		name, got string
		err       error
	}
	answers := make(chan answer, 2)
	for _, p := range [][2]string{{"a", "b"}, {"b", "a"}} {
		go func() {
			in, _ := json.Marshal(p[1])
			out, err := h.rt.Call(ctx, h.ref("crosser", p[0]), "cross", in, jsonCodec{}, Cause{})
			answers <- answer{p[0], string(out), err}
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
	var cycles, answered int
	for range 2 {
		a := <-answers
		switch {
		case errors.Is(a.err, ErrCallCycle):
			cycles++
		case a.err == nil && a.got == `"`+map[string]string{"a": "b", "b": "a"}[a.name]+`"`:
			answered++
		default:
			t.Errorf("%s: %q, %v", a.name, a.got, a.err)
		}
	}
	if cycles != 1 || answered != 1 {
		t.Fatalf("%d cycles and %d answers, want one of each", cycles, answered)
	}
	if ctx.Err() != nil {
		t.Fatal("the calls waited for their deadline")
	}
}

// fanning: the fanner's turn says when its call to c has been answered
// while its call to b still waits (TestCallCycleWithConcurrentCalls).
var fanning struct {
	calling chan Ref // the callees whose calls left, from the Calling hook
	fanned  chan struct{}
}

// fanner's Fan calls b's Name from another goroutine, then, once that
// call has left, c's Name, and then waits for b's answer.
type fanner struct{}

type FanIn struct{ B, C string }

func (*fanner) Fan(c *Ctx, in FanIn) (string, error) {
	got := make(chan error, 1)
	go func() {
		var out string
		got <- c.Object("crosser", in.B).Call(c, "name", nil, &out)
	}()
	for r := range fanning.calling {
		if r.Name == in.B {
			break
		}
	}
	var out string
	if err := c.Object("crosser", in.C).Call(c, "name", nil, &out); err != nil {
		return "", err
	}
	fanning.fanned <- struct{}{}
	if err := <-got; err != nil {
		return "", err
	}
	return out, nil
}

// TestCallCycleWithConcurrentCalls: a's turn calls b and c at once; c
// answers while b is busy in a turn (another request) that then calls a.
// a still waits on b, so b's call is refused as a cycle at once, and a's
// call to b is then answered; a turn's waits are one per call, not one per
// turn.
func TestCallCycleWithConcurrentCalls(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes,
			Define("crosser", func() *crosser { return &crosser{} }),
			Define("fanner", func() *fanner { return &fanner{} }))
		c.Hooks.Calling = func(class string, _ ID, callee Ref) {
			if class == "fanner" {
				fanning.calling <- callee
			}
		}
	})
	crossing.entered, crossing.proceed = make(chan string, 2), make(chan struct{})
	fanning.calling, fanning.fanned = make(chan Ref, 4), make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	crossed := make(chan error, 1)
	go func() {
		in, _ := json.Marshal("fanner/a")
		_, err := h.rt.Call(ctx, h.ref("crosser", "b"), "cross", in, jsonCodec{}, Cause{})
		crossed <- err
	}()
	select {
	case <-crossing.entered:
	case <-ctx.Done():
		t.Fatal("b's turn did not start")
	}
	fanned := make(chan error, 1)
	go func() {
		in, _ := json.Marshal(FanIn{B: "b", C: "c"})
		_, err := h.rt.Call(ctx, h.ref("fanner", "a"), "fan", in, jsonCodec{}, Cause{})
		fanned <- err
	}()
	select {
	case <-fanning.fanned:
	case err := <-fanned:
		t.Fatalf("a's turn ended before c answered: %v", err)
	case <-ctx.Done():
		t.Fatal("c did not answer a")
	}
	close(crossing.proceed)
	if err := <-crossed; !errors.Is(err, ErrCallCycle) {
		t.Fatalf("b's call to a: %v, want ErrCallCycle", err)
	}
	if err := <-fanned; err != nil {
		t.Fatalf("a's calls: %v", err)
	}
}
