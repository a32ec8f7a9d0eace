// Package projector applies acknowledged events to a Badger snapshot. The
// snapshot is derived data: the JetStream log is the truth, and the
// snapshot can always be rebuilt from it. Each object's applied version,
// stream sequence and chain hash are written in the same Badger transaction
// as the state they describe, so applying is idempotent and a crash at any
// point leaves a snapshot the log can catch up.
//
// Key layout (class names are [a-z][a-z0-9-]{0,62}, so \x00 separates):
//
//	d<class>\x00<id 32 bytes><key>   state
//	m<class>\x00<id 32 bytes>        meta: version, seq, hash, time, name
//	a<class>\x00<id 32 bytes><name>  pending alarm: due time (Unix ns)
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/strata-objects/strata/log"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("projector: closed")

// Config configures a Projector. Zero values take the documented defaults.
type Config struct {
	Dir      string // Badger directory; required unless InMemory
	InMemory bool   // tests only
	Logger   *slog.Logger
	// QueueLen is how many submitted records wait before Submit blocks.
	// Default 4096.
	QueueLen int
	// BatchMax bounds the records applied in one Badger transaction.
	// Default 512.
	BatchMax int
	// OnApplied is called on the apply goroutine after each committed
	// transaction with the objects it advanced.
	OnApplied func([]Applied)
}

// Applied reports that an object's events up to Version are in Badger.
type Applied struct {
	Class   string
	ID      log.ID
	Version uint64
	Seq     uint64
}

// Projector owns the Badger snapshot and the goroutine that applies to it.
type Projector struct {
	cfg    Config
	db     *badger.DB
	logger *slog.Logger

	queue   chan item
	stop    chan struct{}
	stopped chan struct{}
	applyMu sync.Mutex // one applier at a time: the loop or Apply

	mu struct {
		sync.Mutex
		closed bool
	}
	splits atomic.Uint64 // transactions split on ErrTxnTooBig (tests watch it)
}

// item is a record to apply, or a flush marker (done != nil).
type item struct {
	rec  log.Record
	done chan error
}

// Open opens (or creates) the snapshot and starts the apply goroutine.
func Open(cfg Config) (*Projector, error) {
	if cfg.Dir == "" && !cfg.InMemory {
		return nil, errors.New("projector: Config.Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 512
	}
	// The library's defaults take hundreds of MiB; the snapshot is a cache
	// of the log, so a small profile and no fsync of its own.
	opts := badger.DefaultOptions(cfg.Dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(4 << 20).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithLogger(badgerLogger{cfg.Logger})
	if cfg.InMemory {
		opts.Dir, opts.ValueDir = "", ""
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", cfg.Dir, err)
	}
	p := &Projector{
		cfg:     cfg,
		db:      db,
		logger:  cfg.Logger,
		queue:   make(chan item, cfg.QueueLen),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go p.loop()
	return p, nil
}

// Close applies what was submitted, stops the goroutine and closes Badger.
func (p *Projector) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	p.mu.Unlock()
	close(p.stop)
	select {
	case <-p.stopped:
	case <-ctx.Done():
		return fmt.Errorf("close projector: %w", ctx.Err())
	}
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

// Submit queues rec for asynchronous apply. It blocks while the queue is
// full: the projector's pace is the writers' back-pressure.
func (p *Projector) Submit(ctx context.Context, rec log.Record) error {
	return p.enqueue(ctx, item{rec: rec})
}

// Flush returns when every record submitted before it is applied.
func (p *Projector) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	if err := p.enqueue(ctx, item{done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Projector) enqueue(ctx context.Context, it item) error {
	p.mu.Lock()
	closed := p.mu.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case p.queue <- it:
		return nil
	case <-p.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop applies queued records in batches until Close, then drains.
func (p *Projector) loop() {
	defer close(p.stopped)
	batch := make([]log.Record, 0, p.cfg.BatchMax)
	var flushes []chan error
	for {
		var it item
		select {
		case it = <-p.queue:
		case <-p.stop:
			// Drain what was queued before Close.
			for {
				select {
				case it = <-p.queue:
					batch, flushes = p.take(it, batch, flushes)
				default:
					p.applyBatch(batch, flushes)
					return
				}
			}
		}
		batch, flushes = p.take(it, batch, flushes)
		// Take everything already waiting, up to a batch.
	more:
		for len(batch) < cap(batch) {
			select {
			case it = <-p.queue:
				batch, flushes = p.take(it, batch, flushes)
			default:
				break more
			}
		}
		p.applyBatch(batch, flushes)
		batch, flushes = batch[:0], flushes[:0]
	}
}

func (p *Projector) take(it item, batch []log.Record, flushes []chan error) ([]log.Record, []chan error) {
	if it.done != nil {
		return batch, append(flushes, it.done)
	}
	return append(batch, it.rec), flushes
}

func (p *Projector) applyBatch(batch []log.Record, flushes []chan error) {
	var err error
	if len(batch) > 0 {
		if err = p.Apply(batch); err != nil {
			p.logger.Error("projector apply failed; activations catch up from the log", "records", len(batch), "err", err)
		}
	}
	for _, f := range flushes {
		f <- err
	}
}
