package objects

import (
	lru "container/list"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// An activation is the one live instance of an object on this node. Its
// state, except the admission lock and the applied version, belongs to
// whoever holds its drive lock (drive): the write path is a small state
// machine, and the holder drives it:
//
//	inputs:  a request from the mailbox (or a caller's, run inline), an
//	         append's result, the idle timer, the runtime stopping
//	outputs: the next event to append, the responses released by an ack
//
// Three kinds of goroutine take the drive lock, one at a time:
//   - run, the activation's own goroutine, for every input it selects
//     on (it never holds the lock while it waits);
//   - a caller whose request finds the activation idle and the mailbox
//     empty (runInline): it runs its turn on its own goroutine, as run
//     would, and, if the turn staged the next event and no append is
//     out, appends it itself, so that a lone request crosses no goroutine
//     of the activation's;
//   - an append's goroutine, when its result lands (landed): if the lock
//     is free it handles the ack itself (releasing the responses the ack
//     frees) and sends the next pending event; if not, it leaves the
//     result in acks for the holder and kicks run.
//
// run takes a result from acks only while holding the lock (at the top of
// its loop, after a kick), and so does Sync inside a turn and Init's loop
// (which hold the lock for the turn): acks has one receiver at a time. A
// goroutine other than run that lets the lock go kicks run when run's
// wait no longer fits the state (unlockDrive), and one that leaves a
// result in acks always does, so run's next wait is chosen on the state
// as it is.
//
// Invariants (DESIGN.md, "The write path"):
//  1. Turns run one at a time, under the drive lock.
//  2. At most one append is in flight (inflight); turns that finish while
//     it is out are coalesced into pending, the next event, in order.
//  3. A response leaves only when every event it could have observed is
//     acknowledged: a turn that wrote waits for its own event; any other
//     waits for the newest unacknowledged event (pending, else inflight).
//  4. Every append expects the object's subject to end at lastSeq. If the
//     log says otherwise another activation wrote: this one is stale, fails
//     everything unacknowledged with ErrFenced and ends.
//  5. Writes of staged turns are in the overlay until the projector reports
//     their version applied, so reads never see the snapshot behind the log.
//     So are the records of keyed turns (idem), so a retry finds them.
//  6. A keyed request whose key has a record is answered from it, through
//     the output gate, and does not run (idempotency.go).
//  7. The overlay is bounded in bytes (Config.OverlayBytesMax): past the
//     bound the activation takes no new turn until the projector catches
//     up (or the activation ends), so a projector that falls behind slows
//     writers instead of growing memory. A turn adds at most
//     WriteSetBytesMax, so the overlay never passes the bound by more.
//  8. Below the overlay, a read cache holds what this activation read from
//     the snapshot and what the projector applied of its writes (trimmed
//     from the overlay), bounded by Config.ReadCacheBytes. It is exact
//     because this activation is its object's only writer (4): the
//     snapshot changes only by applying its own events, which the overlay
//     holds until they are applied and then hands to the cache. A
//     DeleteAll empties it; a reload starts without it.
type activation struct {
	rt    *Runtime
	class *Class
	id    ID
	key   actKey
	name  string
	inst  any

	drive  sync.Mutex    // held by whoever drives the state machine (above)
	kicked chan struct{} // buffered 1: the state changed without run; look again
	loaded bool          // load finished: turns may run inline (guarded by drive)
	// What run waits for while it waits, set under drive before it lets
	// go: a request (waitMailbox), the settle timer (waitSettle).
	waitMailbox, waitSettle bool

	ready   chan struct{} // buffered 1: the mailbox went from empty to not
	evict   chan struct{} // buffered 1: the runtime is past MaxActivations
	evicted bool          // it ended idle (timeout or the cap): finish reports it after removal
	mu      struct {
		sync.Mutex
		closed bool // no more admissions; set by the drive lock's holder, or releaseNow
		moved  bool // released to another node: admissions get ErrMoved (handoff.go)
		// mailbox holds the requests waiting for a turn, allocated on
		// demand (an idle activation holds none), at most MailboxLen of
		// them and MailboxBytesMax of their bytes.
		mailbox      []*request
		mailboxBytes int
	}
	lru       *lru.Element  // in rt.mu.lru; guarded by rt.mu
	applied   atomic.Uint64 // newest version the projector has applied
	projected chan struct{} // buffered 1: applied moved (OnApplied)
	done      chan struct{} // closed when run has returned

	handoff     chan struct{} // closed by releaseNow: drain, then end (handoff.go)
	releaseOnce sync.Once

	// Guarded by drive.
	version   uint64 // newest version given to a commit (pending or acked)
	lastSeq   uint64 // stream sequence of the newest acknowledged event
	lastHash  log.Hash
	overlay   layer
	idem      map[string]idemEntry // records of keyed turns not yet applied, by key
	overlayB  int                  // bytes of the overlay's keys, values and alarms (overlayCost)
	clearVer  uint64               // version of the newest DeleteAll in the overlay
	trimmedAt uint64
	cache     map[string]entry // the read cache (8): val, or del for a key known absent
	cacheB    int              // bytes of the cache's keys and values
	pending   *commit
	inflight  *commit
	acks      chan appendResult // buffered 1: the in-flight append's result, for the drive lock's holder
	broken    error             // once set: admit nothing, finish the in-flight work, end
	sql       *sqlState         // the SQL database, once a turn used it (sqlstate.go)
	inTurn    bool              // a handler is running (acks may arrive in Sync)
	stopping  bool
	lastUsed  time.Time

	// The object's own messages (messages.go): pending and dead, and the
	// version the snapshot's outbox was read at.
	sent, dead map[projector.MessagePos]*OutboxEntry
	outboxVer  uint64
	// answered are the Settles of delivered plain messages not yet
	// staged; settleTimer (armed while settleArmed) writes them if no
	// event comes first (settle.go).
	answered    []log.Settle
	settleTimer *time.Timer
	settleArmed bool
	// lastReceived caches, for at most receivedCacheMax senders, the
	// position of the last message this object applied from each
	// (messages.go, answerReceived).
	lastReceived map[actKey]projector.MessagePos
}

type actKey struct {
	class string
	id    ID
}

// request is one turn to run.
type request struct {
	size  int // bytes the request holds (its body), for the mailbox bound
	ctx   context.Context
	cause Cause
	label string // method or entry point, for errors
	// outcome, set for a keyed request, records and replays its answer.
	outcome *outcomeCodec
	run     func(c *Ctx, inst any) (any, error)
	result  chan result // buffered 1
	// settle, set for a settle call (messages.go), is recorded in the
	// turn's event if the message is still pending; else nothing runs.
	settle *log.Settle
	// lazy, with settle, asks for no turn: the Settle waits for the
	// sender's next event (settle.go).
	lazy  bool
	trace *turnTrace // the turn's spans; nil when it is not traced (spans.go)
}

type result struct {
	out     any
	err     error
	sockOps []sockOp // WebSocket sends and closes, released with the response
}

// commit is a group of turns appended as one event.
type commit struct {
	version uint64
	turns   []log.Turn
	bytes   int
	waiters []*request
	results []result
	traced  []tracedTurn // turns whose appends are traced (spans.go)
}

type appendResult struct {
	rec log.Record
	err error
}

// turn is the state of one running turn.
type turn struct {
	a      *activation
	req    *request
	st     *Storage
	done   bool
	synced bool // Sync staged some of the turn's writes

	sockOps    []sockOp // WebSocket sends and closes held for the output gate
	connecting *socket  // the socket a WebSocketConnect turn decides on

	calls      []log.Call // calls made since the turn's last staged part (calls.go)
	callsBytes int
	inTx       int        // depth of Storage.Transaction: calls are refused inside
	tx         *writeSet  // the innermost Storage.Transaction's write set (messages.go)
	sqlTurn    bool       // the turn's SQL savepoint is open (sqlstate.go)
	sqlOwn     bool       // the turn has no SQL savepoint: its rollback is the transaction's (sqlUndo)
	sqlFresh   bool       // nothing has changed in the turn's SQL savepoint since it opened
	begun      []*Storage // open transactions from Storage.Begin, innermost last (dynamic.go)
}

// alwaysReady is a closed channel: a select case on it is always ready.
var alwaysReady = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// errBounced means the activation ended before running the request; the
// runtime sends it to the next activation.
var errBounced = errors.New("activation ended before the turn ran")

// errReset marks an activation that must end after a handler panic.
var errReset = errors.New("activation reset after a panic")

func (a *activation) admit(req *request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.moved {
		return ErrMoved
	}
	if a.mu.closed {
		return errBounced
	}
	cost := req.size + requestOverheadBytes
	switch {
	case len(a.mu.mailbox) >= a.rt.cfg.MailboxLen:
		return fmt.Errorf("%w: %s %s mailbox holds %d requests", ErrOverloaded, a.class.name, a.id, len(a.mu.mailbox))
	case a.mu.mailboxBytes+cost > a.rt.cfg.MailboxBytesMax && len(a.mu.mailbox) > 0:
		// One request always fits, however large: the gateway bounds it.
		return fmt.Errorf("%w: %s %s mailbox holds %d bytes", ErrOverloaded, a.class.name, a.id, a.mu.mailboxBytes)
	}
	a.mu.mailbox = append(a.mu.mailbox, req)
	a.mu.mailboxBytes += cost
	if len(a.mu.mailbox) == 1 {
		select {
		case a.ready <- struct{}{}:
		default: // a wake-up is already waiting
		}
	}
	return nil
}

// requestOverheadBytes is what a queued request counts beyond its body.
const requestOverheadBytes = 256

// queued reports whether a request waits in the mailbox.
func (a *activation) queued() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.mu.mailbox) > 0
}

