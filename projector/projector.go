package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/internal/budget"
	"github.com/strata-objects/strata/log"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("projector: closed")

// Defaults for Config's zero values.
const (
	queueLenDefault      = 4096
	queueBytesMaxDefault = 64 << 20
	batchMaxDefault      = 512
)

// Config configures a Projector. Zero values take the documented defaults.
type Config struct {
	// Dir is the Badger directory. Required unless InMemory.
	Dir string
	// InMemory keeps the snapshot in memory only. For tests.
	InMemory bool
	// Logger receives gaps, apply failures, and Badger's warnings and
	// errors. Default slog.Default().
	Logger *slog.Logger
	// QueueLen is how many submitted records (and flushes) wait before
	// Submit blocks. Default 4096; negative is invalid.
	QueueLen int
	// QueueBytesMax bounds the bytes of the submitted records waiting to
	// be applied (an event's stored bytes and its decoded copy count);
	// Submit blocks past it, as past QueueLen. One record always fits.
	// Default 64 MiB; negative is invalid.
	QueueBytesMax int
	// BatchMax is the most records applied in one Badger transaction.
	// Default 512; negative is invalid.
	BatchMax int
	// OnApplied, if set, is called after each committed transaction with
	// the records that changed state, in apply order: on the apply
	// goroutine for submitted records, on Apply's caller for Apply. It
	// must not call Close, Apply or Flush, nor Submit (which can block on
	// the very goroutine that would drain the queue). The slice is the
	// callee's to keep.
	OnApplied func([]Applied)
	// Log, if set, is the log the projector heals from: events it missed
	// (a batch that failed, a submit that was cut off) are read from it
	// again (heal.go). Nil: a gap is logged and skipped, and the object
	// catches up when it next loads.
	Log Source
	// TrackWatermarks advances each shard's watermark while the projector
	// runs, over the stream sequences it has applied without a hole
	// (watermark.go). Only the log's one writer may set it (a single
	// node): another writer's events would be holes, and the watermark
	// would stall, never lie. Requires Log (for the shard of an object).
	TrackWatermarks bool
	// BeforeCommit, if set, runs before each Badger commit of the apply
	// path with the number of records the transaction settles; an error
	// fails that commit as one of Badger's would. Tests use it to make a
	// batch fail for real.
	BeforeCommit func(records int) error
	// Tracer, if set, traces the apply of sampled events: a span per
	// traced turn, the child of its event's append span (spans.go). Nil:
	// tracing off.
	Tracer trace.Tracer

	// tune, if set, adjusts Badger's options after the defaults. Tests use
	// it to shrink Badger's transaction limit so the split paths run.
	tune func(*badger.Options)
}

// Applied reports that an object's events up to Version are in Badger.
type Applied struct {
	Class   string
	ID      log.ID
	Version uint64
	Seq     uint64
	Time    int64 // the event's time, Unix nanoseconds (projector lag in metrics)
}

// Projector owns the Badger snapshot and the goroutine that applies to it.
type Projector struct {
	cfg    Config
	db     *badger.DB
	logger *slog.Logger

	queue    chan item
	queued   *budget.Bytes // bytes of the records in queue and being applied
	stop     chan struct{} // closed by Close once no Submit or Flush can enqueue
	abort    chan struct{} // closed by Close when its context ends: drop the rest
	loopDone chan struct{} // closed when the apply goroutine returns

	submitters gate       // Submit and Flush while they may enqueue
	users      gate       // Apply and the readers while they use db
	applyMu    sync.Mutex // one writer at a time: the apply goroutine or Apply

	ctx    context.Context // reads of the log for healing; cancelled by Close
	cancel context.CancelFunc
	marks  watermarks // guarded by applyMu
	metas  *metaCache // guarded by applyMu (metacache.go)

	closeOnce sync.Once
	closed    chan struct{} // closed when Close has finished
	closeErr  error         // Close's result, set before closed is closed

	health *health

	stats struct {
		boundarySplits atomic.Uint64 // commits forced by ErrTxnTooBig at an event boundary
		eventSplits    atomic.Uint64 // commits forced by ErrTxnTooBig inside one event
		gapsHealed     atomic.Uint64 // gaps filled by reading the log
		objectsHealed  atomic.Uint64 // objects of failed batches healed from the log
		commitFailures atomic.Uint64 // batches whose commit failed
		metaReads      atomic.Uint64 // metas the apply path read from Badger, not the cache
		markCommits    atomic.Uint64 // watermarks committed in a transaction of their own
	}
}

