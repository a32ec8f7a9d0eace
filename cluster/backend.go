package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/strata-objects/strata/objects"
)

// The gateway's Backend: every entry point of an object's turn goes
// through route, so a request reaches the owner wherever it arrived.
// Reading the past (history, state, audit, listing, tail) reads the log
// and needs no owner: it runs here.

// RefByName validates class and name and derives the object's id.
func (r *Router) RefByName(class, name string) (objects.Ref, error) {
	return r.rt.RefByName(class, name)
}

// RefByID validates class and the hex id.
func (r *Router) RefByID(class, hexID string) (objects.Ref, error) { return r.rt.RefByID(class, hexID) }

func envelope(kind Kind, ref objects.Ref, cause objects.Cause) *Envelope {
	return &Envelope{Kind: kind, Class: ref.Class, ID: ref.ID, Name: ref.Name, Cause: cause}
}

// keyedEnvelope is envelope for the entry points that can be exactly-once
// (objects/idempotency.go): a request without an Idempotency-Key gets one
// here, so that route may run it again when its first attempt's outcome is
// unknown (the owner left while running it) without running it twice.
func keyedEnvelope(kind Kind, ref objects.Ref, cause objects.Cause) *Envelope {
	if cause.IdemKey == "" {
		var b [16]byte
		rand.Read(b[:])
		cause.IdemKey = routerKeyPrefix + hex.EncodeToString(b[:])
	}
	return envelope(kind, ref, cause)
}

// routerKeyPrefix marks the keys the router makes up, in history.
const routerKeyPrefix = "strata-router-"

// Call runs an RPC method on the object's owner.
func (r *Router) Call(ctx context.Context, ref objects.Ref, method string, body []byte, codec objects.Codec, cause objects.Cause) ([]byte, error) {
	if _, err := r.rt.Class(ref.Class); err != nil {
		return nil, err
	}
	env := keyedEnvelope(KindCall, ref, cause)
	env.Method, env.Body, env.codec = method, body, codec
	env.Chain = objects.CallChain(ctx) // a call from another object's turn
	rep, err := r.route(ctx, env)
	if err != nil {
		return nil, err
	}
	return rep.Out, nil
}

// Fetch runs the class's Fetch handler on the object's owner.
func (r *Router) Fetch(ctx context.Context, ref objects.Ref, req *http.Request, cause objects.Cause) (*objects.Response, error) {
	if _, err := r.rt.Class(ref.Class); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", objects.ErrBadInput, err)
	}
	env := keyedEnvelope(KindFetch, ref, cause)
	env.Body, env.req = body, req
	env.Chain = objects.CallChain(ctx) // a stub's fetch from another object's turn
	env.HTTP = &HTTPRequest{Method: req.Method, URL: req.URL.String(), Host: req.Host, Header: req.Header}
	rep, err := r.route(ctx, env)
	if err != nil {
		return nil, err
	}
	if rep.Resp == nil {
		return nil, fmt.Errorf("%w: fetch answered without a response", objects.ErrUnavailable)
	}
	return rep.Resp, nil
}

// Alarm runs an alarm fire on the object's owner: the fire consumer of a
// shard is shared by every node, so the node that took the fire is often
// not the owner (alarms.Config.Deliver).
func (r *Router) Alarm(ctx context.Context, ref objects.Ref, info objects.AlarmInfo) error {
	env := envelope(KindAlarm, ref, objects.Cause{})
	env.Alarm = &AlarmFire{Name: info.Name, ScheduledAt: info.ScheduledAt.UnixNano(), RetryCount: info.RetryCount}
	// A fire has no client waiting: while this node has no lease, it
	// waits for the lease within ctx, as every request did before
	// ErrNoLease (a majority node's lease lapses for seconds while the
	// membership bucket elects a leader; the fire's redelivery would come
	// only after the ack wait).
	for {
		_, err := r.route(ctx, env)
		if !errors.Is(err, ErrNoLease) {
			return err
		}
		t := time.NewTimer(leaseCheck)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: alarm %q of %s/%s: %w", objects.ErrUnavailable, info.Name, ref.Class, ref.ID, err)
		}
	}
}

// livenessTimeout bounds the wait for another node's answer to Liveness:
// a console page waits no longer for a node that does not answer.
const livenessTimeout = 2 * time.Second

