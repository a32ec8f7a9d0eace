package objects

// Synchronous calls between objects: a handler gets a Stub for another
// object (Ctx.Object, Ctx.ObjectByID) and calls one of its RPC methods, on
// whichever node owns it (Config.Calls: the cluster's router, or this
// runtime alone).
//
// Invariants:
//  1. A call is a commit point. Before it leaves, every write of the turn
//     so far, and of the turns before it, is durable: the stub drives the
//     write path's own sync (turn.sync, as Storage.Sync does). The callee
//     can therefore never observe, through the caller's answers, anything a
//     crash of the caller takes back. A call inside Storage.Transaction is
//     refused (ErrCallInTransaction): the transaction's writes may still be
//     undone, and making them durable would break its all-or-nothing.
//  2. A call carries its chain: the ids of the objects waiting on it, the
//     caller last. A call to an object in the chain (or to the caller
//     itself) would wait on itself: it fails at once with ErrCallCycle. A
//     chain of CallDepthMax objects cannot call further (ErrCallDepth). The
//     chain travels in the context.Context (CallChain, WithCallChain), and
//     the router carries it across nodes.
//     Across requests the chain says nothing (A calls B in one request
//     while B calls A in another), so the runtime also keeps which of its
//     objects' turns waits on a call to which object (callWaits): a call
//     to an object whose turn waits, through calls on this node, on the
//     caller fails at once with ErrCallCycle too, and the other request
//     goes on. The callee's node checks an arriving call the same way
//     against the caller's chain, which catches a circle through two
//     nodes (A on one calls B on the other while B calls A). A longer
//     circle through several nodes is not seen: its calls wait until
//     their deadline.
//  3. The caller's context (its deadline, its cancellation) is the call's:
//     a deadline that passes in the callee is the caller's error too.
//  4. The callee's turn names the caller in its cause (log.Caller): the
//     caller's class, id, and the version and turn of the caller's event
//     that records the call (log.Turn.Calls), so history links the two.
//     After the commit point nothing of the caller is pending, so the part
//     of the turn that records this call is the first turn of the event
//     after the caller's newest: its version is known before the call
//     leaves. A turn that made calls is recorded even if it writes nothing
//     or fails (its writes are discarded, its calls are not undone).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/strata-objects/strata/log"
)

const (
	// CallDepthMax bounds the objects in one chain of synchronous calls,
	// the first caller included.
	CallDepthMax = 16
	// CallInputBytesMax bounds a call's encoded input.
	CallInputBytesMax = 1 << 20
	// callsPartBytesMax: a turn whose recorded calls reach this size has
	// them staged (an event of their own) at its next call, so a turn that
	// calls many objects keeps its record within turnOverheadBytes.
	callsPartBytesMax = 1024
	// callRecordOverheadBytes is what one recorded call costs beyond its
	// class, method and error code.
	callRecordOverheadBytes = 48
)

// Caller is log.Caller: the object whose call caused a turn.
type Caller = log.Caller

// CallRecord is log.Call: one call a turn made.
type CallRecord = log.Call

// Dispatcher is the interface through which stubs reach other objects: the
// cluster's router (which forwards to the owner) or a Runtime alone.
type Dispatcher interface {
	Call(ctx context.Context, ref Ref, method string, body []byte, codec Codec, cause Cause) ([]byte, error)
}

type callChainKey struct{}

// WithCallChain returns ctx carrying chain, the ids of the objects waiting
// in a chain of calls (the router restores it on the owner).
func WithCallChain(ctx context.Context, chain []ID) context.Context {
	if len(chain) == 0 {
		return ctx
	}
	return context.WithValue(ctx, callChainKey{}, chain)
}

// CallChain returns the chain of calls ctx carries, the newest caller last.
func CallChain(ctx context.Context) []ID {
	chain, _ := ctx.Value(callChainKey{}).([]ID)
	return chain
}

// Stub is another object as a handler sees it: its methods can be called
// during the turn that made the stub.
type Stub struct {
	c    *Ctx
	ref  Ref
	err  error // a bad class, name or id: every use returns it
	left bool  // the last Call or Fetch passed its commit point and left
}

// Object returns a stub for the object of class named name.
func (c *Ctx) Object(class, name string) *Stub {
	ref, err := c.t.a.rt.RefByName(class, name)
	return &Stub{c: c, ref: ref, err: err}
}

// ObjectByID returns a stub for the object of class with id.
func (c *Ctx) ObjectByID(class string, id ID) *Stub {
	_, err := c.t.a.rt.Class(class)
	return &Stub{c: c, ref: Ref{Class: class, ID: id}, err: err}
}

// Ref is the object the stub calls.
func (s *Stub) Ref() Ref { return s.ref }