// Open opens (or creates) the snapshot and starts the apply goroutine.
func Open(cfg Config) (*Projector, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	h := &health{}
	db, err := badger.Open(cfg.badgerOptions(h))
	if err != nil {
		return nil, fmt.Errorf("projector: open snapshot %q: %w", cfg.Dir, err)
	}
	p := &Projector{
		cfg:      cfg,
		db:       db,
		logger:   cfg.Logger,
		queue:    make(chan item, cfg.QueueLen),
		queued:   budget.New(cfg.QueueBytesMax),
		stop:     make(chan struct{}),
		abort:    make(chan struct{}),
		loopDone: make(chan struct{}),
		closed:   make(chan struct{}),
		health:   h,
		metas:    newMetaCache(metaCacheLen),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.submitters.init()
	p.users.init()
	go p.run()
	return p, nil
}

func (cfg *Config) setDefaults() error {
	switch {
	case cfg.InMemory && cfg.Dir != "":
		return errors.New("projector: Config.Dir and Config.InMemory are exclusive")
	case !cfg.InMemory && cfg.Dir == "":
		return errors.New("projector: Config.Dir is required")
	case cfg.QueueBytesMax < 0:
		return fmt.Errorf("projector: Config.QueueBytesMax %d is negative", cfg.QueueBytesMax)
	case cfg.QueueLen < 0:
		return fmt.Errorf("projector: Config.QueueLen %d is negative", cfg.QueueLen)
	case cfg.BatchMax < 0:
		return fmt.Errorf("projector: Config.BatchMax %d is negative", cfg.BatchMax)
	case cfg.TrackWatermarks && cfg.Log == nil:
		return errors.New("projector: Config.TrackWatermarks needs Config.Log")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = queueLenDefault
	}
	if cfg.QueueBytesMax == 0 {
		cfg.QueueBytesMax = queueBytesMaxDefault
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = batchMaxDefault
	}
	return nil
}

// badgerOptions is the small-memory profile. Badger's defaults (64 MiB
// memtables ×5, a 256 MiB block cache, 1 GiB value log files, 4
// compactors) take hundreds of MiB; the snapshot is a cache of the log, so
// it trades some throughput for a footprint near 100 MiB, and does not
// fsync (see doc.go). With one writer, conflict detection is only cost.
func (cfg *Config) badgerOptions(h *health) badger.Options {
	opts := badger.DefaultOptions(cfg.Dir).
		WithInMemory(cfg.InMemory).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithLogger(badgerLogger{cfg.Logger, h})
	if cfg.tune != nil {
		cfg.tune(&opts)
	}
	return opts
}

// Close applies what was submitted, stops the apply goroutine and closes
// Badger. If ctx ends first, the goroutine stops after its current
// transaction and the records still queued are dropped: the log has them,
// and their objects catch up from it when they load. Close always leaves
// the goroutine stopped and Badger closed; later calls return the first
// call's result.
func (p *Projector) Close(ctx context.Context) error {
	first := false
	p.closeOnce.Do(func() { first = true })
	if !first {
		select {
		case <-p.closed:
			return p.closeErr
		case <-ctx.Done():
			return fmt.Errorf("projector: close: %w", ctx.Err())
		}
	}
	defer close(p.closed)

	// No Submit or Flush enqueues after this, so the goroutine's final
	// drain sees everything that was accepted.
	p.submitters.shut()
	close(p.stop)
	var errs []error
	select {
	case <-p.loopDone:
	case <-ctx.Done():
		close(p.abort)
		p.cancel()
		<-p.loopDone // at most the batch in progress away
		errs = append(errs, fmt.Errorf("projector: close: %w; queued records dropped", ctx.Err()))
	}
	p.cancel()
	p.users.shut()
	if err := p.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("projector: close snapshot: %w", err))
	}
	p.closeErr = errors.Join(errs...)
	return p.closeErr
}

// Stats are counters since Open.
type Stats struct {
	GapsHealed     uint64 // gaps filled by reading the missing events from the log
	ObjectsHealed  uint64 // objects of failed batches healed from the log
	CommitFailures uint64 // batches of the apply goroutine whose commit failed
}

// Stats returns the counters since Open.
func (p *Projector) Stats() Stats {
	return Stats{
		GapsHealed:     p.stats.gapsHealed.Load(),
		ObjectsHealed:  p.stats.objectsHealed.Load(),
		CommitFailures: p.stats.commitFailures.Load(),
	}
}

func (p *Projector) beforeCommit(records int) error {
	if p.cfg.BeforeCommit == nil {
		return nil
	}
	return p.cfg.BeforeCommit(records)
}

// gate admits callers until it is shut, then waits for the admitted ones
// to leave. Unlike an RWMutex it may be entered recursively (OnApplied
// may read the snapshot), and a shut gate refuses instead of blocking.
type gate struct {
	mu       sync.Mutex
	isShut   bool
	inside   sync.WaitGroup
	shutting chan struct{} // closed by shut: wakes callers waiting inside
	entered  atomic.Uint64 // callers admitted so far (tests watch it)
}

func (g *gate) init() { g.shutting = make(chan struct{}) }

// enter reports whether the caller may go on; if so it must call leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isShut {
		return false
	}
	g.inside.Add(1)
	g.entered.Add(1)
	return true
}

func (g *gate) leave() { g.inside.Done() }

// shut refuses new callers, wakes those blocked on shutting, and waits
// for all admitted callers to leave.
func (g *gate) shut() {
	g.mu.Lock()
	g.isShut = true
	close(g.shutting)
	g.mu.Unlock()
	g.inside.Wait()
}