// pop takes the oldest request from the mailbox; nil if it is empty.
func (a *activation) pop() *request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.popLocked()
}

func (a *activation) popLocked() *request {
	if len(a.mu.mailbox) == 0 {
		return nil
	}
	req := a.mu.mailbox[0]
	a.mu.mailbox[0] = nil
	a.mu.mailbox = a.mu.mailbox[1:]
	a.mu.mailboxBytes -= req.size + requestOverheadBytes
	if len(a.mu.mailbox) == 0 {
		a.mu.mailbox = nil // an idle activation holds no slots
	}
	return req
}

// close stops admissions if the mailbox is empty, and reports whether it did.
func (a *activation) close() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.mu.mailbox) > 0 {
		return false
	}
	a.mu.closed = true
	return true
}

// idle reports whether the activation may be evicted: nothing in flight,
// nothing pending, no Settle noted (settle.go). It must then close() to
// end.
func (a *activation) idle() bool {
	return a.inflight == nil && a.pending == nil && len(a.answered) == 0
}

// closeWith stops admissions and answers every queued request with err
// (errBounced sends them on to the next activation).
func (a *activation) closeWith(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mu.closed = true
	for req := a.popLocked(); req != nil; req = a.popLocked() {
		req.result <- result{err: err}
	}
}

