package objects

import (
	"bytes"
	lru "container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// Config configures a Runtime. Zero values take the documented defaults.
type Config struct {
	Log       *log.Log             // the event log (required)
	Projector *projector.Projector // the snapshot (required)
	Classes   []*Class             // the classes this node hosts

	// IdleTimeout is how long an activation lives without a turn before it
	// is evicted (memory goes, storage stays). Default 30s.
	IdleTimeout time.Duration
	// MailboxLen bounds the requests queued on one activation; past it a
	// request fails with ErrOverloaded. Default 1024. The mailbox grows on
	// demand: an idle activation holds no slots.
	MailboxLen int
	// MailboxBytesMax bounds the bytes (bodies, plus a fixed overhead per
	// request) queued on one activation; past it a request fails with
	// ErrOverloaded. One request is always admitted. Default 16 MiB.
	MailboxBytesMax int
	// MaxActivations caps the live activations of the node. Past it, the
	// least recently used idle activations are evicted (memory goes,
	// storage and sockets stay), as at the idle timeout; busy ones stay
	// until idle, so the cap may be passed while every activation is
	// busy. Default 10000.
	MaxActivations int
	// OverlayBytesMax bounds the bytes (keys, values, per-write overhead)
	// an activation holds of events the projector has not yet applied.
	// Past it the activation takes no new turn until the projector
	// catches up: a stalled projector slows writers instead of growing
	// memory. Default 4 MiB; a turn may pass it by at most
	// WriteSetBytesMax.
	OverlayBytesMax int
	// ReadCacheBytes bounds the bytes (keys and values) an activation keeps
	// of keys it read from the snapshot or whose writes the projector
	// applied, so that reading them again needs no snapshot lookup
	// (activation.go, invariant 8). Default 64 KiB; negative: no cache.
	ReadCacheBytes int
	// LoadTimeout bounds an activation's catch-up from the log. Default 30s.
	LoadTimeout time.Duration
	// DispatchAttempts bounds how often a request that met an ending
	// activation is handed to the next one. Default 8.
	DispatchAttempts int
	Logger           *slog.Logger
	Hooks            Hooks
	// Alarms, if set, learns of alarm changes once their events are
	// acknowledged and of the pending alarms of each activated object (the
	// alarms package schedules them). Nil: alarms are recorded only.
	Alarms AlarmScheduler
	// Claim, if set, runs before an activation loads: in a cluster it asks
	// the other nodes to release the object first (handoff.go).
	Claim func(ctx context.Context, class string, id ID) error
	// Checkpoints: how often objects are checkpointed, and which classes
	// drop events older than their newest checkpoint (objects/checkpoint.go).
	Checkpoints CheckpointConfig
	// Now is the clock that idempotency windows are measured with.
	// Default time.Now; tests move it instead of waiting.
	Now func() time.Time
	// IdempotencySweepEvery is how often records of keyed turns older than
	// every class's window are dropped from the snapshot. Default 1m.
	IdempotencySweepEvery time.Duration
	// Calls is how stubs reach other objects (calls.go): in a cluster the
	// router, which forwards to the owner. Nil: this runtime.
	Calls Dispatcher
	// Codec encodes stubs' inputs and decodes their outputs; it must be the
	// codec the owner decodes forwarded calls with. Default strict JSON.
	Codec Codec
	// OutboxPendingMax bounds the durable messages of one sender waiting
	// for delivery, dead letters included: past it Stub.Send fails with
	// ErrOutboxFull (429), so a target that is down cannot grow a sender's
	// outbox without bound. Default 10000.
	OutboxPendingMax int
	// SettleDelay is how long the Settle of a delivered plain message
	// (Stub.Send) may wait in the sender's memory for the sender's next
	// event to carry it; past it the sender writes a settle turn with every
	// Settle it holds (settle.go). Longer saves more events on a sender
	// that sends less often, and leaves a crash more to redeliver. Default
	// DefaultSettleDelay (10s).
	SettleDelay time.Duration
	// MessageBackoff is the wait after a message's first failed delivery;
	// each later one waits twice the one before, up to 30s. Default
	// DefaultMessageBackoff (100ms).
	MessageBackoff time.Duration
	// OutboxMarks, in a cluster, records the senders whose messages have
	// waited longer than OutboxMarkAfter (outboxmarks.go), so that a node
	// taking over a dead node's objects finds them however long ago they
	// sent (AdoptOutboxMarks). Nil alone: a restart reads the snapshot.
	OutboxMarks OutboxMarker
	// OutboxMarkAfter: how long a sender's messages wait before it is
	// marked. It must be well under the takeover's lookback less the
	// membership lease: a sender not yet marked when its node dies sent
	// within the lookback. Default 15s (a quarter of the default lookback).
	OutboxMarkAfter time.Duration
	// Resolve, if set, finds a class that is not in Classes (a class
	// deployed at run time, dynamic.go). It is asked on every request for
	// such a class and must be fast; nil, nil means no such class.
	Resolve func(name string) (*Class, error)
	// SQLDir is where objects' SQL databases live, one file each
	// (sqlstate.go). Empty: in memory, caught up from the log on each
	// activation (tests).
	SQLDir string
}

// Hooks observe the write path. Tests use them to see progress instead of
// sleeping; BeforeAppend may block to stall a commit. All are optional and
// run on runtime goroutines, so they must not call back into the runtime.
type Hooks struct {
	Activated    func(class string, id ID)
	Evicted      func(class string, id ID)
	BeforeAppend func(class string, id ID, version uint64)
	// Loading: an activation has chosen where its catch-up starts and is
	// about to read the log from there.
	Loading func(class string, id ID)
	Acked   func(class string, id ID, version, seq uint64)
	Fenced  func(class string, id ID)
	// Replayed: a keyed request was answered from its key's record
	// without running.
	Replayed func(class string, id ID)
	// OverlayWait: an activation at its overlay bound was woken by the
	// projector's progress.
	OverlayWait func(class string, id ID)
	// Calling: a turn of class/id passed its commit point and calls callee.
	Calling func(class string, id ID, callee Ref)
	// Delivered: the outbox settled a message of class/id (delivered, or
	// dead-lettered when dead).
	Delivered func(class string, id ID, dead bool)
	// Turn: a handler ran for took (its queue wait and commit wait not
	// included); failed if it returned an error or panicked (metrics).
	Turn func(class string, took time.Duration, failed bool)
}

func (h Hooks) delivered(c string, id ID, dead bool) {
	if h.Delivered != nil {
		h.Delivered(c, id, dead)
	}
}

func (h Hooks) calling(c string, id ID, callee Ref) {
	if h.Calling != nil {
		h.Calling(c, id, callee)
	}
}

func (h Hooks) overlayWait(c string, id ID) {
	if h.OverlayWait != nil {
		h.OverlayWait(c, id)
	}
}

func (h Hooks) activated(c string, id ID) {
	if h.Activated != nil {
		h.Activated(c, id)
	}
}
func (h Hooks) evicted(c string, id ID) {
	if h.Evicted != nil {
		h.Evicted(c, id)
	}
}
func (h Hooks) loading(c string, id ID) {
	if h.Loading != nil {
		h.Loading(c, id)
	}
}
func (h Hooks) beforeAppend(c string, id ID, v uint64) {
	if h.BeforeAppend != nil {
		h.BeforeAppend(c, id, v)
	}
}
func (h Hooks) acked(c string, id ID, v, seq uint64) {
	if h.Acked != nil {
		h.Acked(c, id, v, seq)
	}
}
func (h Hooks) replayed(c string, id ID) {
	if h.Replayed != nil {
		h.Replayed(c, id)
	}
}
func (h Hooks) fenced(c string, id ID) {
	if h.Fenced != nil {
		h.Fenced(c, id)
	}
}

// Runtime hosts the activations of one node.
type Runtime struct {
	cfg           Config
	log           *log.Log
	proj          *projector.Projector
	classes       map[string]*Class
	logger        *slog.Logger
	hooks         Hooks
	maxEventBytes int
	calls         Dispatcher // stubs' way to other objects (calls.go)
	codec         Codec      // stubs' inputs and outputs
	outbox        *outbox    // durable messages to deliver (messages.go)
	waits         callWaits  // which object's turn waits on which (calls.go)

	ctx       context.Context // the runtime's lifetime: loads
	cancel    context.CancelFunc
	appendCtx context.Context // appends outlive a graceful stop; cut only when Close gives up
	cutAppend context.CancelFunc
	stopping  chan struct{}

	mu struct {
		sync.Mutex
		acts    map[actKey]*activation
		lru     lru.List // of *activation, most recently used first
		closing bool
	}
	wg          sync.WaitGroup
	activations atomic.Uint64
	ckpt        *checkpointer
	sweepDone   chan struct{} // closed when sweepIdem has returned
	sockets     hub           // WebSockets by object; outlives activations (websocket.go)
}

// New validates cfg and returns a running Runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.Log == nil || cfg.Projector == nil {
		return nil, errors.New("objects: Config.Log and Config.Projector are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.MailboxLen <= 0 {
		cfg.MailboxLen = 1024
	}
	if cfg.MailboxBytesMax <= 0 {
		cfg.MailboxBytesMax = 16 << 20
	}
	if cfg.MaxActivations <= 0 {
		cfg.MaxActivations = 10000
	}
	if cfg.OverlayBytesMax <= 0 {
		cfg.OverlayBytesMax = 4 << 20
	}
	if cfg.ReadCacheBytes == 0 {
		cfg.ReadCacheBytes = 64 << 10
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = 30 * time.Second
	}
	if cfg.DispatchAttempts <= 0 {
		cfg.DispatchAttempts = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencySweepEvery <= 0 {
		cfg.IdempotencySweepEvery = time.Minute
	}
	if cfg.Codec == nil {
		cfg.Codec = jsonCodec{}
	}
	if cfg.OutboxPendingMax <= 0 {
		cfg.OutboxPendingMax = DefaultOutboxPendingMax
	}
	if cfg.SettleDelay <= 0 {
		cfg.SettleDelay = DefaultSettleDelay
	}
	if cfg.MessageBackoff <= 0 {
		cfg.MessageBackoff = DefaultMessageBackoff
	}
	if cfg.OutboxMarkAfter <= 0 {
		cfg.OutboxMarkAfter = DefaultOutboxMarkAfter
	}
	rt := &Runtime{
		cfg:           cfg,
		log:           cfg.Log,
		proj:          cfg.Projector,
		classes:       map[string]*Class{},
		logger:        cfg.Logger,
		hooks:         cfg.Hooks,
		maxEventBytes: cfg.Log.MaxEventBytes(),
		stopping:      make(chan struct{}),
		sweepDone:     make(chan struct{}),
		calls:         cfg.Calls,
		codec:         cfg.Codec,
	}
	if rt.calls == nil {
		rt.calls = rt
	}
	rt.outbox = newOutbox(rt)
	if need := WriteSetBytesMax + turnOverheadBytes + outcomeBytesMax + eventEnvelopeBytes; rt.maxEventBytes < need {
		return nil, fmt.Errorf("objects: the log takes events of at most %d bytes, a turn needs %d: raise the NATS server's max_payload", rt.maxEventBytes, need)
	}
	for _, c := range cfg.Classes {
		if _, dup := rt.classes[c.name]; dup {
			return nil, fmt.Errorf("objects: class %q defined twice", c.name)
		}
		rt.classes[c.name] = c
	}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.appendCtx, rt.cutAppend = context.WithCancel(context.Background())
	rt.mu.acts = map[actKey]*activation{}
	if err := cfg.Checkpoints.check(rt); err != nil {
		return nil, err
	}
	rt.ckpt = newCheckpointer(rt, cfg.Checkpoints)
	go rt.sweepIdem()
	return rt, nil
}

func (rt *Runtime) now() time.Time { return rt.cfg.Now() }

// Close stops taking requests, lets every activation finish its queued
// turns and acknowledged-or-failed appends, and waits for them. If ctx ends
// first, appends in flight are cut off (their callers see ErrUnavailable).
func (rt *Runtime) Close(ctx context.Context) error {
	rt.mu.Lock()
	already := rt.mu.closing
	rt.mu.closing = true
	rt.mu.Unlock()
	if !already {
		close(rt.stopping)
	}
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		rt.cancel()
		rt.cutAppend()
		<-done
	}
	rt.cancel()
	rt.cutAppend()
	rt.outbox.close()
	rt.ckpt.close()
	<-rt.sweepDone
	return ctx.Err()
}

