package alarms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// onFire runs on a shard consumer's goroutine: it hands the fire to a turn
// goroutine, waiting while TurnsInFlight turns run (backpressure on the
// consumer, which then stops pulling).
func (s *Service) onFire(fm *log.FireMsg) {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return // not acknowledged: delivered again later
	}
	s.mu.Lock()
	if !s.mu.firing {
		s.mu.Unlock()
		<-s.sem
		return
	}
	s.turns.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.turns.Done()
		s.runFire(fm)
	}()
}

// runFire runs the fire's Alarm turn and settles the fire: acknowledged
// once the turn's event is, retried with backoff after a failure, or
// dead-lettered once the class's retries are spent. It holds a turn slot
// (s.sem) on entry and gives it back.
//
// Only the handler's own failures (an error it returned, or a panic)
// spend the class's retries, which the fire's delivery count tells. A
// failure of the platform (platformFailure: the log unavailable, the
// object fenced or moving, its owner gone, a timeout) is retried here,
// with backoff and without the turn slot, while the fire is kept with
// InProgress (before each wait and each new attempt): its delivery count
// does not grow, so a long failover dead-letters nothing.
func (s *Service) runFire(fm *log.FireMsg) {
	held := true
	defer func() {
		if held {
			<-s.sem
		}
	}()
	retry := int(fm.Deliveries) - 1
	info := objects.AlarmInfo{Name: fm.Name, ScheduledAt: time.Unix(0, fm.At), RetryCount: retry, IsRetry: retry > 0}
	ref := objects.Ref{Class: fm.Class, ID: fm.ID}
	if s.cfg.OnFire != nil {
		s.cfg.OnFire(time.Since(info.ScheduledAt), info.IsRetry)
	}
	deliver := s.rt.Alarm
	if s.cfg.Deliver != nil {
		deliver = s.cfg.Deliver
	}
	lg := s.logger.With("class", fm.Class, "id", fm.ID, "alarm", fm.Name, "retry", retry)
	keep := func() bool {
		err := fm.InProgress()
		if err != nil {
			lg.Warn("alarm fire not kept; delivered again after the ack wait", "err", err)
		}
		return err == nil
	}
	var err error
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.TurnTimeout)
		err = deliver(ctx, ref, info)
		cancel()
		if !s.platformFailure(err) {
			break
		}
		delay := s.platformBackoff(attempt)
		lg.Warn("alarm not run: the platform failed; retrying without spending a retry", "in", delay, "err", err)
		s.deferred.Add(1)
		if !keep() {
			return
		}
		<-s.sem
		held = false
		select {
		case <-time.After(delay):
		case <-s.bgCtx.Done():
			return // not acknowledged: delivered again after the ack wait
		}
		select {
		case s.sem <- struct{}{}:
			held = true
		case <-s.ctx.Done():
			return
		}
		// The wait for a slot may have been long: the ack wait starts
		// over before the turn.
		if !keep() {
			return
		}
	}
	switch {
	case err == nil || errors.Is(err, objects.ErrStaleAlarm):
		if err != nil {
			lg.Debug("stale alarm fire dropped")
			s.stale.Add(1)
		} else {
			s.ran.Add(1)
		}
		if aerr := fm.Ack(s.ctx); aerr != nil {
			lg.Warn("alarm ran but its fire was not acknowledged; it runs again or is dropped as stale", "err", aerr)
		}
		return
	case errors.Is(err, objects.ErrClosed) || s.ctx.Err() != nil:
		return // left unacknowledged: delivered again after the ack wait
	case errors.Is(err, objects.ErrUnknownClass) || errors.Is(err, objects.ErrInvalidName) || errors.Is(err, objects.ErrBadInput):
		s.deadLetter(fm, lg, fmt.Sprintf("undeliverable: %v", err))
		return
	}
	retries := objects.DefaultAlarmRetries
	if c, cerr := s.rt.Class(fm.Class); cerr == nil {
		retries = c.AlarmRetries()
	}
	if retry >= retries {
		s.deadLetter(fm, lg, fmt.Sprintf("failed %d times: %v", retry+1, err))
		return
	}
	delay := s.backoff(retry)
	lg.Warn("alarm failed; retrying", "in", delay, "err", err)
	s.retried.Add(1)
	if rerr := fm.Retry(delay); rerr != nil {
		lg.Warn("alarm retry not requested; delivered again after the ack wait", "err", rerr)
	}
}

// platformFailure reports whether err is a failure of the platform, not
// of the alarm's handler: the log unavailable, the object fenced, moving
// or overloaded, a timeout, its owner gone (the cluster router reports that
// as ErrUnavailable). A handler's own error or panic (objects.HandlerError)
// is never one, even when it wraps one of these. An error of no known kind
// is not one either: it spends a retry, so that a failure that repeats
// forever ends in the dead letters rather than in an endless loop.
func (s *Service) platformFailure(err error) bool {
	var he *objects.HandlerError
	var ce *objects.ClientError
	if err == nil || s.ctx.Err() != nil || errors.As(err, &he) || errors.As(err, &ce) {
		return false
	}
	for _, platform := range []error{objects.ErrUnavailable, objects.ErrFenced, objects.ErrMoved, objects.ErrOverloaded,
		context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, platform) {
			return true
		}
	}
	return false
}

