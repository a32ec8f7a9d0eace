package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Membership (DESIGN.md, "Scale-out"): every node puts a heartbeat under
// its name in a JetStream KV bucket every Heartbeat, and watches the
// bucket. A node is live while its heartbeats keep arriving: one whose
// last heartbeat this node received more than TTL before its own latest
// is dropped from the view (the bucket's own TTL removes the key too,
// without a marker, which is why liveness is judged on receipt with the
// local clock; against its own heartbeat, so that a bucket that stores
// nothing for a while freezes the view instead of emptying it: expire). A
// node that stops gracefully deletes its key, which every watcher sees at
// once.
//
// The view is only a hint for placement: two nodes may disagree for a
// moment, and fencing keeps storage correct meanwhile.

// MembersBucket is the KV bucket holding the heartbeats.
const MembersBucket = "STRATA_NODES"

// MembersConfig configures a membership. Zero values take the defaults.
type MembersConfig struct {
	Node string // this node's name (required; ValidNodeName)
	// Info is this node's payload in its heartbeat (its gateway address,
	// its counts); SetInfo changes it for the next heartbeat.
	Info []byte
	// Heartbeat is the interval between puts; default 1s.
	Heartbeat time.Duration
	// TTL is how long a node stays live after its last heartbeat; default
	// 3 heartbeats. It bounds how long a dead node's objects stay
	// unreachable.
	TTL time.Duration
	// OnChange, if set, runs with the new view each time the set of live
	// nodes changes, on the membership's goroutine (it must not block).
	OnChange func([]Member)
}

// Member is one live node as this node sees it.
type Member struct {
	Node string
	Info []byte
	Seen time.Time // when this node last received its heartbeat
}

// Members is this node's heartbeat and its view of the live nodes.
type Members struct {
	l      *Log
	cfg    MembersConfig
	kv     jetstream.KeyValue
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu struct {
		sync.Mutex
		info    []byte
		nodes   map[string]Member
		live    []string // sorted names, the last view given to OnChange
		stalled bool     // own heartbeats have not come back for a TTL (expire)
		// resumed is when this node's own heartbeat came back after a gap
		// of more than two intervals: the others' heartbeats, held up by
		// the same gap, are counted silent only from then (silent).
		resumed time.Time
		// stored is when this node sent its latest heartbeat that the
		// bucket acknowledged (LeaseUntil).
		stored time.Time
		lapses uint64 // times a stored heartbeat came after the lease had run out
	}
}

// JoinMembers creates the bucket if needed, puts the first heartbeat, reads
// the current members and starts heartbeating and watching until Leave.
func (l *Log) JoinMembers(ctx context.Context, cfg MembersConfig) (*Members, error) {
	if err := ValidNodeName(cfg.Node); err != nil {
		return nil, err
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * cfg.Heartbeat
	}
	if cfg.TTL < 2*cfg.Heartbeat {
		return nil, fmt.Errorf("log: members TTL %s is under two heartbeats of %s", cfg.TTL, cfg.Heartbeat)
	}
	kv, err := l.membersBucket(ctx, cfg.TTL)
	if err != nil {
		return nil, err
	}
	m := &Members{l: l, cfg: cfg, kv: kv, logger: l.cfg.Logger.With("component", "members", "node", cfg.Node), done: make(chan struct{})}
	m.mu.info = cfg.Info
	m.mu.nodes = map[string]Member{}
	if err := m.beat(ctx); err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("log: watch %s: %w", MembersBucket, err)
	}
	// The watcher first replays the current values, then a nil marks the
	// end of them: the view is complete before Join returns.
	if err := m.initial(ctx, w); err != nil {
		w.Stop()
		return nil, err
	}
	var runCtx context.Context
	runCtx, m.cancel = context.WithCancel(context.Background())
	go m.run(runCtx, w)
	return m, nil
}

// membersBucket creates or opens the bucket.
func (l *Log) membersBucket(ctx context.Context, ttl time.Duration) (jetstream.KeyValue, error) {
	return l.openBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      MembersBucket,
		Description: "Strata node heartbeats",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage, // heartbeats are not worth a disk
		Replicas:    l.cfg.Replicas,
	})
}

