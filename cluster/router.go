package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// Config configures a Router. Zero values take the documented defaults.
type Config struct {
	Node string   // this node's name, unique in the cluster (required)
	Log  *log.Log // the transport and the membership bucket (required)
	// Codec decodes forwarded RPC inputs on the owner: the gateway's (JSON).
	// Required.
	Codec objects.Codec
	// HTTPAddr is this node's gateway address, shown to operators.
	HTTPAddr string
	// Heartbeat and TTL: see log.MembersConfig. Defaults 1s and 3s: a dead
	// node's objects are unreachable for about TTL.
	Heartbeat, TTL time.Duration
	// ClaimTimeout bounds the wait for the other nodes to release an
	// object before it loads here. Default 2s; past it the load goes on
	// (fencing still guards writes).
	ClaimTimeout time.Duration
	// OwnAll is a test hook for split-brain tests: this node believes it
	// owns every object and claims none from the others. Never set it in
	// production: only fencing then keeps one writer per object.
	OwnAll bool
	// OnLeaseLost, if set, runs when the lease runs out, after every
	// activation is released and the requests forwarded from here stopped
	// waiting: the node stops its log server's Raft groups
	// (log.Server.StandBy), so that they neither answer reads from a stale
	// store once healed nor call elections while cut off. OnLeaseBack, if
	// set, runs when the lease is back, before the node serves again
	// (log.Server.Resume); while it fails the node serves nothing and it
	// is tried again every 50 ms. Both run on the lease's goroutine:
	// requests are refused meanwhile.
	OnLeaseLost func()
	OnLeaseBack func() error
	Logger      *slog.Logger
	// Tracer, if set, traces the forwarded requests this node serves
	// (spans.go): their spans are children of the forwarder's. Nil:
	// tracing off.
	Tracer trace.Tracer
}

const (
	defaultClaimTimeout = 2 * time.Second
	retryBackoffMin     = 5 * time.Millisecond
	retryBackoffMax     = 200 * time.Millisecond
	releaseSubject      = "strata.cluster.release"
)

// errOwnerGone: the owner was not there to take the request (no
// responder, or it is stopping); nothing ran.
var errOwnerGone = errors.New("cluster: owner is gone")

// errOutcomeUnknown: the request reached the owner, which did not answer
// (it left, or the connection failed); it may or may not have run. route
// runs a keyed request again, which is safe because its key's record
// answers a retry of a turn that did run (every request route sends is
// keyed: keyedEnvelope).
var errOutcomeUnknown = errors.New("outcome unknown")

// ErrNoLease: this node's membership lease ran out (no majority of the
// cluster's nodes acknowledges its beats: it is cut off from the majority,
// or it was paused), so it may no longer be the owner in the
// others' views and its view of who owns what may be stale. It runs and
// forwards nothing until the lease is back (Members.LeaseUntil), and says
// so at once: nothing ran, and another node may serve the request.
var ErrNoLease = errors.New("cluster: this node's membership lease ran out")