// Left reports whether the stub's last Call or Fetch left the caller (it
// is among the turn's recorded calls, whatever its answer), rather than
// being refused before it left (bad input, a cycle, the chain's depth, a
// transaction), which records nothing.
func (s *Stub) Left() bool { return s.left }

// Call runs the object's RPC method with in (encoded by the runtime's
// codec, JSON by default) and decodes its output into out (a pointer, or
// nil to drop it). It returns the callee's error: a ClientError keeps its
// status and code, so a handler may return it as its own.
//
// The call is a commit point: every write of the turn so far is durable
// before it leaves (see the top of calls.go). ctx must be the turn's Ctx or
// derived from it; a shorter deadline applies to the call only.
func (s *Stub) Call(ctx context.Context, method string, in, out any) error {
	class, err := s.check(method)
	if err != nil {
		return err
	}
	if _, ok := class.methods[method]; !ok && !class.dynamic { // a deployed class's methods are its code's: it answers unknown_method
		return fmt.Errorf("%w: %s has no method %q", ErrUnknownMethod, class.name, truncate(method))
	}
	rt := s.c.t.a.rt
	var body []byte
	if in != nil {
		if body, err = rt.codec.Encode(in); err != nil {
			return fmt.Errorf("%w: %s.%s input: %w", ErrBadInput, s.ref, method, err)
		}
	}
	if len(body) > CallInputBytesMax {
		return tooLarge(fmt.Sprintf("input of %s.%s", s.ref, method), len(body), CallInputBytesMax)
	}
	cctx, cause, done, err := s.leave(ctx, method)
	if err != nil {
		return err
	}
	defer done()
	outBytes, err := rt.calls.Call(cctx, s.ref, method, body, rt.codec, cause)
	s.c.t.recordCall(CallRecord{Class: s.ref.Class, ID: s.ref.ID, Method: truncate(method), Error: callErrorCode(err)})
	if err != nil {
		return fmt.Errorf("call %s.%s: %w", s.ref, method, err)
	}
	if out != nil && len(outBytes) > 0 {
		if err := rt.codec.Decode(outBytes, out); err != nil {
			return fmt.Errorf("call %s.%s: decode its output: %w", s.ref, method, err)
		}
	}
	return nil
}

// FetchDispatcher is a Dispatcher that also runs an object's Fetch handler
// (the cluster's router, a Runtime): Stub.Fetch needs it.
type FetchDispatcher interface {
	Fetch(ctx context.Context, ref Ref, r *http.Request, cause Cause) (*Response, error)
}

// FetchMethod is how a stub's fetch is named in the caller's recorded calls
// (log.Call.Method): no RPC method can take the name (it is not exported).
const FetchMethod = "fetch"

// Fetch hands r to the object's Fetch handler (a Go class's Fetcher, a
// deployed class's fetch) and returns its response, as Durable Objects'
// stub.fetch. It is a call in every other way (see the top of calls.go): a
// commit point, in the chain of calls (cycles and depth refused), refused
// inside Storage.Transaction, recorded in the caller's turn (method
// "fetch") and naming the caller in the callee's. The request's body is
// read here, at most CallInputBytesMax.
func (s *Stub) Fetch(ctx context.Context, r *http.Request) (*Response, error) {
	class, err := s.check(FetchMethod)
	if err != nil {
		return nil, err
	}
	if !class.fetches {
		return nil, fmt.Errorf("%w: %s has no Fetch handler", ErrUnknownMethod, class.name)
	}
	fd, ok := s.c.t.a.rt.calls.(FetchDispatcher)
	if !ok {
		return nil, fmt.Errorf("objects: Config.Calls (%T) cannot fetch", s.c.t.a.rt.calls)
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, CallInputBytesMax+1))
		if err != nil {
			return nil, fmt.Errorf("%w: fetch %s: read the request body: %w", ErrBadInput, s.ref, err)
		}
	}
	if len(body) > CallInputBytesMax {
		return nil, tooLarge(fmt.Sprintf("request body of a fetch of %s", s.ref), len(body), CallInputBytesMax)
	}
	cctx, cause, done, err := s.leave(ctx, FetchMethod)
	if err != nil {
		return nil, err
	}
	defer done()
	req := r.Clone(cctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	resp, err := fd.Fetch(cctx, s.ref, req, cause)
	s.c.t.recordCall(CallRecord{Class: s.ref.Class, ID: s.ref.ID, Method: FetchMethod, Error: callErrorCode(err)})
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", s.ref, err)
	}
	return resp, nil
}

