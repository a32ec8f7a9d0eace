package objects

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Senders pending for long, in a cluster (issue 16). A node that gains a
// dead node's objects finds their senders with pending messages by reading
// the last TakeoverLookback of the log (alarms' takeover): a sender whose
// messages were sent before that, and still wait (a target down for
// minutes, a long queue), would otherwise wait for its next activation.
// So the outbox marks, in a replicated bucket (log.OutboxMarks), every
// sender whose oldest queued message was acknowledged more than
// Config.OutboxMarkAfter ago, or whose messages it loaded (their age is
// unknown); a takeover activates the gained objects marked
// (AdoptOutboxMarks), as it does those it found in the log. The outbox
// removes a mark once the sender's queue is empty.
//
// Why this is enough: a sender not marked when its node died had its
// oldest pending message acknowledged less than OutboxMarkAfter (plus a
// tick and a bucket write) before, so inside the lookback of a takeover
// that starts within TakeoverLookback − OutboxMarkAfter of the death.
//
// One goroutine, owned by the outbox, writes and removes every pending
// mark, so a mark and the removal of the mark before it cannot overtake
// each other. A mark carries its revision: removing it at that revision
// leaves alone a mark that the sender's new owner wrote since. (Dead marks,
// below, are written by the worker that settled the letter and removed by
// a listing, also at a revision, so their order needs no single writer.)

// OutboxMarker is the bucket of marks (log.OutboxMarks). It also names the
// senders with dead letters (DeadMark): a sender's dead letters are in the
// snapshots of the nodes that ran it, and a listing of the cluster's dead
// letters asks the owners of the senders marked too, so that those of a
// sender only a node now gone ran are listed. The outbox marks a sender
// when it has settled one of its letters as dead; a listing that finds a
// marked sender without dead letters removes its mark (MarkedDeadSenders,
// UnmarkDead).
type OutboxMarker interface {
	Mark(ctx context.Context, class string, id ID) (uint64, error)
	Unmark(ctx context.Context, class string, id ID, rev uint64) error
	Marked(ctx context.Context, want func(class string, id ID) bool, fn func(class string, id ID, rev uint64) error) error
	DeadMark(ctx context.Context, class string, id ID) error
	DeadUnmark(ctx context.Context, class string, id ID, rev uint64) error
	DeadMarked(ctx context.Context, fn func(class string, id ID, rev uint64) error) error
}

// DefaultOutboxMarkAfter is Config.OutboxMarkAfter's default.
const DefaultOutboxMarkAfter = 15 * time.Second

// outboxMark is a mark this node wrote or adopted.
type outboxMark struct {
	class string
	rev   uint64
}

// markLoop marks and unmarks every half OutboxMarkAfter until the outbox
// closes.
func (o *outbox) markLoop() {
	defer o.wg.Done()
	t := time.NewTicker(max(o.rt.cfg.OutboxMarkAfter/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-t.C:
		}
		o.markTick()
	}
}

// markTick marks the senders queued for longer than OutboxMarkAfter and
// unmarks those whose queue is empty. A failed write is tried again at the
// next tick.
func (o *outbox) markTick() {
	type job struct {
		id   ID
		mark outboxMark
	}
	var mark, unmark []job
	old := time.Now().Add(-o.rt.cfg.OutboxMarkAfter)
	o.mu.Lock()
	for id, q := range o.mu.queues {
		if _, ok := o.mu.marks[id]; ok || len(q) == 0 {
			continue
		}
		if since, ok := o.mu.since[id]; !ok || since.Before(old) {
			mark = append(mark, job{id: id, mark: outboxMark{class: q[0].Sender.Class}})
		}
	}
	for id, m := range o.mu.marks {
		if len(o.mu.queues[id]) == 0 {
			unmark = append(unmark, job{id: id, mark: m})
		}
	}
	o.mu.Unlock()
	marks := o.rt.cfg.OutboxMarks
	failed, lastErr := 0, error(nil)
	defer func() {
		// One line per tick: a node without JetStream (standing by) fails
		// every write until it is back.
		if failed > 0 && o.ctx.Err() == nil {
			o.rt.logger.Warn("outbox: marks of senders not written; the next tick tries again", "failed", failed, "of", len(mark)+len(unmark), "err", lastErr)
		}
	}()
	for _, j := range mark {
		ctx, cancel := context.WithTimeout(o.ctx, markTimeout)
		rev, err := marks.Mark(ctx, j.mark.class, j.id)
		cancel()
		if err != nil {
			failed, lastErr = failed+1, err
			continue
		}
		o.mu.Lock()
		o.mu.marks[j.id] = outboxMark{class: j.mark.class, rev: rev}
		o.mu.Unlock()
	}
	for _, j := range unmark {
		ctx, cancel := context.WithTimeout(o.ctx, markTimeout)
		err := marks.Unmark(ctx, j.mark.class, j.id, j.mark.rev)
		cancel()
		if err != nil {
			failed, lastErr = failed+1, err
			continue
		}
		// Gone from the bucket: if the sender queued again meanwhile, the
		// next tick marks it again when its messages are old.
		o.mu.Lock()
		delete(o.mu.marks, j.id)
		o.mu.Unlock()
	}
}