// Router places requests on their owners. It is the gateway's backend in
// a cluster, and the alarm fires' deliverer.
type Router struct {
	cfg    Config
	log    *log.Log
	logger *slog.Logger
	rt     *objects.Runtime
	// onTakeover: see OnTakeover. Set before Start, read by onChange.
	onTakeover func(gained func(class string, id objects.ID) bool)

	members  *log.Members
	serving  *log.Responder
	releases *log.Responder
	frames   *log.Subscription // WebSocket frames for this run (websocket.go)
	started  time.Time
	run      int64 // started in unix nanoseconds: this process's run
	stop     chan struct{}
	stopCtx  context.Context // canceled with stop
	cancel   context.CancelFunc
	ends     chan endJob // WebSocketError turns of sockets held for lost edges (websocket.go)
	wg       sync.WaitGroup

	mu struct {
		sync.Mutex
		nodes []string                 // live node names, sorted
		gone  map[string]chan struct{} // closed when a node leaves the view
	}
	stats struct {
		local, forwarded, served, retries, notOwner, claims, claimsHeld, released atomic.Uint64
	}
	// lapsesSeen is the count of lease lapses watchLease has released
	// every activation for (leased).
	lapsesSeen atomic.Uint64
	// joined is set once Start has joined the membership and taken its
	// first view. Before, the node serves forwarded requests only to
	// refuse them (errNotOwner: the sender retries) and claims nothing:
	// alone in its own view, it would think it owns every object and run
	// turns without asking the old owners to release them, whose
	// activations would then answer reads from memory (a stale read the
	// container nemesis found, docs/operations.md).
	joined atomic.Bool
	// lapse is closed by watchLease when the lease runs out, and replaced
	// when it is back: forwards in flight stop waiting (forward).
	lapse struct {
		sync.Mutex
		ch chan struct{}
	}
	// ws holds the sockets this node serves with another node
	// (websocket.go).
	ws struct {
		sync.Mutex
		next      uint64
		edge      map[objects.SocketID]*edgeSocket            // every socket whose client is here
		byOwner   map[runKey]map[objects.SocketID]*edgeSocket // those whose object is on another node
		held      map[runKey]map[uint64]*remoteSocket         // sockets of objects here whose client is on another node, by edge
		heldSince map[runKey]time.Time                        // when held[edge] was created
	}
}

// New returns a Router that does not route yet: Claim is usable (and does
// nothing) until Start. The runtime needs Claim before it exists, the
// router needs the runtime: New, then objects.New, then Start.
func New(cfg Config) (*Router, error) {
	if cfg.Log == nil || cfg.Codec == nil {
		return nil, errors.New("cluster: Config.Log and Config.Codec are required")
	}
	if err := log.ValidNodeName(cfg.Node); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = defaultClaimTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Router{cfg: cfg, log: cfg.Log, logger: cfg.Logger.With("component", "cluster", "node", cfg.Node), stop: make(chan struct{}), ends: make(chan endJob, endQueueLen)}
	r.stopCtx, r.cancel = context.WithCancel(context.Background())
	r.mu.nodes = []string{cfg.Node}
	r.lapse.ch = make(chan struct{})
	r.mu.gone = map[string]chan struct{}{}
	r.ws.edge = map[objects.SocketID]*edgeSocket{}
	r.ws.byOwner = map[runKey]map[objects.SocketID]*edgeSocket{}
	r.ws.held = map[runKey]map[uint64]*remoteSocket{}
	r.ws.heldSince = map[runKey]time.Time{}
	return r, nil
}

// Start serves forwarded requests and release requests, then joins the
// membership (in that order: others route here only once this node
// answers).
func (r *Router) Start(ctx context.Context, rt *objects.Runtime) error {
	r.rt = rt
	r.started = time.Now()
	r.run = r.started.UnixNano()
	var err error
	if r.frames, err = r.log.Subscribe(wsSubject(runKey{r.cfg.Node, r.run}), r.onFrame); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if r.serving, err = r.log.Serve(log.NodeSubject(r.cfg.Node), r.handle); err != nil {
		r.frames.Stop()
		return fmt.Errorf("cluster: %w", err)
	}
	if r.releases, err = r.log.Serve(releaseSubject, r.handleRelease); err != nil {
		r.serving.Stop(ctx)
		r.frames.Stop()
		return fmt.Errorf("cluster: %w", err)
	}
	r.members, err = r.log.JoinMembers(ctx, log.MembersConfig{
		Node: r.cfg.Node, Info: r.info(), Heartbeat: r.cfg.Heartbeat, TTL: r.cfg.TTL, OnChange: r.onChange,
	})
	if err != nil {
		r.serving.Stop(ctx)
		r.releases.Stop(ctx)
		r.frames.Stop()
		return fmt.Errorf("cluster: join: %w", err)
	}
	r.onChange(r.members.Live())
	r.joined.Store(true)
	r.wg.Add(2 + endWorkers)
	go r.refreshInfo()
	go r.watchLease()
	for range endWorkers {
		go r.endWorker()
	}
	r.logger.Info("joined the cluster", "nodes", r.Nodes())
	return nil
}