// check refuses what no call may do: a bad stub, a stub of an ended turn,
// a call inside Storage.Transaction, a cycle, a chain too deep. It returns
// the callee's class.
func (s *Stub) check(method string) (*Class, error) {
	s.left = false
	if s.err != nil {
		return nil, s.err
	}
	t := s.c.t
	a, rt := t.a, t.a.rt
	if t.done {
		return nil, errors.New("objects: stub used after its turn ended")
	}
	if t.inTx > 0 {
		return nil, fmt.Errorf("%w: %s.%s", ErrCallInTransaction, s.ref, truncate(method))
	}
	class, err := rt.Class(s.ref.Class)
	if err != nil {
		return nil, err
	}
	chain := CallChain(t.req.ctx)
	if s.ref.ID == a.id {
		return nil, fmt.Errorf("%w: %s/%s calls itself (%s)", ErrCallCycle, a.class.name, a.id, truncate(method))
	}
	for _, id := range chain {
		if id == s.ref.ID {
			return nil, fmt.Errorf("%w: %s is already waiting in this chain of calls", ErrCallCycle, s.ref)
		}
	}
	if len(chain)+2 > CallDepthMax {
		return nil, fmt.Errorf("%w: calling %s would make a chain of %d objects, at most %d", ErrCallDepth, s.ref, len(chain)+2, CallDepthMax)
	}
	return class, nil
}

// leave records that the turn waits on the callee (callWaits: refused as
// a cycle if the callee waits on the caller), makes the commit point
// (invariant 1), and returns the call's context (ctx with the chain, the
// caller last, and the wait), the callee's cause, and done, which the
// caller calls when the call has returned.
func (s *Stub) leave(ctx context.Context, method string) (context.Context, Cause, func(), error) {
	t := s.c.t
	a, rt := t.a, t.a.rt
	wait, err := rt.waits.wait(a.ref(), s.ref)
	if err != nil {
		return nil, Cause{}, nil, err
	}
	done := func() { rt.waits.end(wait) }
	if err := t.sync(); err != nil {
		done()
		return nil, Cause{}, nil, fmt.Errorf("call %s.%s: commit before the call: %w", s.ref, truncate(method), err)
	}
	cause := Cause{
		RequestID: t.req.cause.RequestID,
		Principal: t.req.cause.Principal,
		Caller:    &Caller{Class: a.class.name, ID: a.id, Version: a.version + 1, Index: len(t.calls)},
	}
	chain := CallChain(t.req.ctx)
	next := make([]ID, len(chain), len(chain)+1)
	copy(next, chain)
	rt.hooks.calling(a.class.name, a.id, s.ref)
	s.left = true
	cctx := context.WithValue(WithCallChain(ctx, append(next, a.id)), waitEdgeKey{}, wait)
	return cctx, cause, done, nil
}

// recordCall adds a call to the turn's record.
func (t *turn) recordCall(c CallRecord) {
	if len(c.Method) > log.CallMethodBytesMax {
		c.Method = c.Method[:log.CallMethodBytesMax]
	}
	t.calls = append(t.calls, c)
	t.callsBytes += len(c.Class) + len(c.Method) + len(c.Error) + callRecordOverheadBytes
}

// callsFull reports whether the turn's recorded calls must be staged
// before it records another.
func (t *turn) callsFull() bool {
	return t.callsBytes >= callsPartBytesMax || len(t.calls) >= log.TurnCallsMax
}

// attachCalls moves the turn's recorded calls, and the messages of ws (the
// write set just staged; nil when its writes were discarded), into the turn
// just staged (the last of the pending event).
func (a *activation) attachCalls(t *turn, ws *writeSet) {
	if a.pending == nil {
		return
	}
	last := &a.pending.turns[len(a.pending.turns)-1]
	if ws != nil && len(ws.sends) > 0 {
		last.Sends = ws.sends // their bytes are in ws.bytes, counted by stage
		a.noteOutbox(a.pending.version, len(a.pending.turns)-1, log.Turn{Sends: ws.sends})
	}
	if len(t.calls) == 0 {
		return
	}
	last.Calls = t.calls
	a.pending.bytes += t.callsBytes
	t.calls, t.callsBytes = nil, 0
}

// CallErrorCode is the short name a recorded call keeps of a call's error
// ("call_cycle", "timeout", a ClientError's code, ...; "" for nil).
func CallErrorCode(err error) string { return callErrorCode(err) }

// callErrorCode is the short name a recorded call keeps of its error.
func callErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var ce *ClientError
	if errors.As(err, &ce) {
		if ce.Code != "" {
			return truncate(ce.Code)
		}
		return "client_error"
	}
	for _, row := range callErrorCodes {
		if errors.Is(err, row.err) {
			return row.code
		}
	}
	return "error"
}

