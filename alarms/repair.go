package alarms

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// Repair beyond start and activation (issue 15, defect 3). An alarm whose
// event was acknowledged but whose schedule was never published (the
// publish failed every attempt; the node died between the two) is
// otherwise found only when its object is activated again or a node
// restarts. Two more paths find it:
//
//   - The sweep: every SweepInterval, one page of at most SweepPage
//     entries of the snapshot's pending-alarm index is checked (bounded
//     work per period), going on from where the last page ended and
//     wrapping around at the end. It skips objects active on this node
//     (their alarms were checked on activation and their changes are on
//     their way) and, in a cluster, objects this node does not own (its
//     snapshot of them may be old: republishing from it could put back an
//     alarm their owner has since replaced).
//   - Takeover: a node that gains objects from nodes that left the
//     cluster reads the last TakeoverLookback of every shard's log, where
//     the events whose schedules the dead node may not have published
//     are, and checks the alarms those events left pending on the objects
//     it gained. (Its snapshot cannot tell: it holds only the objects
//     this node has run.)
//
// Both only queue ensure jobs: the publisher checks and publishes them in
// queue order with the changes of live activations, in batches.
//
// Durable messages (objects/messages.go) need the same three repairs, and
// get them here: a sender's pending messages are delivered by the node
// that activates it, so Start, each sweep tick (a page of the snapshot's
// outbox index) and a takeover (the senders among the gained objects'
// events in the lookback) activate the senders with pending messages
// (objects.Runtime.RepairOutbox), skipping those active here and, in a
// cluster, those another node owns. A takeover also activates the gained
// senders that their node marked for messages pending longer than the
// lookback covers (objects.Runtime.AdoptOutboxMarks).

// sweep checks a page of the pending-alarm index every SweepInterval
// until the fires stop.
func (s *Service) sweep() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var cursor projector.AlarmCursor
	var outbox projector.OutboxCursor
	for {
		select {
		case <-s.bgCtx.Done():
			return
		case <-t.C:
		}
		var err error
		if cursor, err = s.sweepPage(cursor); err != nil && s.bgCtx.Err() == nil {
			s.logger.Warn("alarm sweep: page not checked; the next tick tries again", "err", err)
		}
		if outbox, err = s.outboxPage(outbox, s.cfg.SweepPage); err != nil && s.bgCtx.Err() == nil {
			s.logger.Warn("outbox sweep: page not checked; the next tick tries again", "err", err)
		}
	}
}

// outboxPage activates the senders of one page of at most n pending
// messages of the snapshot's outbox index after cursor, and returns where
// the next page starts (the zero cursor after the index's end).
func (s *Service) outboxPage(cursor projector.OutboxCursor, n int) (projector.OutboxCursor, error) {
	ms, next, err := s.proj.OutboxPage(cursor, n)
	if err != nil {
		return cursor, err
	}
	seen := map[objects.Ref]bool{}
	for _, m := range ms {
		ref := objects.Ref{Class: m.Class, ID: m.ID}
		if seen[ref] || !s.owns(m.Class, m.ID) || s.rt.Active(m.Class, m.ID) {
			continue
		}
		seen[ref] = true
		s.repairOutbox(ref)
	}
	return next, nil
}

// repairOutbox activates a sender with pending messages; its load hands
// them to the outbox.
func (s *Service) repairOutbox(ref objects.Ref) {
	ctx, cancel := context.WithTimeout(s.bgCtx, s.cfg.TurnTimeout)
	defer cancel()
	if err := s.rt.RepairOutbox(ctx, ref); err != nil && s.bgCtx.Err() == nil {
		s.logger.Warn("outbox of a sender not loaded; the next sweep tries again", "class", ref.Class, "id", ref.ID, "err", err)
		return
	}
	s.outboxRepaired.Add(1)
}

// outboxStart activates every sender with pending messages in the
// snapshot, a page at a time (Start runs it in the background: the
// senders' loads need the runtime serving).
func (s *Service) outboxStart() {
	defer s.bg.Done()
	var cursor projector.OutboxCursor
	for s.bgCtx.Err() == nil {
		next, err := s.outboxPage(cursor, s.cfg.SweepPage)
		if err != nil {
			s.logger.Warn("outbox repair at start: page not read; the sweep goes on from here", "err", err)
			return
		}
		if next == (projector.OutboxCursor{}) {
			return
		}
		cursor = next
	}
}

// errPageFull ends the read of one sweep page.
var errPageFull = errors.New("page full")

// sweepPage queues ensure jobs for the alarms of one page after cursor
// and returns where the next page starts (the zero cursor after the
// index's end).
func (s *Service) sweepPage(cursor projector.AlarmCursor) (projector.AlarmCursor, error) {
	fires, next, err := s.alarmPage(cursor, s.cfg.SweepPage)
	if err != nil {
		return cursor, err
	}
	n := 0
	for _, f := range fires {
		if !s.owns(f.Class, f.ID) || s.rt.Active(f.Class, f.ID) {
			continue
		}
		if !s.enqueue(s.bgCtx, job{kind: jobEnsure, fire: f}) {
			return cursor, errors.New("alarms: sweep: service stopping")
		}
		n++
	}
	s.swept.Add(uint64(n))
	return next, nil
}