// Close leaves the membership (the others stop routing here at once),
// closes the sockets held here for other nodes' clients with 1012 (they
// reconnect to the objects' new owners), then stops serving forwarded
// requests, waiting for those running.
func (r *Router) Close(ctx context.Context) error {
	if r.members == nil {
		return nil
	}
	close(r.stop)
	r.cancel()
	r.wg.Wait()
	leave := r.members.Leave(ctx)
	r.closeHeld()
	err := errors.Join(leave, r.serving.Stop(ctx), r.releases.Stop(ctx))
	r.frames.Stop()
	return err
}

// nodeInfo is a node's heartbeat payload.
type nodeInfo struct {
	HTTP    string `cbor:"1,keyasint,omitempty"`
	Objects int    `cbor:"2,keyasint"`
	Started int64  `cbor:"3,keyasint"`
}

func (r *Router) info() []byte {
	live := 0
	if r.rt != nil {
		live = r.rt.Stats().Live
	}
	b, _ := encode(nodeInfo{HTTP: r.cfg.HTTPAddr, Objects: live, Started: r.started.UnixNano()})
	return b
}

// leased reports whether this node has joined, its membership lease holds
// and every lapse of it has been acted on (watchLease); always under the
// split-brain test hook.
func (r *Router) leased() bool {
	if r.cfg.OwnAll {
		return true
	}
	if !r.joined.Load() {
		return false // not in the cluster yet (joined)
	}
	return time.Now().Before(r.members.LeaseUntil()) && r.members.Lapses() == r.lapsesSeen.Load()
}

// watchLease releases every activation when the lease runs out: the
// others may already have moved these objects, and an activation kept
// here would answer from stale memory once the lease is back. Requests
// meanwhile are refused at once (ErrNoLease).
func (r *Router) watchLease() {
	defer r.wg.Done()
	t := time.NewTicker(leaseCheck)
	defer t.Stop()
	held := true
	var backFailed time.Time // when OnLeaseBack last failed, for its warnings
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		// A lapse renewed before this tick (the process was paused past
		// the lease) counts as one: leased() refuses until it is handled.
		lapses := r.members.Lapses()
		expired := !time.Now().Before(r.members.LeaseUntil())
		if held && (expired || lapses != r.lapsesSeen.Load()) {
			n := r.rt.ReleaseIf(func(string, objects.ID) bool { return true })
			r.logger.Warn("membership lease ran out (no majority acknowledges this node's beats): released every activation; serving nothing until it is back", "released", n)
			held = false
			r.lapse.Lock()
			close(r.lapse.ch)
			r.lapse.Unlock()
			if r.cfg.OnLeaseLost != nil {
				r.cfg.OnLeaseLost()
			}
		}
		if !held && !expired {
			// The lapse stays unhandled, so leased() refuses, until
			// OnLeaseBack has done its part (the log's server is back).
			if r.cfg.OnLeaseBack != nil {
				if err := r.cfg.OnLeaseBack(); err != nil {
					if time.Since(backFailed) > leaseBackRetryLog {
						r.logger.Warn("membership lease is back, but this node cannot serve yet; trying again", "err", err)
						backFailed = time.Now()
					}
					continue
				}
			}
			r.logger.Info("membership lease is back")
			held = true
			r.lapse.Lock()
			r.lapse.ch = make(chan struct{})
			r.lapse.Unlock()
		}
		if held {
			r.lapsesSeen.Store(lapses)
		}
	}
}

// leaseBackRetryLog spaces the warnings of an OnLeaseBack that keeps
// failing (it is tried again every leaseCheck).
const leaseBackRetryLog = 10 * time.Second

// leaseCheck is how often watchLease looks at the lease.
const leaseCheck = 50 * time.Millisecond

func (r *Router) refreshInfo() {
	defer r.wg.Done()
	hb := r.cfg.Heartbeat
	if hb <= 0 {
		hb = time.Second
	}
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.members.SetInfo(r.info())
			// A node that restarted within its TTL never left the view:
			// its run, in its heartbeat, tells.
			r.sweepSockets(r.members.Live())
		}
	}
}

