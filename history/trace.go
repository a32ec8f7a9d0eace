package history

// Trace follows causality across objects (issue 16, part 3): from one
// event, the tree of turns that one client request (or alarm, or operator
// action) caused, in every object it reached, with each turn's changes.
//
// The links are in the events themselves. A turn another object caused
// names it in its cause (log.Cause.Caller): a call's callee and a
// message's target name the caller's event (class, id, version) and the
// index of the call or message in it; a reply names the message's target
// and the sender's event. The caller's turn lists its calls
// (log.Turn.Calls) and messages (log.Turn.Sends), each naming its target.
//
//  1. Up. From each turn of the asked event, follow Caller to the turn no
//     object caused: the root. Each step reads one event of the caller.
//  2. Down. From the root, depth first, for each call and message a turn
//     recorded, find the target's turn whose Caller names that record. The
//     target is known from the record, so only its log is read, from a
//     moment near the caller's event: a call's callee commits before the
//     caller's event that records the call (Before it at most), a
//     message's target after the sender's event (After it at most). The
//     read starts at the target's first event stored since then
//     (log.ReadObjectSince) and stops at the first event past the window,
//     or after ScanMax events. No index is kept: the log is the only
//     thing read, so a trace works on any node of a cluster, for objects
//     this node never held.
//  3. A turn that calls after writing is split into events, since a call
//     is a commit point: its writes so far, then the rest with the call's
//     record. The events of one turn carry the same cause and follow one
//     another, so they are one node of the tree, its parts. For a turn
//     that names its caller the search finds every part; for a root, the
//     events around it with the same cause (same request id) are its parts.
//
// A call that wrote nothing (a read) leaves no event of its callee, nor
// does a message not yet delivered: the node says so (Missing). Limits
// bound the walk (TraceLimits); a trace cut short says why (Trace.Notes).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-objects/strata/log"
)

// ErrNoEvent: the object has no event of the version asked for.
var ErrNoEvent = errors.New("no such event")

// TraceLimits bound a trace. Zero fields take the defaults.
type TraceLimits struct {
	// DepthMax is how many links the walk follows up from the asked event
	// and down from the root; default 32.
	DepthMax int
	// NodesMax bounds the turns in a trace; default 256.
	NodesMax int
	// ScanMax bounds the events read from one target's log to find the
	// turn one call or message caused; default 1000.
	ScanMax int
	// Before is how long before the caller's event a callee's may be:
	// the longest call; default 2 minutes.
	Before time.Duration
	// After is how long after the sender's event a message's target may
	// run it (delivery retries, dead letters retried); default 15 minutes.
	After time.Duration
}

// Defaults of TraceLimits.
const (
	TraceDepthMax = 32
	TraceNodesMax = 256
	TraceScanMax  = 1000
	TraceBefore   = 2 * time.Minute
	TraceAfter    = 15 * time.Minute
	// traceClockSkew is how far the clocks of two nodes (and of a node and
	// its stream's leader) may disagree.
	traceClockSkew = 5 * time.Second
	// tracePartsAround is how many events on each side of a root's event
	// may hold other parts of its turn.
	tracePartsAround = 8
)

func (l TraceLimits) withDefaults() TraceLimits {
	if l.DepthMax <= 0 {
		l.DepthMax = TraceDepthMax
	}
	if l.NodesMax <= 0 {
		l.NodesMax = TraceNodesMax
	}
	if l.ScanMax <= 0 {
		l.ScanMax = TraceScanMax
	}
	if l.Before <= 0 {
		l.Before = TraceBefore
	}
	if l.After <= 0 {
		l.After = TraceAfter
	}
	return l
}

// Link kinds: how a node's parent caused it.
const (
	LinkCall    = "call"
	LinkMessage = "message"
	LinkReply   = "reply"
)

// TraceNode is one turn of a trace, in one object.
type TraceNode struct {
	Index  int // its place in Trace.Nodes
	Parent int // its parent's Index; -1 for a root
	Depth  int // 0 for a root
	// Link is how the parent caused it (LinkCall, LinkMessage,
	// LinkReply); "" for a root.
	Link  string
	Class string
	ID    log.ID
	Name  string
	// Method is what the parent called or sent (its record); for a root,
	// the cause's.
	Method string
	Cause  log.Cause
	// Parts are the events holding the turn, in order (one, unless it
	// wrote before a call).
	Parts []TracePart
	// Asked: the trace was asked for one of its events.
	Asked bool
	// Missing says why the target of a call or message has no event here
	// (Parts is empty).
	Missing string
}