func (a *activation) run() {
	a.drive.Lock()   // held while run acts; released only while it waits
	defer a.finish() // with the lock held: nothing drives an ended activation
	if err := a.load(); err != nil {
		a.rt.logger.Warn("activation failed", "class", a.class.name, "id", a.id, "err", err)
		a.closeWith(err)
		a.fail(err)
		return
	}
	a.rt.hooks.activated(a.class.name, a.id)
	a.loadedAlarms()
	a.loadedOutbox()
	idle := time.NewTimer(a.rt.cfg.IdleTimeout)
	defer idle.Stop()
	defer func() {
		if a.settleTimer != nil {
			a.settleTimer.Stop()
		}
	}()
	a.lastUsed = time.Now()
	a.loaded = true
	stopping, release := a.rt.stopping, a.handoff
	for {
		select {
		case r := <-a.acks: // landed while another goroutine held the lock
			a.acked(r)
		default:
		}
		if a.stopping {
			a.carrySettles(true) // an activation that ends writes what it noted
		}
		a.flush()
		if a.inflight == nil && a.pending == nil {
			if a.broken != nil {
				return
			}
			if a.stopping && a.close() {
				return
			}
		}
		var mailbox <-chan struct{}
		var projected <-chan struct{}
		var settle <-chan time.Time
		if a.settleArmed {
			settle = a.settleTimer.C
		}
		if a.broken == nil && !a.full() {
			switch {
			case a.overBudget():
				projected = a.projected // wait for the projector: it shrinks the overlay
			case a.queued():
				mailbox = alwaysReady
			default:
				mailbox = a.ready
			}
		}
		a.waitMailbox, a.waitSettle = mailbox != nil, settle != nil
		a.drive.Unlock()
		select {
		case <-a.kicked:
			a.drive.Lock()
		case <-projected:
			a.drive.Lock()
			a.rt.hooks.overlayWait(a.class.name, a.id)
		case <-mailbox:
			a.drive.Lock()
			// An inline turn may have filled the next event or the
			// overlay while run waited: then the request waits.
			if a.broken != nil || a.full() || a.overBudget() {
				continue
			}
			if req := a.pop(); req != nil {
				a.lastUsed = time.Now()
				a.handle(req)
			}
		case <-settle:
			a.drive.Lock()
			a.settleDue()
		case <-idle.C:
			a.drive.Lock()
			if a.idle() && time.Since(a.lastUsed) >= a.rt.cfg.IdleTimeout && a.close() {
				a.evicted = true
				return
			}
			a.sqlSettle(true)
			idle.Reset(a.rt.cfg.IdleTimeout)
		case <-a.evict:
			a.drive.Lock()
			// Past MaxActivations, the least recently used go first, and
			// only when idle, as at the idle timeout: an in-flight append
			// or a queued request keeps it.
			if a.idle() && a.rt.overCap() && a.close() {
				a.evicted = true
				return
			}
		case <-stopping:
			a.drive.Lock()
			stopping = nil
			a.stopping = true
		case <-release:
			a.drive.Lock()
			release = nil
			a.stopping = true
		}
	}
}

// kick wakes run to choose its wait again.
func (a *activation) kick() {
	select {
	case a.kicked <- struct{}{}:
	default: // a wake-up is already waiting
	}
}

// unlockDrive releases the drive lock taken by a goroutine other than run,
// and kicks run if what it waits for no longer fits the state: it must
// end (broken, stopping), it waits for no request although one may now
// run, or a settle timer was armed that it does not watch.
func (a *activation) unlockDrive() {
	stale := a.broken != nil || a.stopping ||
		a.settleArmed && !a.waitSettle ||
		!a.waitMailbox && !a.full() && !a.overBudget()
	a.drive.Unlock()
	if stale {
		a.kick()
	}
}