// Ref names one object of one class.
type Ref struct {
	Class string
	ID    ID
	Name  string // "" for an object addressed by unique id
}

func (r Ref) String() string {
	if r.Name != "" {
		return r.Class + "/" + r.Name
	}
	return r.Class + "/" + r.ID.String()
}

// Class returns a hosted class.
func (rt *Runtime) Class(name string) (*Class, error) {
	if err := ValidateClassName(name); err != nil {
		return nil, err
	}
	c, ok := rt.classes[name]
	if !ok {
		return rt.resolve(name)
	}
	return c, nil
}

// RefByName validates class and name and derives the object's id.
func (rt *Runtime) RefByName(class, name string) (Ref, error) {
	if _, err := rt.Class(class); err != nil {
		return Ref{}, err
	}
	if err := ValidateName(name); err != nil {
		return Ref{}, err
	}
	return Ref{Class: class, ID: IDFromName(class, name), Name: name}, nil
}

// RefByID validates class and the hex id.
func (rt *Runtime) RefByID(class, hexID string) (Ref, error) {
	if _, err := rt.Class(class); err != nil {
		return Ref{}, err
	}
	id, err := ParseID(hexID)
	if err != nil {
		return Ref{}, err
	}
	return Ref{Class: class, ID: id}, nil
}