// onChange takes a new view: nodes that left are marked gone (requests in
// flight to them end), and activations of objects that now belong to
// another node are released (drained, then evicted).
func (r *Router) onChange(view []log.Member) {
	nodes := make([]string, len(view))
	for i, m := range view {
		nodes[i] = m.Node
	}
	r.mu.Lock()
	live := map[string]bool{}
	for _, n := range nodes {
		live[n] = true
	}
	for n, ch := range r.mu.gone {
		if !live[n] {
			close(ch)
			delete(r.mu.gone, n)
		}
	}
	old := r.mu.nodes
	r.mu.nodes = nodes
	r.mu.Unlock()
	if r.rt == nil {
		return
	}
	r.sweepSockets(view)
	if r.cfg.OwnAll {
		return
	}
	moved := r.rt.ReleaseIf(func(_ string, id objects.ID) bool { return Owner(id, nodes) != r.cfg.Node })
	r.logger.Info("membership changed", "was", old, "now", nodes, "released", moved)
	if left := leftNodes(old, nodes); len(left) > 0 && r.onTakeover != nil {
		me := r.cfg.Node
		r.onTakeover(func(_ string, id objects.ID) bool {
			return Owner(id, nodes) == me && left[Owner(id, old)]
		})
	}
}

// leftNodes is the set of nodes in old that are not in now.
func leftNodes(old, now []string) map[string]bool {
	left := map[string]bool{}
	for _, n := range old {
		left[n] = true
	}
	for _, n := range now {
		delete(left, n)
	}
	return left
}

// OnTakeover sets fn to be told, whenever nodes leave this node's view, of
// the objects this node gains from them (gained reports them): the alarms
// service repairs their alarms (alarms.Service.TakeOver). fn runs on the
// membership watcher and must not block. Call it before Start.
func (r *Router) OnTakeover(fn func(gained func(class string, id objects.ID) bool)) {
	r.onTakeover = fn
}

// Owns reports whether this node owns id in its view.
func (r *Router) Owns(id objects.ID) bool { return r.OwnerOf(id) == r.cfg.Node }

// Nodes returns the live nodes in this node's view.
func (r *Router) Nodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.nodes
}

// OwnerOf returns the node that owns id in this node's view.
func (r *Router) OwnerOf(id objects.ID) string {
	if r.cfg.OwnAll {
		return r.cfg.Node
	}
	return Owner(id, r.Nodes())
}

// goneCh is closed once node leaves this node's view.
func (r *Router) goneCh(node string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.mu.gone[node]
	if !ok {
		ch = make(chan struct{})
		found := false
		for _, n := range r.mu.nodes {
			found = found || n == node
		}
		if !found {
			close(ch)
			return ch
		}
		r.mu.gone[node] = ch
	}
	return ch
}