// openBucket creates or opens a KV bucket. While a cluster forms (or
// elects a new JetStream meta leader, which a loaded machine does now and
// then) a request can go unanswered: it is retried, as the streams are,
// for up to clusterFormTimeout.
func (l *Log) openBucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	deadline := time.Now().Add(clusterFormTimeout)
	attemptTimeout := l.cfg.RequestTimeout
	if l.cfg.Replicas > 1 {
		// A dropped request is retried sooner than RequestTimeout: the
		// answer to a create often goes missing while the bucket's stream
		// elects its first leader.
		attemptTimeout = min(attemptTimeout, clusterAttemptTimeout)
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		kv, err := l.js.CreateOrUpdateKeyValue(actx, cfg)
		cancel()
		if err == nil {
			return kv, nil
		}
		if l.cfg.Replicas <= 1 || ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("log: bucket %s (%d attempts): %w", cfg.Bucket, attempt, err)
		}
		l.cfg.Logger.Info("log: bucket not ready; retrying", "bucket", cfg.Bucket, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("log: bucket %s: %w", cfg.Bucket, ctx.Err())
		case <-time.After(clusterFormRetry):
		}
	}
}

func (m *Members) initial(ctx context.Context, w jetstream.KeyWatcher) error {
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("log: watch %s: closed", MembersBucket)
			}
			if e == nil {
				m.changed()
				return nil
			}
			m.apply(e)
		case <-ctx.Done():
			return fmt.Errorf("log: watch %s: %w", MembersBucket, ctx.Err())
		}
	}
}

func (m *Members) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(m.done)
	defer func() { w.Stop() }()
	tick := time.NewTicker(m.cfg.Heartbeat)
	defer tick.Stop()
	lastUpdate := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				w = m.rewatch(ctx, w)
				continue
			}
			lastUpdate = time.Now()
			if e != nil {
				m.apply(e)
				m.changed()
			}
		case <-tick.C:
			bctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
			if err := m.beat(bctx); err != nil && ctx.Err() == nil {
				m.logger.Warn("heartbeat not stored", "err", err)
			}
			cancel()
			// Our own heartbeat comes back through the watcher: silence
			// for a TTL means the watcher is stuck (its stream moved), so
			// start another.
			if time.Since(lastUpdate) > m.cfg.TTL {
				w = m.rewatch(ctx, w)
				lastUpdate = time.Now()
			}
			m.expire()
		}
	}
}

func (m *Members) rewatch(ctx context.Context, old jetstream.KeyWatcher) jetstream.KeyWatcher {
	old.Stop()
	wctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	w, err := m.kv.WatchAll(wctx)
	if err != nil {
		m.logger.Warn("membership watch not restarted; retrying", "err", err)
		return old // its channel is closed or quiet; the next tick tries again
	}
	return w
}

func (m *Members) beat(ctx context.Context) error {
	m.mu.Lock()
	info := m.mu.info
	m.mu.Unlock()
	sent := time.Now()
	if _, err := m.kv.Put(ctx, m.cfg.Node, info); err != nil {
		return fmt.Errorf("log: heartbeat of %s: %w", m.cfg.Node, err)
	}
	m.mu.Lock()
	if sent.After(m.mu.stored) {
		if !m.mu.stored.IsZero() && sent.After(m.leaseLocked()) {
			m.mu.lapses++
		}
		m.mu.stored = sent
	}
	m.mu.Unlock()
	return nil
}

// LeaseUntil is when this node's lease on its place in the others' views
// ends: two thirds of a TTL after it sent its latest heartbeat that the
// bucket stored. No other node drops this one before a whole TTL has
// passed since it received that heartbeat (which it did after it was
// sent), so until LeaseUntil no other node can have taken this node's
// objects, and this node may serve them from memory. After it, it must
// not: it may be cut off (a partition, a paused process, a stalled bucket)
// while the others have already moved its objects. The last third of the
// TTL is the margin for turns already admitted and for clock rates.
func (m *Members) LeaseUntil() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaseLocked()
}

func (m *Members) leaseLocked() time.Time { return m.mu.stored.Add(m.cfg.TTL * 2 / 3) }

// Lapses counts the times the lease ran out and was renewed again. A
// holder of in-memory state compares it with the count it last acted on:
// a lease renewed before the holder noticed it had run out (a process
// paused past it) still means the others may have moved its objects.
func (m *Members) Lapses() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.lapses
}

func (m *Members) apply(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		now := time.Now()
		if e.Key() == m.cfg.Node {
			if prev, ok := m.mu.nodes[e.Key()]; ok && now.Sub(prev.Seen) > 2*m.cfg.Heartbeat {
				m.mu.resumed = now
			}
		}
		m.mu.nodes[e.Key()] = Member{Node: e.Key(), Info: e.Value(), Seen: now}
	default:
		delete(m.mu.nodes, e.Key())
	}
}