// Codec turns RPC inputs and outputs into bytes; the gateway supplies JSON.
type Codec interface {
	Decode(data []byte, v any) error
	Encode(v any) ([]byte, error)
}

// Call runs an RPC method as a turn and returns its encoded output once the
// turn's writes are durable. The input is decoded before the turn, so bad
// input never reaches the object.
func (rt *Runtime) Call(ctx context.Context, ref Ref, method string, body []byte, codec Codec, cause Cause) ([]byte, error) {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return nil, err
	}
	if err := rt.waits.arriving(ctx, ref, cause); err != nil {
		return nil, err
	}
	if c := cause.Caller; c != nil && c.Kind == log.CallerReply {
		return rt.settleCall(ctx, class, ref, method, body, codec, cause)
	}
	if class.dynamic {
		return rt.callDynamic(ctx, ref, class, method, body, cause)
	}
	m, ok := class.methods[method]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no method %q", ErrUnknownMethod, class.name, truncate(method))
	}
	var in reflect.Value
	if m.in != nil {
		in = reflect.New(m.in)
		if len(body) > 0 {
			if err := codec.Decode(body, in.Interface()); err != nil {
				return nil, fmt.Errorf("%w: %s.%s input: %w", ErrBadInput, class.name, method, err)
			}
		}
	}
	cause.Via, cause.Method = ViaRPC, method
	if err := keyed(&cause, func() []byte { return requestHash(ViaRPC, method, body) }); err != nil {
		return nil, err
	}
	out, err := rt.dispatchSized(ctx, ref, cause, method, rpcOutcome, len(body), func(c *Ctx, inst any) (any, error) {
		out, err := m.call(inst, c, in)
		if err != nil {
			return nil, handlerError(class.name, method, err)
		}
		if m.out == nil {
			return []byte(nil), nil
		}
		b, err := codec.Encode(out)
		if err != nil {
			return nil, &HandlerError{Class: class.name, Method: method, Err: fmt.Errorf("encode output: %w", err)}
		}
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	b, _ := out.([]byte)
	return b, nil
}

// Fetch hands an HTTP request to the class's Fetch handler as a turn. The
// request body must already be read and bounded by the caller.
func (rt *Runtime) Fetch(ctx context.Context, ref Ref, r *http.Request, cause Cause) (*Response, error) {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return nil, err
	}
	if err := rt.waits.arriving(ctx, ref, cause); err != nil {
		return nil, err
	}
	if !class.fetches {
		return nil, fmt.Errorf("%w: %s has no Fetch handler", ErrUnknownMethod, class.name)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: read body: %w", ErrBadInput, err)
	}
	cause.Via, cause.Method = ViaFetch, r.Method+" "+r.URL.Path
	if err := keyed(&cause, func() []byte { return requestHash(ViaFetch, cause.Method, []byte(r.URL.RawQuery), body) }); err != nil {
		return nil, err
	}
	out, err := rt.dispatchSized(ctx, ref, cause, "Fetch", fetchOutcome, len(body), func(c *Ctx, inst any) (any, error) {
		req := r.Clone(c)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if ft, ok := inst.(FetchTurner); ok {
			resp, err := ft.FetchTurn(c, req)
			if err != nil {
				return nil, handlerError(class.name, "Fetch", err)
			}
			return resp, nil
		}
		rec := newRecorder()
		inst.(Fetcher).Fetch(c, rec, req)
		if rec.overflow {
			return nil, &HandlerError{Class: class.name, Method: "Fetch", Err: tooLarge("response", fetchBodyBytesMax+1, fetchBodyBytesMax)}
		}
		return &rec.resp, nil
	})
	if err != nil {
		return nil, err
	}
	return out.(*Response), nil
}