// route runs env on the object's owner, retrying while the object is in
// motion, until ctx ends. A node without its lease refuses at once
// (ErrNoLease), before and between attempts: waiting for the lease would
// hold the request for as long as a partition lasts, and the view it
// would forward by may be stale. A request already running or forwarded
// when the lease runs out ends within its deadline (the activation is
// released by watchLease; a forward waits for the owner or ctx).
func (r *Router) route(ctx context.Context, env *Envelope) (*Reply, error) {
	backoff := retryBackoffMin
	var unknown error // an earlier attempt's, whose outcome is unknown
	for {
		if !r.leased() {
			if unknown != nil {
				// Not "nothing ran": an earlier attempt may have.
				return nil, fmt.Errorf("%w (not retried: %s has no membership lease now)", unknown, r.cfg.Node)
			}
			return nil, fmt.Errorf("%w: %s/%s not run on %s; retry, on another node if this one stays cut off", ErrNoLease, env.Class, env.ID, r.cfg.Node)
		}
		owner := r.OwnerOf(env.ID)
		var (
			rep *Reply
			err error
		)
		if owner == r.cfg.Node {
			r.stats.local.Add(1)
			rep, err = r.runLocal(ctx, env)
		} else {
			r.stats.forwarded.Add(1)
			rep, err = r.forward(ctx, owner, env)
		}
		if err == nil {
			ranOn(ctx, owner)
		}
		if rep != nil && rep.Replayed {
			objects.MarkReplayed(ctx)
		}
		if err == nil || !inMotion(err) && !(env.Cause.IdemKey != "" && errors.Is(err, errOutcomeUnknown)) {
			return rep, err
		}
		if errors.Is(err, errNotOwner) {
			r.stats.notOwner.Add(1)
		}
		if errors.Is(err, errOutcomeUnknown) {
			unknown = err
		}
		r.stats.retries.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			// The last cause with %v, not %w: it was a reason to retry
			// (ErrFenced, ErrMoved, ...), handled here; what the caller
			// gets is "unavailable", and an ErrFenced in the chain would
			// turn the gateway's 503 into a 409.
			return nil, fmt.Errorf("%w: %s/%s is moving between nodes (last: %v)", objects.ErrUnavailable, env.Class, env.ID, err)
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// inMotion: the request did not run (or its write was refused) because
// the object is changing owners; running it again is safe.
func inMotion(err error) bool {
	return errors.Is(err, objects.ErrFenced) || errors.Is(err, objects.ErrMoved) ||
		errors.Is(err, errNotOwner) || errors.Is(err, errOwnerGone)
}

// forward sends env to owner and waits for its reply, the caller's
// deadline, the owner leaving the view, or this node's lease running out
// (cut off, it would most likely wait for the deadline: it answers now,
// outcome unknown).
func (r *Router) forward(ctx context.Context, owner string, env *Envelope) (*Reply, error) {
	ctx, span := traceForward(ctx, owner, env)
	rep, err := r.forwardTo(ctx, owner, env)
	endSpan(span, err)
	return rep, err
}

func (r *Router) forwardTo(ctx context.Context, owner string, env *Envelope) (*Reply, error) {
	env.From = r.cfg.Node
	data, err := encode(env)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode request: %w", err)
	}
	gone := r.goneCh(owner)
	r.lapse.Lock()
	lapse := r.lapse.ch
	r.lapse.Unlock()
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-gone:
			cancel(fmt.Errorf("%s left the cluster while running the request", owner))
		case <-lapse:
			cancel(fmt.Errorf("%s lost its membership lease while %s ran the request", r.cfg.Node, owner))
		case <-rctx.Done():
		}
	}()
	resp, err := r.log.Request(rctx, log.NodeSubject(owner), data)
	if err != nil {
		switch {
		case errors.Is(err, log.ErrNoResponder):
			return nil, fmt.Errorf("%w: %s: %w", errOwnerGone, owner, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %s did not answer in time, outcome unknown: %w", objects.ErrUnavailable, owner, ctx.Err())
		case rctx.Err() != nil:
			return nil, fmt.Errorf("%w: %w: %v", objects.ErrUnavailable, errOutcomeUnknown, context.Cause(rctx))
		}
		return nil, fmt.Errorf("%w: %w: forward to %s: %w", objects.ErrUnavailable, errOutcomeUnknown, owner, err)
	}
	var rep Reply
	if err := decode(resp, &rep); err != nil {
		return nil, fmt.Errorf("%w: bad reply from %s: %w", objects.ErrUnavailable, owner, err)
	}
	if rep.Err != nil {
		err := rep.Err.err()
		if errors.Is(err, objects.ErrClosed) {
			return nil, fmt.Errorf("%w: %s is stopping: %w", errOwnerGone, owner, err)
		}
		return nil, err
	}
	return &rep, nil
}