// runInline runs req on the caller's goroutine if the activation can take
// a turn now and nothing waits before it: loaded, the mailbox empty, the
// drive lock free, the next event not full, the overlay within its bound.
// If the turn stages the next event and no append is out, the caller
// sends it too and handles its ack if the lock is free then. It reports
// whether req ran (its result is then in req.result, or will be once the
// ack that gates it lands); if not, the caller queues it in the mailbox.
func (a *activation) runInline(req *request) bool {
	if req.settle != nil && !req.lazy {
		// A settle turn (a reply's, a dead letter's, a retry's) goes
		// through the mailbox; a lazy settle, which only notes the
		// Settle, runs here (settle.go).
		return false
	}
	a.mu.Lock()
	ok := !a.mu.closed && len(a.mu.mailbox) == 0 && a.drive.TryLock()
	a.mu.Unlock()
	if !ok {
		return false
	}
	if !a.loaded || a.stopping || a.broken != nil || a.full() || a.overBudget() {
		a.unlockDrive()
		return false
	}
	a.lastUsed = time.Now()
	a.handle(req)
	out := a.next()
	a.unlockDrive()
	if out != nil {
		// The caller's own answer is released by this ack; an event that
		// staged meanwhile goes out on a goroutine of its own, so the
		// caller answers without waiting for it.
		if out = a.landed(a.send(out)); out != nil {
			go a.appendLoop(out)
		}
	}
	return true
}

func (a *activation) finish() {
	a.sqlClose()
	a.closeWith(errBounced)
	a.rt.remove(a)
	if a.evicted {
		// Told once it is gone: a new request activates it anew.
		a.rt.hooks.evicted(a.class.name, a.id)
	}
	if a.moved() {
		// Its last turns' sends are out: now the sockets go (handoff.go).
		a.rt.closeSockets(a.key, CloseServiceRestart, closeMovedReason)
	}
	close(a.done)
}

// errGap: the log skipped versions of an object (its older events were
// dropped after a checkpoint the read did not start from).
var errGap = errors.New("gap in the object's events")

// loadState moves the activation to the object's newest state: the
// snapshot's, its newest checkpoint's if that is ahead, then the events
// after it.
func (a *activation) loadState(ctx context.Context) error {
	meta, err := a.rt.proj.Meta(a.class.name, a.id)
	if err != nil {
		return fmt.Errorf("load %s/%s: %w", a.class.name, a.id, err)
	}
	a.applied.Store(meta.Version)
	a.version, a.lastSeq, a.lastHash = meta.Version, meta.Seq, meta.Hash
	if meta.Name != "" {
		a.name = meta.Name
	}
	last, err := a.rt.log.Last(ctx, a.class.name, a.id)
	switch {
	case errors.Is(err, log.ErrNotFound):
		last = log.Record{}
	case errors.Is(err, log.ErrBadEvent):
		return corrupt(a.class.name, a.id, err)
	case err != nil:
		return fmt.Errorf("load %s/%s: %w: %w", a.class.name, a.id, ErrUnavailable, err)
	}
	if last.Seq < meta.Seq {
		return fmt.Errorf("load %s/%s: %w", a.class.name, a.id, aheadOfLog(a.rt.log.Replicated(), "snapshot", meta.Seq, last.Seq))
	}
	if last.Seq == meta.Seq {
		return a.loadOutbox()
	}
	if meta, err = a.skipAhead(ctx, meta, last); err != nil {
		return fmt.Errorf("load %s/%s from its checkpoint: %w", a.class.name, a.id, err)
	}
	if err := a.loadOutbox(); err != nil {
		return err
	}
	a.applied.Store(meta.Version)
	a.version, a.lastSeq, a.lastHash = meta.Version, meta.Seq, meta.Hash
	if a.name == "" {
		a.name = meta.Name
	}
	a.rt.hooks.loading(a.class.name, a.id)
	err = a.rt.log.Read(ctx, a.class.name, a.id, meta.Seq+1, func(rec log.Record) error {
		return a.catchUp(ctx, rec)
	})
	if errors.Is(err, log.ErrBadEvent) && !errors.Is(err, errGap) {
		return corrupt(a.class.name, a.id, err)
	}
	if err != nil {
		return fmt.Errorf("catch up %s/%s: %w", a.class.name, a.id, err)
	}
	// The read must reach what Last saw: in a cluster a lagging replica
	// could answer short, and appending from there would be fenced.
	if a.lastSeq < last.Seq {
		return fmt.Errorf("catch up %s/%s: %w: read reached sequence %d, log is at %d", a.class.name, a.id, ErrUnavailable, a.lastSeq, last.Seq)
	}
	return nil
}

// aheadOfLog is the error of a load that finds the snapshot, or a
// checkpoint (what), at sequence seq past the log's last message of the
// object, at last. On one node the log has lost acknowledged events. In a
// cluster the log's answer may come from a leader that was cut off and
// has not yet heard of its successor (a node resumed from a pause, as in
// TestDockerComposePartitions): the load is refused as unavailable, and
// tried again it reaches the current leader.
func aheadOfLog(replicated bool, what string, seq, last uint64) error {
	err := fmt.Errorf("%s at sequence %d is ahead of the log at %d", what, seq, last)
	if replicated {
		return fmt.Errorf("%w: %w (a deposed leader may have answered)", ErrUnavailable, err)
	}
	return err
}