func handlerError(class, method string, err error) error {
	var ce *ClientError
	if errors.As(err, &ce) {
		return err
	}
	return &HandlerError{Class: class, Method: method, Err: err}
}

// dispatch runs fn as a turn on ref's activation, creating it if needed,
// and waits for the gated result. A keyed cause (see keyed) with an
// outcome codec makes the turn exactly-once (idempotency.go); an entry
// point without a codec ignores the key.
func (rt *Runtime) dispatch(ctx context.Context, ref Ref, cause Cause, label string, outcome *outcomeCodec, fn func(*Ctx, any) (any, error)) (any, error) {
	return rt.dispatchSized(ctx, ref, cause, label, outcome, 0, fn)
}

// dispatchSized is dispatch for a request that holds size bytes (its
// body) while it waits in the mailbox.
func (rt *Runtime) dispatchSized(ctx context.Context, ref Ref, cause Cause, label string, outcome *outcomeCodec, size int, fn func(*Ctx, any) (any, error)) (any, error) {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return nil, err
	}
	if cause.IdemKey == "" || cause.IdemHash == nil || outcome == nil {
		cause.IdemKey, cause.IdemHash, cause.Outcome, outcome = "", nil, nil, nil
	}
	req := &request{size: size, ctx: ctx, cause: cause, label: label, outcome: outcome, run: fn, result: make(chan result, 1)}
	if tctx, tt := traceTurn(ctx, class.name, label); tt != nil {
		req.ctx, req.trace = tctx, tt
		out, err := rt.submit(ctx, class, ref, req)
		tt.end(err)
		return out, err
	}
	return rt.submit(ctx, class, ref, req)
}