// handle runs a forwarded request on this node, if it owns the object.
func (r *Router) handle(ctx context.Context, data []byte) []byte {
	var env Envelope
	var rep *Reply
	var err error
	switch derr := decode(data, &env); {
	case derr != nil:
		err = fmt.Errorf("%w: forwarded request: %w", objects.ErrBadInput, derr)
	case env.Kind == KindLive:
		// A question about this node, whoever owns the objects.
		rep = &Reply{Live: r.rt.Liveness(ctx, env.Class, env.IDs)}
	case env.Kind == KindDeadSenders:
		var senders []objects.Ref
		senders, err = r.rt.DeadSenders(ctx, deadSendersMax)
		rep = &Reply{Senders: senders}
	case r.OwnerOf(env.ID) != r.cfg.Node:
		err = fmt.Errorf("%w: %s/%s belongs to %s in %s's view", errNotOwner, env.Class, env.ID, r.OwnerOf(env.ID), r.cfg.Node)
	case !r.leased():
		err = fmt.Errorf("%w: %s has no membership lease (not joined yet, or it ran out)", errNotOwner, r.cfg.Node)
	default:
		r.stats.served.Add(1)
		ctx = objects.TrackReplay(ctx)
		ctx = objects.WithCallChain(ctx, env.Chain)
		sctx, span := r.traceServed(ctx, &env)
		rep, err = r.runLocal(sctx, &env)
		endSpan(span, err)
	}
	if rep == nil {
		rep = &Reply{}
	}
	rep.Replayed = objects.Replayed(ctx)
	rep.Err = toWire(err)
	out, eerr := encode(rep)
	if eerr != nil {
		out, _ = encode(&Reply{Err: toWire(fmt.Errorf("encode reply: %w", eerr))})
	}
	return out
}

// runLocal runs env on this node's runtime.
func (r *Router) runLocal(ctx context.Context, env *Envelope) (*Reply, error) {
	ref := env.ref()
	switch env.Kind {
	case KindCall:
		codec := env.codec
		if codec == nil {
			codec = r.cfg.Codec
		}
		out, err := r.rt.Call(ctx, ref, env.Method, env.Body, codec, env.Cause)
		return &Reply{Out: out}, err
	case KindFetch:
		req := env.req
		if req == nil {
			if env.HTTP == nil {
				return nil, fmt.Errorf("%w: fetch without a request", objects.ErrBadInput)
			}
			var err error
			req, err = http.NewRequestWithContext(ctx, env.HTTP.Method, env.HTTP.URL, bytes.NewReader(env.Body))
			if err != nil {
				return nil, fmt.Errorf("%w: forwarded fetch: %w", objects.ErrBadInput, err)
			}
			req.Header, req.Host = env.HTTP.Header, env.HTTP.Host
			if req.Header == nil {
				req.Header = http.Header{}
			}
		} else {
			// The body was read once already: give each attempt its own.
			req = req.Clone(ctx)
			req.Body = io.NopCloser(bytes.NewReader(env.Body))
		}
		resp, err := r.rt.Fetch(ctx, ref, req, env.Cause)
		return &Reply{Resp: resp}, err
	case KindAlarm:
		a := env.Alarm
		if a == nil {
			return nil, fmt.Errorf("%w: alarm fire without its alarm", objects.ErrBadInput)
		}
		info := objects.AlarmInfo{Name: a.Name, ScheduledAt: time.Unix(0, a.ScheduledAt), RetryCount: a.RetryCount, IsRetry: a.RetryCount > 0}
		return &Reply{}, r.rt.Alarm(ctx, ref, info)
	case KindGetAlarms:
		all, err := r.rt.GetAlarms(ctx, ref, env.Cause)
		return &Reply{Alarms: all}, err
	case KindOutbox:
		es, err := r.rt.Outbox(ctx, ref)
		return &Reply{Outbox: es}, err
	case KindSetAlarm:
		at, err := r.rt.SetAlarmAt(ctx, ref, env.AlarmName, time.Unix(0, env.At), env.Cause)
		return &Reply{At: at.UnixNano()}, err
	case KindDeleteAlarm:
		ok, err := r.rt.DeleteAlarmAt(ctx, ref, env.AlarmName, env.Cause)
		return &Reply{OK: ok}, err
	case KindWSConnect:
		if env.conn == nil {
			return r.connectHere(ctx, env) // the client is on env.From
		}
		id, err := r.rt.WebSocketConnect(ctx, ref, env.req, env.conn, env.Cause)
		return &Reply{Socket: id, Node: r.cfg.Node, Run: r.run}, err
	case KindWSMessage, KindWSClose, KindWSError:
		return r.socketHere(ctx, env)
	}
	return nil, fmt.Errorf("%w: unknown request kind %d", objects.ErrBadInput, env.Kind)
}