// load reads the snapshot's position, catches up from the log, and runs the
// class's Init.
func (a *activation) load() error {
	ctx, cancel := context.WithTimeout(a.rt.ctx, a.rt.cfg.LoadTimeout)
	defer cancel()
	if err := a.claim(ctx); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := a.loadState(ctx)
		if err == nil {
			break
		}
		// A class that retains only from its checkpoints may have dropped
		// the events this read wanted, after a newer checkpoint than the
		// one it started from: start again from the newest.
		if !errors.Is(err, errGap) || !a.rt.ckpt.cfg.Retain[a.class.name] {
			return err
		}
		if attempt == 3 {
			return fmt.Errorf("%w: %w", ErrUnavailable, err) // the caller may retry
		}
		a.rt.logger.Debug("activation raced a checkpoint's purge; loading again", "class", a.class.name, "id", a.id, "err", err)
		a.overlay, a.idem, a.overlayB, a.clearVer, a.trimmedAt = layer{}, nil, 0, 0, 0
		a.cache, a.cacheB = nil, 0
		a.lastReceived = nil
	}
	a.inst = a.class.newInst()
	if init, ok := a.inst.(Initer); ok {
		req := &request{ctx: ctx, cause: Cause{Via: ViaSystem, Method: "init"}, label: "Init", result: make(chan result, 1)}
		req.run = func(c *Ctx, _ any) (any, error) { return nil, init.Init(c) }
		a.handle(req)
		for a.pending != nil || a.inflight != nil {
			a.flush()
			a.acked(<-a.acks)
		}
		if r := <-req.result; r.err != nil {
			return fmt.Errorf("init %s/%s: %w", a.class.name, a.id, r.err)
		}
	}
	return nil
}

// corrupt is the error of an object whose log holds a message that is not
// the next event of its chain: not retryable, and naming the message.
func corrupt(class string, id ID, err error) error {
	return fmt.Errorf("load %s/%s: %w: %w", class, id, ErrCorruptLog, err)
}

// catchUp applies the next event read from the log, which must follow the
// chain: the next version, and PrevHash the chain hash of the event before
// (a forged event with the right version is caught here, not applied).
func (a *activation) catchUp(ctx context.Context, rec log.Record) error {
	ev := rec.Event
	if err := log.Follows(a.version, a.lastHash, rec); err != nil {
		if ev.Version > a.version+1 && a.rt.ckpt.cfg.Retain[a.class.name] {
			// Perhaps dropped after a newer checkpoint than the one this
			// read started from: load retries from the newest.
			return fmt.Errorf("%w: %w", errGap, err)
		}
		return err
	}
	for ti, t := range ev.Turns {
		a.overlayWrites(ev.Version, t.Writes)
		if ev.Version > a.outboxVer {
			a.noteOutbox(ev.Version, ti, t)
		}
	}
	a.overlayIdem(ev.Version, ev.Time, ev.Turns)
	a.version, a.lastSeq, a.lastHash = ev.Version, rec.Seq, rec.Hash()
	if a.name == "" && ev.Name != "" {
		a.name = ev.Name
	}
	if err := a.rt.proj.Submit(ctx, rec); err != nil {
		return err
	}
	if a.overBudget() {
		// A long catch-up: let the projector apply what it has, so the
		// overlay stays bounded while loading too.
		if err := a.rt.proj.Flush(ctx); err != nil {
			a.rt.logger.Warn("projector flush during catch-up failed", "class", a.class.name, "id", a.id, "err", err)
		}
		a.trim()
	}
	return nil
}

// overBudget reports whether the overlay is at its byte bound: the next
// turn waits for the projector (invariant 6).
func (a *activation) overBudget() bool {
	if a.overlayB < a.rt.cfg.OverlayBytesMax {
		return false
	}
	a.trim()
	return a.overlayB >= a.rt.cfg.OverlayBytesMax
}

// overlayCost is what an overlay entry counts against the bound.
func overlayCost(key string, e entry) int { return writeCost(key, e.val) }

func (a *activation) overlaySet(key string, e entry) {
	if old, ok := a.overlay.keys[key]; ok {
		a.overlayB -= overlayCost(key, old)
	}
	a.overlay.set(key, e)
	a.overlayB += overlayCost(key, e)
}

func (a *activation) overlaySetAlarm(name string, e entry) {
	if old, ok := a.overlay.alarms[name]; ok {
		a.overlayB -= overlayCost(name, old)
	}
	a.overlay.setAlarm(name, e)
	a.overlayB += overlayCost(name, e)
}