// submit hands req to ref's activation (the next one, if the one it met
// ended first) and waits for its gated result.
func (rt *Runtime) submit(ctx context.Context, class *Class, ref Ref, req *request) (any, error) {
	for attempt := 0; attempt < rt.cfg.DispatchAttempts; attempt++ {
		a, err := rt.activation(class, ref)
		if err != nil {
			return nil, err
		}
		if !a.runInline(req) {
			err = a.admit(req)
		}
		if err == nil {
			select {
			case r := <-req.result:
				err = r.err
				if err == nil {
					return r.out, nil
				}
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if !errors.Is(err, errBounced) {
			return nil, err
		}
		select { // the next activation starts once this one has ended
		case <-a.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("%w: %s kept ending before the turn ran", ErrUnavailable, ref)
}

// activation returns ref's live activation, starting one if there is none.
func (rt *Runtime) activation(class *Class, ref Ref) (*activation, error) {
	k := actKey{class.name, ref.ID}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.mu.closing {
		return nil, ErrClosed
	}
	if a, ok := rt.mu.acts[k]; ok {
		rt.mu.lru.MoveToFront(a.lru)
		return a, nil
	}
	a := &activation{
		rt:        rt,
		class:     class,
		id:        ref.ID,
		key:       k,
		name:      ref.Name,
		ready:     make(chan struct{}, 1),
		kicked:    make(chan struct{}, 1),
		evict:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		acks:      make(chan appendResult, 1),
		projected: make(chan struct{}, 1),
		handoff:   make(chan struct{}),
	}
	rt.mu.acts[k] = a
	a.lru = rt.mu.lru.PushFront(a)
	rt.evictLocked()
	rt.activations.Add(1)
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		a.run()
	}()
	return a, nil
}

func (rt *Runtime) remove(a *activation) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.mu.acts[a.key] == a {
		delete(rt.mu.acts, a.key)
		rt.mu.lru.Remove(a.lru)
	}
}

// evictScanMax bounds how many activations one admission asks to leave.
const evictScanMax = 64

// evictLocked asks the least recently used activations to leave while
// more than MaxActivations live. Each decides on its own goroutine, and
// leaves only if idle (activation.run); asking twice is harmless.
func (rt *Runtime) evictLocked() {
	over := len(rt.mu.acts) - rt.cfg.MaxActivations
	for e, n := rt.mu.lru.Back(), 0; e != nil && over > 0 && n < evictScanMax; e, n = e.Prev(), n+1 {
		select {
		case e.Value.(*activation).evict <- struct{}{}:
			over--
		default: // asked already
		}
	}
}

// overCap reports whether more activations live than MaxActivations.
func (rt *Runtime) overCap() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.mu.acts) > rt.cfg.MaxActivations
}

// OnApplied tells live activations how far the projector has applied their
// events, so they can drop overlay entries. Wire it to projector.Config.
func (rt *Runtime) OnApplied(batch []projector.Applied) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, ap := range batch {
		a, ok := rt.mu.acts[actKey{ap.Class, ap.ID}]
		if !ok {
			continue
		}
		for {
			cur := a.applied.Load()
			if ap.Version <= cur {
				break
			}
			if a.applied.CompareAndSwap(cur, ap.Version) {
				select {
				case a.projected <- struct{}{}:
				default: // a wake-up is already waiting
				}
				break
			}
		}
	}
}

// Stats are counters since New.
type Stats struct {
	Activations   uint64 // activations started
	Live          int    // activations alive now
	SocketObjects int    // objects the socket hub holds a record of
}

func (rt *Runtime) Stats() Stats {
	rt.mu.Lock()
	st := Stats{Activations: rt.activations.Load(), Live: len(rt.mu.acts)}
	rt.mu.Unlock()
	rt.sockets.mu.Lock()
	st.SocketObjects = len(rt.sockets.objs)
	rt.sockets.mu.Unlock()
	return st
}
