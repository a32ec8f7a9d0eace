package projector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-objects/strata/log"
)

// Healing. The projector is handed an object's events one by one, and a
// handed event can be lost before it reaches Badger: its batch failed to
// commit, or its Submit was cut off. Every later event of that object then
// arrives after a gap. With Config.Log set, the projector heals both ways:
//
//   - an event after a gap makes it read the missing events of that object
//     from the log (at most BatchMax at a time) and apply them first, so a
//     live object's snapshot and applied version keep moving;
//   - the objects of a batch that failed to commit are remembered, and the
//     apply goroutine reads each one's events after its meta from the log
//     again until that succeeds (retrying with backoff), so an object with
//     no later event heals too.
//
// The log is the truth; what is read from it is checked to continue the
// object's chain (consecutive versions, PrevHash) before it is applied.

// Source is the log the projector reads what it missed from: *log.Log.
type Source interface {
	Read(ctx context.Context, class string, id log.ID, fromSeq uint64, fn func(log.Record) error) error
	ShardOf(id log.ID) int
}

// Limits of healing.
const (
	// missedMax bounds the objects remembered for healing after failed
	// batches; past it more are only logged (they catch up from the log
	// when they load, or at the next start).
	missedMax = 1 << 16
	// healRetryMin and healRetryMax bound the backoff between attempts to
	// heal the remembered objects while Badger keeps failing.
	healRetryMin = 100 * time.Millisecond
	healRetryMax = 10 * time.Second
	// healReadTimeout bounds one read of the log for healing.
	healReadTimeout = 30 * time.Second
)

// gapError: rec does not follow the object's applied version in meta.
type gapError struct {
	rec  log.Record
	meta Meta
}

func (e *gapError) Error() string {
	ev := e.rec.Event
	return fmt.Sprintf("projector: %s/%s v%d follows applied v%d", ev.Class, ev.ID, ev.Version, e.meta.Version)
}

// errEnough stops a log read that has what it wanted.
var errEnough = errors.New("enough")

// missing reads from the log the events between gap.meta and gap.rec, at
// most BatchMax of them, starting right after the applied version and
// continuing its chain. It returns nil if the log does not have them (a
// real gap: the caller skips gap.rec) or cannot be read now.
func (p *Projector) missing(gap *gapError) []log.Record {
	ev := gap.rec.Event
	recs, err := p.readAfter(ev.Class, ev.ID, gap.meta, gap.rec.Seq)
	if err == nil && len(recs) == 0 {
		err = errors.New("the log has none of them")
	}
	if err != nil {
		p.logger.Error("projector: event gap, and reading the missing events from the log failed; skipped, the object catches up from the log when it loads",
			"class", ev.Class, "id", ev.ID, "applied", gap.meta.Version, "event", ev.Version, "seq", gap.rec.Seq, "err", err)
		return nil
	}
	p.stats.gapsHealed.Add(1)
	p.logger.Warn("projector: event gap healed from the log",
		"class", ev.Class, "id", ev.ID, "applied", gap.meta.Version, "event", ev.Version, "read", len(recs))
	return recs
}

// readAfter reads an object's events after meta (before sequence before,
// if not 0), at most BatchMax, checked to continue meta's chain.
func (p *Projector) readAfter(class string, id log.ID, meta Meta, before uint64) ([]log.Record, error) {
	ctx, cancel := context.WithTimeout(p.ctx, healReadTimeout)
	defer cancel()
	var recs []log.Record
	version, hash := meta.Version, meta.Hash
	err := p.cfg.Log.Read(ctx, class, id, meta.Seq+1, func(rec log.Record) error {
		if before != 0 && rec.Seq >= before || len(recs) == p.cfg.BatchMax {
			return errEnough
		}
		if err := checkRecord(rec); err != nil {
			return err
		}
		if rec.Event.Version != version+1 || rec.Event.PrevHash != hash {
			return fmt.Errorf("event at sequence %d (v%d) does not continue v%d's chain", rec.Seq, rec.Event.Version, version)
		}
		version, hash = rec.Event.Version, rec.Hash()
		recs = append(recs, rec)
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("projector: read %s/%s after v%d from the log: %w", class, id, meta.Version, err)
	}
	return recs, nil
}

// splice returns recs with ins inserted before index i, in a new slice
// (the caller's may be reused).
func splice(recs []log.Record, i int, ins []log.Record) []log.Record {
	out := make([]log.Record, 0, len(recs)+len(ins))
	out = append(out, recs[:i]...)
	out = append(out, ins...)
	return append(out, recs[i:]...)
}

// objKey names an object remembered for healing.
type objKey struct {
	class string
	id    log.ID
}

// healer is the apply goroutine's memory of objects whose events a failed
// batch dropped. Only the apply goroutine uses it.
type healer struct {
	missed map[objKey]struct{}
	delay  time.Duration // the next retry's backoff
	timer  *time.Timer   // nil when nothing waits
}

// remember notes the objects of recs, a batch that failed.
func (p *Projector) remember(h *healer, recs []log.Record) {
	if p.cfg.Log == nil {
		return
	}
	if h.missed == nil {
		h.missed = map[objKey]struct{}{}
	}
	dropped := 0
	for _, rec := range recs {
		k := objKey{rec.Event.Class, rec.Event.ID}
		if _, ok := h.missed[k]; ok {
			continue
		}
		if len(h.missed) >= missedMax {
			dropped++
			continue
		}
		h.missed[k] = struct{}{}
	}
	if dropped > 0 {
		p.logger.Error("projector: too many objects to heal; these catch up from the log when they load", "objects", dropped)
	}
	p.scheduleHeal(h)
}

func (p *Projector) scheduleHeal(h *healer) {
	if len(h.missed) == 0 || h.timer != nil {
		return
	}
	h.delay = min(max(2*h.delay, healRetryMin), healRetryMax)
	h.timer = time.NewTimer(h.delay)
}

// wake is the channel that fires when the remembered objects are due.
func (h *healer) wake() <-chan time.Time {
	if h.timer == nil {
		return nil
	}
	return h.timer.C
}

func (h *healer) stop() {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
}

// heal reads each remembered object's events after its meta from the log
// and applies them. Objects that heal are forgotten; on a failure the rest
// wait for the next retry.
func (p *Projector) heal(h *healer) {
	h.stop()
	for k := range h.missed {
		select {
		case <-p.abort:
			return
		default:
		}
		if err := p.healObject(k); err != nil {
			p.logger.Warn("projector: healing from the log failed; retrying", "class", k.class, "id", k.id, "objects", len(h.missed), "err", err)
			p.scheduleHeal(h)
			return
		}
		delete(h.missed, k)
		p.stats.objectsHealed.Add(1)
	}
	h.delay = 0
}

// healObject applies what the log has of one object after its meta.
func (p *Projector) healObject(k objKey) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	for {
		meta, err := p.Meta(k.class, k.id)
		if err != nil {
			return err
		}
		recs, err := p.readAfter(k.class, k.id, meta, 0)
		if err != nil || len(recs) == 0 {
			return err
		}
		if err := p.applyLocked(recs, nil); err != nil {
			return err
		}
		if len(recs) < p.cfg.BatchMax {
			return nil
		}
	}
}