// handle runs one turn and routes its response through the output gate.
func (a *activation) handle(req *request) {
	if err := req.ctx.Err(); err != nil {
		req.result <- result{err: err} // the caller has gone; run nothing
		return
	}
	if req.lazy {
		a.noteAnswered(req)
		return
	}
	a.trim()
	if c := req.cause.Caller; c != nil && c.Kind == log.CallerMessage {
		// A message is answered from its sender's received record, or is
		// new: its key has no record of its own (idempotency.go).
		if a.answerReceived(req) {
			return
		}
	} else if req.outcome != nil && a.answerFromRecord(req) {
		return
	}
	if req.settle != nil && !a.settleable(*req.settle) {
		a.gate(req, result{out: []byte(nil)}) // a repeat: settled already
		return
	}
	t := &turn{a: a, req: req}
	t.st = &Storage{t: t, ws: newWriteSet(nil)}
	a.inTurn = true
	var start time.Time
	if a.rt.hooks.Turn != nil {
		start = time.Now()
	}
	req.trace.handlerStart()
	out, err, panicked := a.invoke(t)
	req.trace.handlerEnd()
	a.inTurn = false
	t.rollbackBegun()
	t.sqlEnd(err == nil && (a.broken == nil || a.broken == errReset))
	t.done = true
	if c := req.cause.Caller; c != nil && c.Kind == log.CallerCall {
		// The caller waits no more on this object's turns (calls.go,
		// callWaits): its answer is on its way. (Only a call's context
		// holds a wait: other requests skip the look-up.)
		if e := waitEdgeOf(req.ctx); e != nil {
			a.rt.waits.end(e)
		}
	}
	if a.rt.hooks.Turn != nil {
		a.rt.hooks.Turn(a.class.name, time.Since(start), err != nil)
	}
	switch {
	case a.broken != nil && a.broken != errReset:
		// Fenced during Sync: nothing this turn did may be kept.
		req.result <- result{err: a.broken}
		return
	case err != nil:
		// Writes a Sync made durable stay: a keyed turn records its
		// failure with them, so that its retry does not run them again.
		staged := true
		if o, ok := errorOutcome(err); ok && req.outcome != nil && (t.synced || len(t.calls) > 0) {
			cause := req.cause
			cause.Outcome = &o
			a.stage(cause, nil, req.trace)
			a.attachCalls(t, nil)
		} else if len(t.calls) > 0 {
			a.stage(req.cause, nil, req.trace) // its calls ran: the record says so (calls.go)
			a.attachCalls(t, nil)
		} else {
			staged = false
		}
		if req.settle != nil {
			a.attachSettle(req, staged)
		}
		a.gate(req, result{err: err})
		if panicked {
			a.broken = errReset
			a.closeWith(errBounced)
		}
		return
	}
	staged := !t.st.ws.empty() || len(t.calls) > 0 || req.outcome != nil && t.synced
	if staged {
		cause := req.cause
		if req.outcome != nil {
			o := req.outcome.record(out)
			cause.Outcome = &o
		}
		a.stage(cause, t.st.ws, req.trace)
		a.attachCalls(t, t.st.ws)
	}
	if req.settle != nil {
		a.attachSettle(req, staged)
	}
	a.gate(req, result{out: out, sockOps: t.sockOps})
}

func (a *activation) invoke(t *turn) (out any, err error, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			a.rt.logger.Error("handler panicked", "class", a.class.name, "id", a.id, "method", t.req.label, "panic", p, "stack", string(debug.Stack()))
			cause, ok := p.(error) // a panic with an error keeps it for errors.Is
			if !ok {
				cause = fmt.Errorf("%v", p)
			}
			out, err, panicked = nil, &HandlerError{Class: a.class.name, Method: t.req.label, Err: cause, Panicked: true}, true
		}
	}()
	out, err = t.req.run(&Ctx{Context: t.req.ctx, t: t}, a.inst)
	return out, err, false
}

// stage moves a finished turn's writes (ws may be nil: a keyed turn's
// record alone) into the next event and the overlay; tt, if the turn is
// traced, gets an append span.
func (a *activation) stage(cause Cause, ws *writeSet, tt *turnTrace) {
	if a.pending == nil {
		a.version++
		a.pending = &commit{version: a.version}
	}
	var writes []log.Write
	if ws != nil {
		writes = ws.writes()
		a.pending.bytes += ws.bytes
	}
	turn := log.Turn{Cause: cause, Writes: writes}
	if ws != nil && len(ws.sql) > 0 {
		turn.SQL = ws.sql
		a.sqlStaged(a.pending.version, ws.sql)
	}
	a.pending.turns = append(a.pending.turns, turn)
	if tt != nil {
		a.pending.traced = append(a.pending.traced, tracedTurn{turn: len(a.pending.turns) - 1, tt: tt})
	}
	a.pending.bytes += turnOverheadBytes + cause.Code.Size()
	if o := cause.Outcome; o != nil {
		a.pending.bytes += len(o.Body) + len(cause.IdemKey) + len(cause.IdemHash) + len(o.BodyHash) + len(o.Code) + len(o.ContentType)
	}
	a.overlayWrites(a.pending.version, writes)
	a.overlayIdem(a.pending.version, a.rt.now().UnixNano(), a.pending.turns[len(a.pending.turns)-1:])
}

func (a *activation) overlayWrites(version uint64, writes []log.Write) {
	for _, w := range writes {
		switch w.Op {
		case log.OpDeleteAll:
			for k, e := range a.overlay.keys {
				a.overlayB -= overlayCost(k, e)
			}
			a.overlay.keys = nil
			a.overlay.cleared = true
			a.clearVer = version
			a.cache, a.cacheB = nil, 0 // below the overlay, and wrong once this applies
		case log.OpPut:
			a.overlaySet(w.Key, entry{val: w.Value, ver: version})
		case log.OpDelete:
			a.overlaySet(w.Key, entry{del: true, ver: version})
		case log.OpSetAlarm:
			a.overlaySetAlarm(w.Key, entry{at: w.At, ver: version})
		case log.OpDeleteAlarm:
			a.overlaySetAlarm(w.Key, entry{del: true, ver: version})
		}
	}
}