// Liveness reports each object's life (a live activation, its WebSockets)
// as the node that owns it in this node's view tells it: one request per
// owner node, at once. An object whose owner did not answer in
// livenessTimeout (cut off, leaving) is Unknown.
func (r *Router) Liveness(ctx context.Context, class string, ids []objects.ID) []objects.Liveness {
	out := make([]objects.Liveness, len(ids))
	byOwner := map[string][]int{}
	for i, id := range ids {
		owner := r.OwnerOf(id)
		byOwner[owner] = append(byOwner[owner], i)
	}
	ctx, cancel := context.WithTimeout(ctx, livenessTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for owner, idx := range byOwner {
		asked := make([]objects.ID, len(idx))
		for j, i := range idx {
			asked[j] = ids[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var live []objects.Liveness
			var err error
			if owner == r.cfg.Node {
				live = r.rt.Liveness(ctx, class, asked)
			} else {
				var rep *Reply
				if rep, err = r.forwardTo(ctx, owner, &Envelope{Kind: KindLive, Class: class, IDs: asked}); err == nil {
					live = rep.Live
				}
			}
			for j, i := range idx {
				if err != nil || j >= len(live) {
					out[i].Unknown = true
					continue
				}
				out[i] = live[j]
			}
		}()
	}
	wg.Wait()
	return out
}

// Outbox lists the object's pending messages and dead letters as its
// owner has them: the owner's snapshot holds the object's events, another
// node's may hold none.
func (r *Router) Outbox(ctx context.Context, ref objects.Ref) ([]objects.OutboxEntry, error) {
	rep, err := r.route(ctx, envelope(KindOutbox, ref, objects.Cause{Via: objects.ViaSystem, Method: "outbox"}))
	if err != nil {
		return nil, err
	}
	return rep.Outbox, nil
}

// deadSendersMax bounds the senders one node names for AllDeadLetters.
const deadSendersMax = 4096

// AllDeadLetters lists at most n dead letters of every object in the
// cluster. A node's snapshot holds the objects it ran, so every node in
// the view names the senders with dead letters in its own, the marks
// bucket names those marked as having some (objects.OutboxMarker: a sender
// only a node now gone ran is named there), and each sender's owner lists
// that sender's (Outbox: exact, from its activation). A marked sender
// found without dead letters loses its mark. A node or an owner that does
// not answer fails the listing rather than leave it silently short.
func (r *Router) AllDeadLetters(ctx context.Context, n int) ([]objects.OutboxEntry, error) {
	senders, marked, err := r.deadSenders(ctx)
	if err != nil {
		return nil, err
	}
	var out []objects.OutboxEntry
	for _, ref := range senders {
		if len(out) >= n {
			break
		}
		es, err := r.Outbox(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("dead letters of %s: %w", ref, err)
		}
		dead := 0
		for _, e := range es {
			if e.Dead {
				dead++
				if len(out) < n {
					out = append(out, e)
				}
			}
		}
		if rev, ok := marked[ref]; ok && dead == 0 {
			if err := r.rt.UnmarkDead(ctx, ref, rev); err != nil {
				r.logger.Warn("dead letters: mark of a sender without any not removed", "sender", ref, "err", err)
			}
		}
	}
	return out, nil
}

// deadSenders asks every node in the view, at once, for the senders with
// dead letters in its snapshot, adds the senders marked as having some
// (with their marks' revisions), and returns them without repeats, in id
// order.
func (r *Router) deadSenders(ctx context.Context) ([]objects.Ref, map[objects.Ref]uint64, error) {
	nodes := r.Nodes()
	answers := make([][]objects.Ref, len(nodes)+1)
	errs := make([]error, len(nodes)+1)
	var marked map[objects.Ref]uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		marked, errs[len(nodes)] = r.rt.MarkedDeadSenders(ctx)
		for ref := range marked {
			answers[len(nodes)] = append(answers[len(nodes)], ref)
		}
	})
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if node == r.cfg.Node {
				answers[i], errs[i] = r.rt.DeadSenders(ctx, deadSendersMax)
				return
			}
			rep, err := r.forwardTo(ctx, node, &Envelope{Kind: KindDeadSenders})
			if err != nil {
				errs[i] = fmt.Errorf("ask %s for its dead letters: %w", node, err)
				return
			}
			answers[i] = rep.Senders
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	seen := map[objects.Ref]bool{}
	var out []objects.Ref
	for _, refs := range answers {
		for _, ref := range refs {
			ref.Name = ""
			if !seen[ref] {
				seen[ref] = true
				out = append(out, ref)
			}
		}
	}
	slices.SortFunc(out, func(x, y objects.Ref) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	return out, marked, nil
}

// RetryAllDead puts every dead letter of the cluster back in its sender's
// outbox, each by a turn on its sender's owner, a page at a time, and
// reports how many. A letter that dies again while this runs is not
// retried twice.
func (r *Router) RetryAllDead(ctx context.Context) (int, error) {
	type letter struct {
		sender      objects.ID
		version     uint64
		turn, index int
	}
	done := map[letter]bool{}
	n := 0
	for {
		es, err := r.AllDeadLetters(ctx, len(done)+512)
		if err != nil {
			return n, err
		}
		fresh := 0
		for _, e := range es {
			k := letter{e.Sender.ID, e.Version, e.Turn, e.Index}
			if done[k] {
				continue
			}
			done[k] = true
			fresh++
			if err := r.rt.RetryDead(ctx, e); err != nil {
				return n, err
			}
			n++
		}
		if fresh == 0 {
			return n, nil
		}
	}
}

// GetAlarms returns the object's pending alarms, from its owner.
func (r *Router) GetAlarms(ctx context.Context, ref objects.Ref, cause objects.Cause) (map[string]time.Time, error) {
	rep, err := r.route(ctx, envelope(KindGetAlarms, ref, cause))
	if err != nil {
		return nil, err
	}
	if rep.Alarms == nil {
		return map[string]time.Time{}, nil
	}
	return rep.Alarms, nil
}

// SetAlarmAt sets an alarm on the object's owner and returns the time set
// (a keyed retry's is its first attempt's).
func (r *Router) SetAlarmAt(ctx context.Context, ref objects.Ref, name string, at time.Time, cause objects.Cause) (time.Time, error) {
	env := keyedEnvelope(KindSetAlarm, ref, cause)
	env.AlarmName, env.At = name, at.UnixNano()
	rep, err := r.route(ctx, env)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, rep.At), nil
}