// TracePart is one event's share of a traced turn.
type TracePart struct {
	Version uint64
	Time    time.Time
	Turn    int  // the turn's index in the event
	Record  Turn // its cause, calls, messages and changes
}

// Trace is the tree of turns a root caused, depth first: each node comes
// after its parent.
type Trace struct {
	Nodes []TraceNode
	// Notes say where the trace was cut short or a link was not found.
	Notes []string
}

// TraceFrom returns the causal trace through event version of the object.
func TraceFrom(ctx context.Context, l *log.Log, class string, id log.ID, version uint64, lim TraceLimits) (*Trace, error) {
	tr := &tracer{ctx: ctx, l: l, lim: lim.withDefaults(), events: map[eventRef]Entry{}, names: map[log.ID]string{}, out: &Trace{}}
	asked, err := tr.entry(class, id, version)
	if err != nil {
		return nil, err
	}
	seen := map[partRef]bool{}
	for ti := range asked.Turns {
		root, err := tr.root(partRef{class, id, version, ti})
		if err != nil {
			return nil, err
		}
		if seen[root] {
			continue
		}
		seen[root] = true
		parts, err := tr.rootParts(root)
		if err != nil {
			return nil, err
		}
		if err := tr.add(-1, "", "", root.class, root.id, parts, "", ""); err != nil {
			return nil, err
		}
	}
	found := false
	for i := range tr.out.Nodes {
		n := &tr.out.Nodes[i]
		for _, p := range n.Parts {
			if n.Class == class && n.ID == id && p.Version == version {
				n.Asked, found = true, true
			}
		}
	}
	if !found {
		tr.note(fmt.Sprintf("the walk down from the root did not reach %s/%s v%d", class, id, version))
	}
	return tr.out, nil
}

type eventRef struct {
	id      log.ID
	version uint64
}

// partRef is one turn of one event.
type partRef struct {
	class   string
	id      log.ID
	version uint64
	turn    int
}

type tracer struct {
	ctx    context.Context
	l      *log.Log
	lim    TraceLimits
	events map[eventRef]Entry // events read, with diffs
	names  map[log.ID]string
	out    *Trace
}

func (t *tracer) note(s string) {
	for _, n := range t.out.Notes {
		if n == s {
			return
		}
	}
	t.out.Notes = append(t.out.Notes, s)
}

// entry is the object's event of version v with its diffs. It reads the
// events around it too (they may be parts of the same turn).
func (t *tracer) entry(class string, id log.ID, v uint64) (Entry, error) {
	if e, ok := t.events[eventRef{id, v}]; ok {
		return e, nil
	}
	if v == 0 {
		return Entry{}, fmt.Errorf("%w: %s/%s v0: versions start at 1", ErrNoEvent, class, id)
	}
	from, to := v-min(v-1, tracePartsAround), v+tracePartsAround
	rep, err := Replay(t.ctx, t.l, class, id, func(i log.CheckpointInfo) bool { return i.Version < from },
		func(ev *log.Event) bool { return ev.Version > to }, func(e Entry) error {
			if e.Version >= from {
				t.events[eventRef{id, e.Version}] = e
			}
			return nil
		})
	if err != nil {
		return Entry{}, fmt.Errorf("trace %s/%s v%d: %w", class, id, v, err)
	}
	if rep.Name != "" {
		t.names[id] = rep.Name
	}
	last := rep.Version
	rep.Close()
	e, ok := t.events[eventRef{id, v}]
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s/%s has no version %d (its last is %d)", ErrNoEvent, class, id, v, last)
	}
	return e, nil
}