// markTimeout bounds one bucket write.
const markTimeout = 5 * time.Second

// AdoptOutboxMarks activates the marked senders among the objects for
// which gained reports true (a takeover's), whose loads hand their pending
// messages to this node's outbox, and takes their marks as this node's:
// the outbox removes each once its sender has nothing left to deliver. It
// returns the senders activated; one that fails to load keeps its mark for
// the next takeover and is reported in the error. Alone (no
// Config.OutboxMarks) there are none.
func (rt *Runtime) AdoptOutboxMarks(ctx context.Context, gained func(class string, id ID) bool) ([]Ref, error) {
	marks := rt.cfg.OutboxMarks
	if marks == nil {
		return nil, nil
	}
	type found struct {
		id   ID
		mark outboxMark
	}
	var all []found
	err := marks.Marked(ctx, gained, func(class string, id ID, rev uint64) error {
		all = append(all, found{id, outboxMark{class: class, rev: rev}})
		return nil
	})
	var refs []Ref
	var errs []error
	for _, f := range all {
		ref, m := Ref{Class: f.mark.class, ID: f.id}, f.mark
		// Adopted after the load: the mark is not removed while the
		// sender's messages are not yet queued.
		rctx, cancel := context.WithTimeout(ctx, rt.cfg.LoadTimeout)
		err := rt.RepairOutbox(rctx, ref)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("activate the marked sender %s: %w", ref, err))
			continue
		}
		o := rt.outbox
		o.mu.Lock()
		if _, ok := o.mu.marks[ref.ID]; !ok {
			o.mu.marks[ref.ID] = m
		}
		o.mu.Unlock()
		refs = append(refs, ref)
	}
	return refs, errors.Join(append(errs, err)...)
}

// markDead marks sender as having dead letters. A mark not written is
// logged: the letter is still listed while a node that ran its sender
// lives.
func (o *outbox) markDead(sender Ref) {
	marks := o.rt.cfg.OutboxMarks
	if marks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(o.ctx, markTimeout)
	defer cancel()
	if err := marks.DeadMark(ctx, sender.Class, sender.ID); err != nil && o.ctx.Err() == nil {
		o.rt.logger.Warn("outbox: sender with a dead letter not marked; its dead letters are listed while a node that ran it lives", "sender", sender, "err", err)
	}
}

// MarkedDeadSenders returns the senders marked as having dead letters,
// each with its mark's revision (for UnmarkDead). Alone there are none.
func (rt *Runtime) MarkedDeadSenders(ctx context.Context) (map[Ref]uint64, error) {
	marks := rt.cfg.OutboxMarks
	if marks == nil {
		return nil, nil
	}
	out := map[Ref]uint64{}
	err := marks.DeadMarked(ctx, func(class string, id ID, rev uint64) error {
		out[Ref{Class: class, ID: id}] = rev
		return nil
	})
	return out, err
}

// UnmarkDead removes ref's dead mark if it is still at revision rev: the
// caller found ref without dead letters.
func (rt *Runtime) UnmarkDead(ctx context.Context, ref Ref, rev uint64) error {
	if marks := rt.cfg.OutboxMarks; marks != nil {
		return marks.DeadUnmark(ctx, ref.Class, ref.ID, rev)
	}
	return nil
}