var callErrorCodes = []struct {
	err  error
	code string
}{
	{ErrCallCycle, "call_cycle"},
	{ErrCallDepth, "call_depth"},
	{ErrUnknownMethod, "unknown_method"},
	{ErrBadInput, "bad_input"},
	{ErrTooLarge, "too_large"},
	{context.DeadlineExceeded, "timeout"},
	{context.Canceled, "canceled"},
	{ErrOverloaded, "overloaded"},
	{ErrUnavailable, "unavailable"},
	{ErrFenced, "fenced"},
	{ErrClosed, "closed"},
}

// jsonCodec is the default codec of stubs: strict JSON, as the gateway's
// (unknown fields and trailing data are refused), so a call reads its input
// the same way whether it ran here or was forwarded to another node.
type jsonCodec struct{}

func (jsonCodec) Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// callWaits is which object's turn waits on a synchronous call to which
// object, on this node (invariant 2): a wait-for graph, with an edge per
// call in progress (a turn may call several objects at once, from several
// goroutines), which never holds a cycle.
type callWaits struct {
	mu sync.Mutex
	on map[ID][]*waitEdge
}

// waitEdge is one call in progress: caller's turn waits on callee. The
// call's context carries it (waitEdgeKey), so that the callee's turn, on
// this node, ends it when it has run (callWaits.end).
type waitEdge struct {
	caller ID
	callee Ref
	ended  bool // under callWaits.mu
}

type waitEdgeKey struct{}

// waitEdgeOf returns the call in progress whose context ctx is, if any.
func waitEdgeOf(ctx context.Context) *waitEdge {
	e, _ := ctx.Value(waitEdgeKey{}).(*waitEdge)
	return e
}

// wait records that caller's turn waits on a call to callee (from before
// the call's commit point until its answer) and returns the edge, for the
// call's context and for end. If callee's turn waits, through calls, on
// caller, the call would wait for itself: ErrCallCycle, refused before it
// leaves (as a cycle within one chain is), and nothing is recorded.
func (w *callWaits) wait(caller, callee Ref) (*waitEdge, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if via, ok := w.reaches(callee, func(id ID) bool { return id == caller.ID }); ok {
		return nil, fmt.Errorf("%w: %s waits, through calls of another request, on %s", ErrCallCycle, callee, via)
	}
	if w.on == nil {
		w.on = map[ID][]*waitEdge{}
	}
	e := &waitEdge{caller: caller.ID, callee: callee}
	w.on[caller.ID] = append(w.on[caller.ID], e)
	return e, nil
}

// arriving refuses a call to target, from a turn of the chain of calls
// ctx carries, when target's turn waits, through calls on this node, on an
// object of that chain: the call would wait for itself. The caller's node
// checked what it knows (wait); this is the callee's side, which sees a
// circle through two nodes: A on node 1 calls B on node 2 while B, from
// another request, calls A (node 1 knows that A waits on B).
func (w *callWaits) arriving(ctx context.Context, target Ref, cause Cause) error {
	if cause.Caller == nil || cause.Caller.Kind != log.CallerCall {
		return nil // not a call: no chain to look up
	}
	chain := CallChain(ctx)
	if len(chain) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.on) == 0 {
		return nil
	}
	if via, ok := w.reaches(target, func(id ID) bool { return slices.Contains(chain, id) }); ok {
		return fmt.Errorf("%w: %s waits, through calls of another request, on %s, which waits on this call", ErrCallCycle, target, via)
	}
	return nil
}

// reaches walks the graph from from (itself included) and returns the
// first object found for which match reports true. Called with mu held.
func (w *callWaits) reaches(from Ref, match func(ID) bool) (Ref, bool) {
	seen := map[ID]bool{}
	next := []Ref{from}
	for len(next) > 0 {
		r := next[len(next)-1]
		next = next[:len(next)-1]
		if match(r.ID) {
			return r, true
		}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		for _, e := range w.on[r.ID] {
			next = append(next, e.callee)
		}
	}
	return Ref{}, false
}

// end ends the wait e, once: the callee ends it when the call's turn has
// run, before its next turn, and the caller when the call returns (the
// callee ran no turn, or ran it on another node). From the callee's turn's
// end the caller goes on once the answer passes the output gate, so a call
// from callee to caller waits, but no longer for itself (were the wait
// still recorded, that call would fail as a cycle).
func (w *callWaits) end(e *waitEdge) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.ended {
		return
	}
	e.ended = true
	edges := slices.DeleteFunc(w.on[e.caller], func(x *waitEdge) bool { return x == e })
	if len(edges) == 0 {
		delete(w.on, e.caller)
	} else {
		w.on[e.caller] = edges
	}
}