// root walks Caller links up from p to the turn no object caused.
func (t *tracer) root(p partRef) (partRef, error) {
	for range t.lim.DepthMax {
		e, err := t.entry(p.class, p.id, p.version)
		if err != nil {
			return partRef{}, err
		}
		c := e.Turns[p.turn].Cause.Caller
		if c == nil {
			return p, nil
		}
		up := partRef{c.Class, c.ID, c.Version, c.Turn}
		if c.Kind == log.CallerReply {
			// The reply's turn is the sender's: its cause is the sender's
			// event that sent the message.
			up.class, up.id = p.class, p.id
		}
		pe, err := t.entry(up.class, up.id, up.version)
		if errors.Is(err, ErrNoEvent) || errors.Is(err, ErrBadRange) {
			t.note(fmt.Sprintf("%s/%s v%d names its cause %s/%s v%d, which is not in the log: the trace starts below it", p.class, p.id, p.version, up.class, up.id, up.version))
			return p, nil
		}
		if err != nil {
			return partRef{}, err
		}
		if c.Kind == log.CallerCall {
			up.turn = callingTurn(pe, c.Index, p.id)
		}
		if up.turn >= len(pe.Turns) {
			up.turn = len(pe.Turns) - 1
		}
		p = up
	}
	t.note(fmt.Sprintf("the chain of causes goes on above %s/%s v%d (more than %d links)", p.class, p.id, p.version, t.lim.DepthMax))
	return p, nil
}

// callingTurn is the turn of e whose calls hold, at index, a call to id.
func callingTurn(e Entry, index int, id log.ID) int {
	for ti, tr := range e.Turns {
		if index < len(tr.Calls) && tr.Calls[index].ID == id {
			return ti
		}
	}
	return 0
}

// sameTurn is the part of a cause shared by every event of one turn.
type sameTurn struct {
	requestID, principal, method, idemKey, traceID string
	via                                            log.Via
	caller                                         log.Caller
}

func turnOf(c log.Cause) sameTurn {
	k := sameTurn{requestID: c.RequestID, principal: c.Principal, method: c.Method, idemKey: c.IdemKey, traceID: c.TraceID, via: c.Via}
	if c.Caller != nil {
		k.caller = *c.Caller
	}
	return k
}

// rootParts is the root's turn with the parts around it: neighbouring
// events with a turn of the same cause, when the cause names a request.
func (t *tracer) rootParts(root partRef) ([]partRef, error) {
	e, err := t.entry(root.class, root.id, root.version)
	if err != nil {
		return nil, err
	}
	key := turnOf(e.Turns[root.turn].Cause)
	parts := []partRef{root}
	if key.requestID == "" {
		return parts, nil
	}
	find := func(v uint64) (int, bool) {
		ne, ok := t.events[eventRef{root.id, v}]
		if !ok {
			return 0, false
		}
		for ti, tr := range ne.Turns {
			if turnOf(tr.Cause) == key {
				return ti, true
			}
		}
		return 0, false
	}
	for v := root.version - 1; v >= 1 && v+tracePartsAround >= root.version; v-- {
		ti, ok := find(v)
		if !ok {
			break
		}
		parts = append([]partRef{{root.class, root.id, v, ti}}, parts...)
	}
	for v := root.version + 1; v <= root.version+tracePartsAround; v++ {
		ti, ok := find(v)
		if !ok {
			break
		}
		parts = append(parts, partRef{root.class, root.id, v, ti})
	}
	return parts, nil
}

// add appends the node of parts (none: missing says why) under parent and
// walks down from it.
func (t *tracer) add(parent int, link, method, class string, id log.ID, parts []partRef, missing, reply string) error {
	if len(t.out.Nodes) >= t.lim.NodesMax {
		t.note(fmt.Sprintf("the trace holds at most %d turns: it was cut there", t.lim.NodesMax))
		return nil
	}
	n := TraceNode{Index: len(t.out.Nodes), Parent: parent, Link: link, Class: class, ID: id, Method: method, Missing: missing}
	if parent >= 0 {
		n.Depth = t.out.Nodes[parent].Depth + 1
	}
	for _, p := range parts {
		e, err := t.entry(p.class, p.id, p.version)
		if err != nil {
			return err
		}
		n.Parts = append(n.Parts, TracePart{Version: p.version, Time: e.Time, Turn: p.turn, Record: e.Turns[p.turn]})
	}
	if len(n.Parts) > 0 {
		n.Cause = n.Parts[0].Record.Cause
		if parent < 0 {
			n.Method = n.Cause.Method
		}
	}
	n.Name = t.names[id]
	t.out.Nodes = append(t.out.Nodes, n)
	if len(n.Parts) == 0 {
		return nil
	}
	if n.Depth >= t.lim.DepthMax {
		t.note(fmt.Sprintf("the trace goes at most %d links down: %s/%s v%d was not followed further", t.lim.DepthMax, class, id, n.Parts[0].Version))
		return nil
	}
	return t.down(n.Index, reply)
}