// trim drops overlay entries the projector has applied: Badger has them.
func (a *activation) trim() {
	applied := a.applied.Load()
	if applied == a.trimmedAt {
		return
	}
	for k, e := range a.overlay.keys {
		if e.ver <= applied {
			delete(a.overlay.keys, k)
			a.overlayB -= overlayCost(k, e)
			a.cacheSet(k, entry{val: e.val, del: e.del}) // the snapshot now has it
		}
	}
	for k, e := range a.overlay.alarms {
		if e.ver <= applied {
			delete(a.overlay.alarms, k)
			a.overlayB -= overlayCost(k, e)
		}
	}
	if a.overlay.cleared && a.clearVer <= applied {
		a.overlay.cleared = false
	}
	for k, e := range a.idem {
		if e.ver <= applied {
			a.overlayB -= e.cost()
			delete(a.idem, k)
		}
	}
	a.trimmedAt = applied
}

// gate holds a response until every event it could have observed is
// acknowledged.
func (a *activation) gate(req *request, r result) {
	c := a.pending
	if c == nil {
		c = a.inflight
	}
	if c == nil {
		a.deliver(req, r)
		return
	}
	c.waiters = append(c.waiters, req)
	c.results = append(c.results, r)
}

// full reports whether the next event cannot take another turn.
func (a *activation) full() bool {
	c := a.pending
	return c != nil && (len(c.turns) >= maxTurnsPerEvent ||
		c.bytes+WriteSetBytesMax+turnOverheadBytes+outcomeBytesMax+eventEnvelopeBytes > a.rt.maxEventBytes)
}

// flush starts the next append, if none is in flight, on a goroutine of
// its own.
func (a *activation) flush() {
	if out := a.next(); out != nil {
		go a.appendLoop(out)
	}
}

// outgoing is an event on its way to the log.
type outgoing struct {
	ev     *log.Event
	expect uint64
	spans  []trace.Span
}

// next moves the pending event in flight and returns it to send; nil if
// an append is in flight or nothing is pending.
func (a *activation) next() *outgoing {
	if a.inflight != nil || a.pending == nil {
		return nil
	}
	a.carrySettles(false) // the next event carries the noted Settles (settle.go)
	c := a.pending
	a.pending, a.inflight = nil, c
	out := &outgoing{expect: a.lastSeq}
	if len(c.traced) > 0 {
		out.spans = traceAppend(c, a.class.name, a.id) // before the event is built: it records the spans' ids
	}
	out.ev = &log.Event{
		Format:   log.FormatVersion,
		Class:    a.class.name,
		ID:       a.id,
		Version:  c.version,
		Time:     time.Now().UnixNano(),
		Turns:    c.turns,
		PrevHash: a.lastHash,
	}
	if c.version == 1 {
		out.ev.Name = a.name
	}
	return out
}

// send appends out and returns the log's answer. It runs without the
// drive lock: turns go on meanwhile.
func (a *activation) send(out *outgoing) appendResult {
	a.rt.hooks.beforeAppend(out.ev.Class, out.ev.ID, out.ev.Version)
	appendEvent := a.rt.log.Append
	if backgroundEvent(out.ev) {
		appendEvent = a.rt.log.AppendBackground
	}
	rec, err := appendEvent(a.rt.appendCtx, out.ev, out.expect)
	if out.spans != nil {
		endAppend(out.spans, rec, err)
	}
	return appendResult{rec, err}
}

// appendLoop is an append's goroutine: it sends out and hands the result
// on (landed), and goes on sending the events that follow for as long as
// it finds the drive lock free when their results land.
func (a *activation) appendLoop(out *outgoing) {
	for out != nil {
		out = a.landed(a.send(out))
	}
}

// landed hands the in-flight append's result to the state machine. If
// the drive lock is free it handles the ack itself and returns the next
// event to send (nil: none); otherwise it leaves the result in acks for the
// lock's holder (run, or Sync or Init waiting in a turn) and kicks run.
func (a *activation) landed(r appendResult) *outgoing {
	if !a.drive.TryLock() {
		a.acks <- r // room: one append is out at a time, its result taken before the next
		a.kick()
		return nil
	}
	a.acked(r)
	out := a.next()
	a.unlockDrive()
	return out
}

