package projector

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/internal/budget"
	"github.com/strata-objects/strata/log"
)

// item is a queued record, or a flush marker (done != nil).
type item struct {
	rec  log.Record
	done chan error
}

// Submit queues rec to be applied asynchronously. It blocks while the
// queue is full (the projector's pace is the writers' back-pressure) until
// ctx ends. A record the projector could never apply is refused here.
func (p *Projector) Submit(ctx context.Context, rec log.Record) error {
	if err := checkRecord(rec); err != nil {
		return err
	}
	return p.enqueue(ctx, item{rec: rec})
}

// Flush returns when every record submitted before the call has been
// applied. It returns the first apply error since the previous flush was
// answered, if any; the records concerned are left to catch up from the
// log.
func (p *Projector) Flush(ctx context.Context) error {
	done := make(chan error, 1) // the apply goroutine never blocks on it
	if err := p.enqueue(ctx, item{done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("projector: flush: %w", ctx.Err())
	}
}

func (p *Projector) enqueue(ctx context.Context, it item) error {
	if !p.submitters.enter() {
		return ErrClosed
	}
	defer p.submitters.leave()
	size := it.bytes()
	switch err := p.queued.Take(ctx, size, p.submitters.shutting); {
	case errors.Is(err, budget.ErrStopped):
		return ErrClosed
	case err != nil:
		return fmt.Errorf("projector: submit: %w", err)
	}
	select {
	case p.queue <- it:
		return nil
	case <-p.submitters.shutting:
		p.queued.Give(size)
		return ErrClosed
	case <-ctx.Done():
		p.queued.Give(size)
		return fmt.Errorf("projector: submit: %w", ctx.Err())
	}
}

// recordOverheadBytes is what a queued record counts beyond its data.
const recordOverheadBytes = 256

// bytes is what a queued item counts against Config.QueueBytesMax: the
// stored bytes and the decoded event (about as large) of a record.
func (it item) bytes() int {
	if it.done != nil {
		return 0
	}
	return 2*len(it.rec.Data) + recordOverheadBytes
}

// recsBytes is what items of recs counted.
func recsBytes(recs []log.Record) int {
	n := 0
	for _, rec := range recs {
		n += item{rec: rec}.bytes()
	}
	return n
}

// pending is what the apply goroutine has taken from the queue and not
// yet applied.
type pending struct {
	recs    []log.Record
	flushes []chan error
}

func (b *pending) take(it item) {
	if it.done != nil {
		b.flushes = append(b.flushes, it.done)
		return
	}
	b.recs = append(b.recs, it.rec)
}

// fill takes what is already queued, without waiting, until max records.
func (b *pending) fill(queue <-chan item, max int) {
	for len(b.recs) < max {
		select {
		case it := <-queue:
			b.take(it)
		default:
			return
		}
	}
}

func (b *pending) empty() bool { return len(b.recs) == 0 && len(b.flushes) == 0 }

func (b *pending) reset() {
	clear(b.recs) // drop references to the events
	b.recs, b.flushes = b.recs[:0], b.flushes[:0]
}

// run is the apply goroutine: it takes everything queued, up to a batch,
// applies it in one go, answers the flushes that were taken, and repeats.
// On stop it drains the queue the same way, unless abort says to drop it.
func (p *Projector) run() {
	defer close(p.loopDone)
	var b pending
	b.recs = make([]log.Record, 0, p.cfg.BatchMax)
	var flushErr error // the first apply error since flushes were last answered
	var h healer
	defer h.stop()
	apply := func() {
		if len(b.recs) > 0 {
			var spans []trace.Span
			if p.cfg.Tracer != nil {
				spans = p.traceBatch(b.recs)
			}
			p.applyMu.Lock()
			err := p.applyLocked(b.recs, nil)
			p.applyMu.Unlock()
			endBatch(spans, err)
			if err != nil {
				p.stats.commitFailures.Add(1)
				p.logger.Error("projector: apply failed; the objects heal from the log",
					"records", len(b.recs), "err", err)
				p.remember(&h, b.recs)
				if flushErr == nil {
					flushErr = err
				}
				msg := err.Error()
				p.health.apply.Store(&msg)
			} else {
				p.health.apply.Store(nil)
			}
		}
		// The bytes come back before a flush is answered: whoever flushed
		// sees the queue as it is after the batch.
		p.queued.Give(recsBytes(b.recs))
		if len(b.flushes) > 0 {
			for _, done := range b.flushes {
				done <- flushErr
			}
			flushErr = nil
		}
		b.reset()
	}
	drain := func() {
		for {
			select {
			case <-p.abort:
				p.drop()
				return
			default:
			}
			b.fill(p.queue, p.cfg.BatchMax)
			if b.empty() {
				return
			}
			apply()
		}
	}
	for {
		// Stop takes precedence over a busy queue, so that an aborting
		// Close waits for at most the batch in progress.
		select {
		case <-p.stop:
			drain()
			return
		default:
		}
		select {
		case it := <-p.queue:
			b.take(it)
			b.fill(p.queue, p.cfg.BatchMax)
			apply()
		case <-h.wake():
			h.timer = nil
			p.heal(&h)
		case <-p.stop:
			drain()
			if len(h.missed) > 0 {
				p.logger.Warn("projector: closed before healing; the objects catch up from the log", "objects", len(h.missed))
			}
			return
		}
	}
}

// drop empties the queue without applying: flushes are answered with
// ErrClosed, records are counted and given up.
func (p *Projector) drop() {
	n := 0
	for {
		select {
		case it := <-p.queue:
			if it.done != nil {
				it.done <- ErrClosed
			} else {
				n++
				p.queued.Give(it.bytes())
			}
		default:
			if n > 0 {
				p.logger.Warn("projector: closed before applying; the objects catch up from the log", "records", n)
			}
			return
		}
	}
}