// expire drops the nodes whose heartbeats stopped. Silence is measured
// against this node's own heartbeat as it comes back through the bucket,
// not against the clock: while the bucket stores nothing (its stream
// electing a leader after its leader's server died, which takes 4 to 9 s,
// longer than a TTL) every node goes silent at once, and dropping them
// all would leave each node alone in its view, the owner of every object,
// next to the others doing the same. So the view holds until heartbeats
// flow again, and a node is dropped only once this node's own heartbeat
// arrived more than a TTL after that node's last. The price: a node that
// dies while the bucket is stalled is dropped only a TTL after heartbeats
// flow again. Not covered: a node cut off from the bucket alone (a network
// partition) holds its view too while the others drop it, and serves the
// objects it owned from memory until it rejoins; that would need a lease.
func (m *Members) expire() {
	m.mu.Lock()
	ref := time.Now()
	if own, ok := m.mu.nodes[m.cfg.Node]; ok {
		ref = own.Seen
	}
	for n, mem := range m.mu.nodes {
		if n != m.cfg.Node && silent(mem.Seen, m.mu.resumed, ref, m.cfg.TTL) {
			delete(m.mu.nodes, n)
		}
	}
	stalled := time.Since(ref) > m.cfg.TTL
	was := m.mu.stalled
	m.mu.stalled = stalled
	m.mu.Unlock()
	switch {
	case stalled && !was:
		m.logger.Warn("own heartbeats have not come back for a TTL: the membership bucket stores nothing; holding the view until they do", "ttl", m.cfg.TTL)
	case !stalled && was:
		m.logger.Info("own heartbeats come back again; the view follows the heartbeats")
	}
	m.changed()
}

// silent reports whether a node last heard of at seen has been silent for
// more than ttl by ref, the arrival of this node's own latest heartbeat,
// counting only from resumed, when this node's own heartbeats came back
// after a gap: the bucket that held ours back held the others' too, and
// theirs, put on their own clocks, may come back a little after ours.
// (Judged from seen alone, the first own heartbeat after a stall dropped
// every other node at once, and the node, alone in its view, took every
// object while the others still served them.)
func silent(seen, resumed, ref time.Time, ttl time.Duration) bool {
	if resumed.After(seen) {
		seen = resumed
	}
	return ref.Sub(seen) > ttl
}

// changed calls OnChange if the set of live names moved.
func (m *Members) changed() {
	m.mu.Lock()
	live := m.liveLocked()
	same := len(live) == len(m.mu.live)
	for i := 0; same && i < len(live); i++ {
		same = live[i] == m.mu.live[i]
	}
	m.mu.live = live
	view := m.viewLocked()
	m.mu.Unlock()
	if !same && m.cfg.OnChange != nil {
		m.cfg.OnChange(view)
	}
}

// liveLocked: the nodes seen, and always this one (a node serving requests
// counts itself live even while its heartbeats fail to land).
func (m *Members) liveLocked() []string {
	live := []string{m.cfg.Node}
	for n := range m.mu.nodes {
		if n != m.cfg.Node {
			live = append(live, n)
		}
	}
	sort.Strings(live)
	return live
}

func (m *Members) viewLocked() []Member {
	out := make([]Member, 0, len(m.mu.live))
	for _, n := range m.mu.live {
		mem, ok := m.mu.nodes[n]
		if !ok {
			mem = Member{Node: n, Info: m.mu.info, Seen: time.Now()}
		}
		out = append(out, mem)
	}
	return out
}

// Live returns the live nodes, sorted by name.
func (m *Members) Live() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked()
}

// SetInfo replaces this node's heartbeat payload from the next heartbeat.
func (m *Members) SetInfo(info []byte) {
	m.mu.Lock()
	m.mu.info = info
	m.mu.Unlock()
}

// Leave stops heartbeating and deletes this node's key, so the others drop
// it at once instead of after a TTL.
func (m *Members) Leave(ctx context.Context) error {
	m.cancel()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("log: leave: %w", ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, m.l.cfg.RequestTimeout)
	defer cancel()
	if err := m.kv.Delete(ctx, m.cfg.Node); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("log: leave: delete %s: %w", m.cfg.Node, err)
	}
	return nil
}