// acked handles the in-flight append's result.
func (a *activation) acked(r appendResult) {
	c := a.inflight
	a.inflight = nil
	if r.err != nil {
		err := fmt.Errorf("%w: append %s/%s v%d: %w", ErrUnavailable, a.class.name, a.id, c.version, r.err)
		if errors.Is(r.err, log.ErrConflict) {
			err = fmt.Errorf("%w: %s/%s v%d", ErrFenced, a.class.name, a.id, c.version)
			a.rt.hooks.fenced(a.class.name, a.id)
		}
		a.rt.logger.Warn("activation reset", "class", a.class.name, "id", a.id, "err", r.err)
		a.release(c, err)
		a.fail(err)
		return
	}
	a.lastSeq, a.lastHash = r.rec.Seq, r.rec.Hash()
	a.rt.hooks.acked(a.class.name, a.id, c.version, r.rec.Seq)
	a.rt.ckpt.committed(a.class.name, a.id, c.version)
	a.outboxCommitted(c)
	a.sqlAcked(c.version, r.rec.Seq, a.inTurn)
	if sched := a.rt.cfg.Alarms; sched != nil {
		if changes := alarmChanges(c.turns); len(changes) > 0 {
			sched.AlarmsCommitted(Ref{Class: a.class.name, ID: a.id, Name: a.name}, c.version, changes)
		}
	}
	if err := a.rt.proj.Submit(a.rt.appendCtx, r.rec); err != nil {
		// The log has the event; a later activation catches the snapshot up.
		a.rt.logger.Warn("projector submit failed", "class", a.class.name, "id", a.id, "err", err)
	}
	a.release(c, nil)
}

func (a *activation) release(c *commit, err error) {
	for i, req := range c.waiters {
		r := c.results[i]
		if err != nil {
			r = result{err: err}
		}
		a.deliver(req, r)
	}
}

// deliver releases a response and the WebSocket sends of its turn, in turn
// order, on this goroutine.
func (a *activation) deliver(req *request, r result) {
	if r.err == nil && len(r.sockOps) > 0 {
		a.releaseSockOps(r.sockOps)
	}
	req.result <- r
}

// fail ends the activation: everything unacknowledged fails with err, the
// in-memory state is dropped, and queued requests go to the next activation.
func (a *activation) fail(err error) {
	if a.pending != nil {
		a.release(a.pending, err)
		a.pending = nil
	}
	a.broken = err
	a.answered = nil // still pending in the log: redelivered (settle.go)
	a.sqlClose()
	a.overlay, a.overlayB = layer{}, 0
	a.idem = nil
	a.inst = nil
	a.closeWith(errBounced)
}

// sync drives the write path from inside a turn until everything the turn
// and its predecessors wrote is acknowledged.
func (t *turn) sync() error {
	a := t.a
	if !t.st.ws.empty() || t.callsFull() {
		a.stage(t.req.cause, t.st.ws, t.req.trace)
		a.attachCalls(t, t.st.ws)
		t.st.ws = newWriteSet(nil)
		t.synced = true
		if t.sqlTurn {
			// What Sync staged stays whatever the rest of the turn does.
			t.sqlEnd(true)
			if _, err := t.sqlBegin(); err != nil {
				return err
			}
		}
	}
	for a.pending != nil || a.inflight != nil {
		a.flush()
		select {
		case r := <-a.acks:
			a.acked(r)
		case <-t.req.ctx.Done():
			// The append goes on; its result lands through acks (run
			// collects it) or is handled by its own goroutine.
			return t.req.ctx.Err()
		}
		if a.broken != nil && a.broken != errReset {
			return a.broken
		}
	}
	return nil
}

// cachedGet reads key below the overlay: from the read cache, else from
// the snapshot, remembering what it read. The value is the caller's.
func (a *activation) cachedGet(key string) ([]byte, bool, error) {
	if e, ok := a.cache[key]; ok {
		return cloneBytes(e.val), !e.del, nil
	}
	v, ok, err := a.snapshotGet(key)
	if err != nil {
		return nil, false, err
	}
	a.cacheSet(key, entry{val: cloneBytes(v), del: !ok})
	return v, ok, nil
}

// cacheSet puts key in the read cache, making room (in no order) when it
// would pass Config.ReadCacheBytes.
func (a *activation) cacheSet(key string, e entry) {
	if old, ok := a.cache[key]; ok {
		a.cacheB -= len(key) + len(old.val)
		delete(a.cache, key)
	}
	max := a.rt.cfg.ReadCacheBytes
	cost := len(key) + len(e.val)
	if cost > max { // also a negative max: no cache
		return
	}
	for k, old := range a.cache {
		if a.cacheB+cost <= max {
			break
		}
		a.cacheB -= len(k) + len(old.val)
		delete(a.cache, k)
	}
	if a.cache == nil {
		a.cache = make(map[string]entry)
	}
	a.cache[key] = e
	a.cacheB += cost
}

func (a *activation) snapshotGet(key string) ([]byte, bool, error) {
	v, ok, err := a.rt.proj.Get(a.class.name, a.id, key)
	if err != nil {
		return nil, false, fmt.Errorf("read %s/%s %q: %w", a.class.name, a.id, truncate(key), err)
	}
	return v, ok, nil
}

func (a *activation) snapshotList(opts ListOptions, limit int, fn func(string, []byte) bool) error {
	po := projector.ListOptions{Prefix: opts.Prefix, Start: opts.Start, End: opts.End, Reverse: opts.Reverse, Limit: limit}
	if err := a.rt.proj.List(a.class.name, a.id, po, fn); err != nil {
		return fmt.Errorf("list %s/%s: %w", a.class.name, a.id, err)
	}
	return nil
}