// DeleteAlarmAt deletes an alarm on the object's owner.
func (r *Router) DeleteAlarmAt(ctx context.Context, ref objects.Ref, name string, cause objects.Cause) (bool, error) {
	env := keyedEnvelope(KindDeleteAlarm, ref, cause)
	env.AlarmName = name
	rep, err := r.route(ctx, env)
	if err != nil {
		return false, err
	}
	return rep.OK, nil
}

// History, StateAt, Verify, ListObjects and Tail read the log (or this
// node's snapshot) and run here. Restore writes one event through a turn:
// it runs here too, and the handoff moves the object here for it.

func (r *Router) History(ctx context.Context, ref objects.Ref, rg objects.HistoryRange, fn func(objects.HistoryEntry) error) error {
	return r.rt.History(ctx, ref, rg, fn)
}

func (r *Router) StateAt(ctx context.Context, ref objects.Ref, at objects.PastAt) (objects.PastState, error) {
	return r.rt.StateAt(ctx, ref, at)
}

func (r *Router) Verify(ctx context.Context, ref objects.Ref) (objects.AuditReport, error) {
	return r.rt.Verify(ctx, ref)
}

// Trace reads only the log: it runs here, for objects of any node.
func (r *Router) Trace(ctx context.Context, ref objects.Ref, version uint64, lim objects.TraceLimits) (*objects.Trace, error) {
	return r.rt.Trace(ctx, ref, version, lim)
}

func (r *Router) Restore(ctx context.Context, ref objects.Ref, at objects.PastAt, cause objects.Cause) (objects.RestoreResult, error) {
	return r.rt.Restore(ctx, ref, at, cause)
}

func (r *Router) ListObjects(class, namePrefix, cursor string, limit int) ([]objects.ObjectSummary, string, error) {
	return r.rt.ListObjects(class, namePrefix, cursor, limit)
}

func (r *Router) Tail(ctx context.Context, class string, ready func(), fn func(objects.Record) error) error {
	return r.rt.Tail(ctx, class, ready, fn)
}

// NodeHeader is the response header naming the node that ran a request's
// turn (RPC and fetch through a cluster node's gateway): operators and
// tests see where an object lives without reproducing the placement.
const NodeHeader = "Strata-Node"

type ranOnKey struct{}

// TrackNode returns a context in which the router records the node that
// runs the request's turn; RanOn reads it after the call.
func TrackNode(ctx context.Context) context.Context {
	return context.WithValue(ctx, ranOnKey{}, new(string))
}

// RanOn is the node that ran the turn of a request made with a TrackNode
// context, "" if none did (or it did not go through a router).
func RanOn(ctx context.Context) string {
	if p, ok := ctx.Value(ranOnKey{}).(*string); ok {
		return *p
	}
	return ""
}

// ranOn records node in ctx's tracker, if any.
func ranOn(ctx context.Context, node string) {
	if p, ok := ctx.Value(ranOnKey{}).(*string); ok {
		*p = node
	}
}

// QueryAt reads the log here, as StateAt does.
func (r *Router) QueryAt(ctx context.Context, ref objects.Ref, at objects.PastAt, query string, params []json.RawMessage) (*objects.SQLResult, uint64, error) {
	return r.rt.QueryAt(ctx, ref, at, query, params)
}