// alarmPage reads at most n entries of the snapshot's pending-alarm index
// after cursor, and the cursor the next page starts after (the zero
// cursor once the index's end is reached).
func (s *Service) alarmPage(cursor projector.AlarmCursor, n int) ([]log.Fire, projector.AlarmCursor, error) {
	var fires []log.Fire
	err := s.proj.EachAlarmAfter(cursor, func(class string, id log.ID, name string, at int64) error {
		if len(fires) == n {
			return errPageFull
		}
		fires = append(fires, log.Fire{Class: class, ID: id, Name: name, At: at})
		return nil
	})
	switch {
	case errors.Is(err, errPageFull):
		last := fires[len(fires)-1]
		return fires, projector.AlarmCursor{Class: last.Class, ID: last.ID, Name: last.Name}, nil
	case err != nil:
		return nil, cursor, err
	}
	return fires, projector.AlarmCursor{}, nil
}

func (s *Service) owns(class string, id log.ID) bool {
	return s.cfg.Owns == nil || s.cfg.Owns(class, id)
}

// TakeOver reports that this node has gained the objects for which gained
// reports true from nodes that left: their alarms set in the last
// TakeoverLookback are checked and their missing schedules published. It
// does not block (the cluster calls it from its membership watcher); a
// takeover queued while too many wait is merged into the next one.
func (s *Service) TakeOver(gained func(class string, id log.ID) bool) {
	s.takeMu.Lock()
	defer s.takeMu.Unlock()
	prev := s.takeNext
	if prev == nil {
		s.takeNext = gained
	} else {
		s.takeNext = func(class string, id log.ID) bool { return prev(class, id) || gained(class, id) }
	}
	select {
	case s.takeWake <- struct{}{}:
	default: // already woken: the worker takes s.takeNext when it runs
	}
}

// takeovers runs the queued takeovers, one at a time, until the fires
// stop.
func (s *Service) takeovers() {
	defer s.bg.Done()
	for {
		select {
		case <-s.bgCtx.Done():
			return
		case <-s.takeWake:
		}
		s.takeMu.Lock()
		gained := s.takeNext
		s.takeNext = nil
		s.takeMu.Unlock()
		if gained == nil {
			continue
		}
		if err := s.takeOver(s.bgCtx, gained, time.Now().Add(-s.cfg.TakeoverLookback)); err != nil && s.bgCtx.Err() == nil {
			s.logger.Warn("alarms of objects taken over not all checked; the sweep and their next activation check them", "err", err)
		}
	}
}

// takeOver reads every shard's log since since, keeps the last alarm
// write per alarm of the gained objects, and queues a check of each alarm
// still set.
func (s *Service) takeOver(ctx context.Context, gained func(string, log.ID) bool, since time.Time) error {
	type pending struct {
		fire log.Fire
		set  bool
	}
	type object struct {
		class string
		id    log.ID
	}
	last := map[alarmKey]pending{}
	versions := map[object]uint64{} // each gained object's last version read
	senders := map[object]bool{}    // gained objects that sent messages
	var errs []error
	for shard := range s.log.Shards() {
		err := s.log.ReadSince(ctx, shard, since, func(r log.Record) error {
			e := r.Event
			if !gained(e.Class, e.ID) {
				return nil
			}
			versions[object{e.Class, e.ID}] = e.Version
			for _, t := range e.Turns {
				if len(t.Sends) > 0 || slices.ContainsFunc(t.Settles, func(s log.Settle) bool { return s.Retry }) {
					senders[object{e.Class, e.ID}] = true // sent, or put a dead letter back
				}
				for _, w := range t.Writes {
					switch w.Op {
					case log.OpSetAlarm, log.OpDeleteAlarm:
						f := log.Fire{Class: e.Class, ID: e.ID, Name: w.Key, At: w.At}
						last[keyOf(f)] = pending{fire: f, set: w.Op == log.OpSetAlarm}
					}
				}
			}
			return nil
		})
		errs = append(errs, err)
	}
	n := 0
	for _, p := range last {
		if !p.set {
			continue
		}
		// Seen at the object's last version read: the alarm's state is
		// that version's, as no later event of it changed the alarm.
		v := versions[object{p.fire.Class, p.fire.ID}]
		if !s.enqueue(ctx, job{kind: jobEnsure, fire: p.fire, version: v}) {
			return errors.Join(append(errs, errors.New("alarms: takeover: service stopping"))...)
		}
		n++
	}
	s.takenOver.Add(uint64(n))
	s.logger.Info("alarms of objects taken over checked", "since", since, "alarms", n)
	// Senders whose messages have waited since before the lookback were
	// marked by their node (objects/outboxmarks.go).
	marked, err := s.rt.AdoptOutboxMarks(ctx, gained)
	if err != nil && ctx.Err() == nil {
		s.logger.Warn("outbox: senders marked by a node that left not all activated; they stay marked, and deliver on their next activation", "err", err)
	}
	s.outboxRepaired.Add(uint64(len(marked)))
	for _, ref := range marked {
		delete(senders, object{ref.Class, ref.ID})
	}
	for o := range senders {
		if ctx.Err() != nil {
			break
		}
		s.repairOutbox(objects.Ref{Class: o.class, ID: o.id})
	}
	return errors.Join(errs...)
}