// down adds what node i caused: its calls, its messages, and the reply to
// the message that caused it (reply is the sender's reply method, if any).
func (t *tracer) down(i int, reply string) error {
	n := t.out.Nodes[i]
	for _, p := range n.Parts {
		for j, call := range p.Record.Calls {
			match := func(c *log.Caller) bool {
				return c.Kind == log.CallerCall && c.Class == n.Class && c.ID == n.ID && c.Version == p.Version && c.Index == j
			}
			found, err := t.find(call.Class, call.ID, p.Time.Add(-t.lim.Before), p.Time.Add(traceClockSkew), match)
			if err != nil {
				return err
			}
			missing := ""
			if len(found) == 0 {
				missing = "no event: the call wrote nothing"
				if call.Error != "" {
					missing = "no event: the call failed (" + call.Error + ")"
				}
			}
			if err := t.add(i, LinkCall, call.Method, call.Class, call.ID, found, missing, ""); err != nil {
				return err
			}
		}
		for j, m := range p.Record.Sends {
			match := func(c *log.Caller) bool {
				return c.Kind == log.CallerMessage && c.Class == n.Class && c.ID == n.ID && c.Version == p.Version && c.Turn == p.Turn && c.Index == j
			}
			found, err := t.find(m.Class, m.ID, p.Time.Add(-traceClockSkew), p.Time.Add(t.lim.After), match)
			if err != nil {
				return err
			}
			missing := ""
			if len(found) == 0 {
				missing = "no event: the message wrote nothing, or is not delivered yet"
			}
			if err := t.add(i, LinkMessage, m.Method, m.Class, m.ID, found, missing, m.Reply); err != nil {
				return err
			}
		}
	}
	if reply == "" || n.Link != LinkMessage || n.Cause.Caller == nil {
		return nil
	}
	// The reply runs on the sender (the parent's object), naming this
	// target and the sender's event.
	c, sender := n.Cause.Caller, t.out.Nodes[n.Parent]
	match := func(rc *log.Caller) bool {
		return rc.Kind == log.CallerReply && rc.Class == n.Class && rc.ID == n.ID && rc.Version == c.Version && rc.Turn == c.Turn && rc.Index == c.Index
	}
	last := n.Parts[len(n.Parts)-1].Time
	found, err := t.find(sender.Class, sender.ID, last.Add(-traceClockSkew), last.Add(t.lim.After), match)
	if err != nil {
		return err
	}
	missing := ""
	if len(found) == 0 {
		missing = "no event: the reply wrote nothing, or is not delivered yet"
	}
	return t.add(i, LinkReply, reply, sender.Class, sender.ID, found, missing, "")
}

// find reads the object's log from since for the turns whose Caller
// matches: the parts of the one turn a call or message caused, which
// follow one another. It stops after them, at the first event after
// until, or after ScanMax events.
func (t *tracer) find(class string, id log.ID, since, until time.Time, match func(*log.Caller) bool) ([]partRef, error) {
	var found []partRef
	read := 0
	err := t.l.ReadObjectSince(t.ctx, class, id, since, func(rec log.Record) error {
		read++
		ev, hit := rec.Event, false
		for ti, tr := range ev.Turns {
			if c := tr.Cause.Caller; c != nil && match(c) {
				found, hit = append(found, partRef{class, id, ev.Version, ti}), true
			}
		}
		switch {
		case !hit && len(found) > 0:
			return errStop
		case ev.Time > until.UnixNano():
			return errStop
		case read >= t.lim.ScanMax:
			if !hit {
				t.note(fmt.Sprintf("a search of %s/%s stopped after %d events", class, id, t.lim.ScanMax))
			}
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("trace: search %s/%s: %w", class, id, err)
	}
	return found, nil
}