// platformBackoff is the delay after the attempt-th platform failure of
// one fire: RetryDelay doubled, at most RetryDelayMax and
// platformRetryDelayMax.
func (s *Service) platformBackoff(attempt int) time.Duration {
	return min(s.backoff(attempt), platformRetryDelayMax)
}

// platformRetryDelayMax keeps a fire's wait between platform retries (plus
// one turn, at most TurnTimeout) well under its ack wait, which each
// InProgress starts over.
const platformRetryDelayMax = log.FireAckWait / 4

// deadLetter moves the fire to the dead letters and abandons the alarm in
// the object (an event of its own), so that no activation or start
// publishes it again; `strata alarms retry` re-arms it.
func (s *Service) deadLetter(fm *log.FireMsg, lg *slog.Logger, reason string) {
	lg.Error("alarm dead-lettered", "reason", reason)
	s.dead.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.TurnTimeout)
	defer cancel()
	ref := objects.Ref{Class: fm.Class, ID: fm.ID}
	if _, err := s.rt.Class(fm.Class); err == nil {
		if err := s.rt.AbandonAlarm(ctx, ref, fm.Name, time.Unix(0, fm.At)); err != nil {
			lg.Warn("dead alarm not cleared in its object; it may run again on activation", "err", err)
		}
	}
	if err := fm.DeadLetter(s.ctx, reason); err != nil {
		lg.Error("alarm not dead-lettered; delivered again after the ack wait", "err", err)
	}
}

// backoff is the delay before retry number retry+1: RetryDelay doubled
// retry times, at most RetryDelayMax.
func (s *Service) backoff(retry int) time.Duration {
	d := s.cfg.RetryDelay
	for range retry {
		d *= 2
		if d >= s.cfg.RetryDelayMax {
			return s.cfg.RetryDelayMax
		}
	}
	return d
}

// listMax bounds one listing of alarms.
const listMax = 10000

// PendingAlarms lists up to 10,000 of the snapshot's pending alarms of class
// ("" for all), in key order (for the gateway's operator routes).
func (s *Service) PendingAlarms(ctx context.Context, class string) ([]objects.AlarmRecord, error) {
	var out []objects.AlarmRecord
	errFull := errors.New("full")
	err := s.proj.EachAlarm(class, func(class string, id log.ID, name string, at int64) error {
		if len(out) >= listMax {
			return errFull
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		out = append(out, objects.AlarmRecord{Class: class, ID: id, Name: name, At: time.Unix(0, at)})
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, fmt.Errorf("alarms: pending: %w", err)
	}
	for i := range out {
		if m, err := s.proj.Meta(out[i].Class, out[i].ID); err == nil {
			out[i].Object = m.Name
		}
	}
	return out, nil
}

// DeadAlarms lists up to 10,000 dead-lettered fires.
func (s *Service) DeadAlarms(ctx context.Context) ([]objects.AlarmRecord, error) {
	var out []objects.AlarmRecord
	errFull := errors.New("full")
	err := s.log.DeadFires(ctx, func(d log.DeadFire) error {
		if len(out) >= listMax {
			return errFull
		}
		out = append(out, objects.AlarmRecord{Class: d.Class, ID: d.ID, Name: d.Name, At: time.Unix(0, d.At), Reason: d.Reason})
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, fmt.Errorf("alarms: dead: %w", err)
	}
	for i := range out {
		if m, err := s.proj.Meta(out[i].Class, out[i].ID); err == nil {
			out[i].Object = m.Name
		}
	}
	return out, nil
}

// Dead lists the dead-lettered fires.
func (s *Service) Dead(ctx context.Context, fn func(log.DeadFire) error) error {
	return s.log.DeadFires(ctx, fn)
}

// RetryDead re-arms every dead-lettered alarm in its object (due at its
// original time, so it fires at once, with a full set of retries) unless
// the object has set that alarm again since, and removes it from the dead
// letters. It returns how many it re-armed.
func (s *Service) RetryDead(ctx context.Context) (int, error) {
	var dead []log.DeadFire
	if err := s.log.DeadFires(ctx, func(d log.DeadFire) error { dead = append(dead, d); return nil }); err != nil {
		return 0, fmt.Errorf("alarms: retry dead: %w", err)
	}
	n := 0
	for _, d := range dead {
		rearmed, err := s.rt.RearmAlarm(ctx, objects.Ref{Class: d.Class, ID: d.ID}, d.Name, time.Unix(0, d.At))
		if err != nil {
			return n, fmt.Errorf("alarms: retry dead %s/%s %q: %w", d.Class, d.ID, d.Name, err)
		}
		if rearmed {
			n++
		}
		if err := s.log.RemoveDead(ctx, d); err != nil {
			return n, fmt.Errorf("alarms: retry dead: %w", err)
		}
	}
	return n, nil
}
