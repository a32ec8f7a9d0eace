package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Membership (DESIGN.md, "Scale-out") and this node's lease.
//
// Every Heartbeat each node publishes a beat over core NATS to every other
// node, and every node that receives it answers with an ack. Beats and
// acks carry the sender's payload (Info) and the nodes it heard within a
// TTL. From them each node keeps its view of the live nodes and its lease;
// the rules and the argument are in members_view.go and
// docs/design-notes.md ("Membership and the lease").
//
// Why not a replicated KV bucket, as before (issue 22): heartbeats stored
// in an R3 bucket stop being stored whenever that bucket's stream has no
// leader: when its leader is the node that is cut off, and at every heal,
// when the cut node's inflated Raft terms make every group step down. The
// majority then lost its leases for about 5 s, although nothing was wrong
// on its side. Beats and acks need only the routes between the nodes of a
// majority, never a stream's leader.
//
// The bucket stays for what needs agreement once: joining. A node joins by
// storing its key there (which needs a JetStream quorum, so a node cut off
// from the majority cannot join and count itself alone) and reads the keys
// to learn the cluster's nodes before its first beat. It keeps putting its
// key every Heartbeat, in the background and without effect on the lease,
// so that a node joining later learns of it, and deletes it when it leaves.
//
// Earlier bugs, kept out by the rules: a node judging silence by the
// wall clock alone dropped every other node after its own pause and took
// every object (rule 4, and acks count as hearing); a node cut off held
// its view and served from memory (rule 2: without a quorum's acks the
// lease runs out, and the router then serves nothing); a lease renewed
// before the holder noticed it had run out (Lapses).
//
// The view is only a hint for placement: two nodes may disagree for a
// moment, and fencing keeps storage correct meanwhile.

// MembersBucket is the KV bucket holding the nodes' keys (joining).
const MembersBucket = "STRATA_NODES"

// Subjects of the beats and of leaves; acks go to a subject per node.
const (
	membersBeatSubject  = "strata.members.beat"
	membersLeaveSubject = "strata.members.leave"
	membersAckPrefix    = "strata.members.ack."
)

// MembersConfig configures a membership. Zero values take the defaults.
type MembersConfig struct {
	Node string // this node's name (required; ValidNodeName)
	// Info is this node's payload in its beats (its gateway address, its
	// counts); SetInfo changes it for the next beat.
	Info []byte
	// Heartbeat is the interval between beats; default 1s.
	Heartbeat time.Duration
	// TTL is how long a node stays live after it was last heard; default
	// 3 heartbeats. It bounds how long a dead node's objects stay
	// unreachable. The lease runs two thirds of it past a beat a majority
	// received.
	TTL time.Duration
	// OnChange, if set, runs with the new view each time the set of live
	// nodes changes, on the membership's goroutines (it must not block).
	OnChange func([]Member)
}

// Member is one live node as this node sees it.
type Member struct {
	Node string
	Info []byte
	Seen time.Time // when this node last heard it (directly or reported)
}

// beatMsg is a beat, an ack and a leave on the wire (CBOR).
type beatMsg struct {
	Node  string   `cbor:"1,keyasint"`
	Seq   uint64   `cbor:"2,keyasint,omitempty"` // the beat's (or the acked beat's) sequence
	Info  []byte   `cbor:"3,keyasint,omitempty"`
	Heard []string `cbor:"4,keyasint,omitempty"` // nodes the sender heard within a TTL
}

// Members is this node's beats, its view of the live nodes and its lease.
type Members struct {
	l      *Log
	cfg    MembersConfig
	kv     jetstream.KeyValue
	logger *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	beats  *nats.Subscription
	acks   *nats.Subscription
	leaves *nats.Subscription
	// kick tells run that a message arrived that may change the view:
	// OnChange runs there, never on a subscription's goroutine, so that a
	// slow OnChange cannot hold up the acks others' leases depend on.
	kick chan struct{}

	mu struct {
		sync.Mutex
		info []byte
		st   *memberState
		live []string // sorted names, the last view given to OnChange
	}
}

// JoinMembers stores this node's key in the bucket, learns the cluster's
// nodes from it, starts beating, and returns once a majority acknowledged
// a beat (the lease is held) or two heartbeats passed.
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
	if l.closed() {
		return nil, ErrClosed
	}
	kv, err := l.membersBucket(ctx, cfg.TTL)
	if err != nil {
		return nil, err
	}
	m := &Members{l: l, cfg: cfg, kv: kv, logger: l.cfg.Logger.With("component", "members", "node", cfg.Node), kick: make(chan struct{}, 1)}
	m.mu.info = cfg.Info
	m.mu.st = newMemberState(cfg.Node, cfg.Heartbeat, cfg.TTL)
	m.mu.live = []string{cfg.Node}
	if _, err := kv.Put(ctx, cfg.Node, cfg.Info); err != nil {
		return nil, fmt.Errorf("log: join: put %s: %w", cfg.Node, err)
	}
	if err := m.readBucket(ctx); err != nil {
		return nil, err
	}
	if err := m.subscribe(); err != nil {
		return nil, err
	}
	var runCtx context.Context
	runCtx, m.cancel = context.WithCancel(context.Background())
	m.sendBeat()
	if err := m.awaitLease(ctx); err != nil {
		m.cancel()
		m.unsubscribe()
		return nil, err
	}
	m.changed()
	m.wg.Add(2)
	go m.run(runCtx)
	go m.keepKey(runCtx)
	return m, nil
}

// awaitLease waits up to two heartbeats for the first beat's acks from a
// majority; past them the node joins without its lease, which the next
// beats may bring.
func (m *Members) awaitLease(ctx context.Context) error {
	deadline := time.Now().Add(2 * m.cfg.Heartbeat)
	for !time.Now().Before(m.LeaseUntil()) {
		if time.Now().After(deadline) {
			m.logger.Warn("joined without a majority's ack yet: no lease until one comes")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("log: join: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond): // polling the first acks
		}
	}
	return nil
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

// readBucket learns the cluster's nodes from the keys stored within a TTL,
// and counts them live until they are heard of (or not) for a TTL.
func (m *Members) readBucket(ctx context.Context) error {
	keys, err := m.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("log: join: list %s: %w", MembersBucket, err)
	}
	now := time.Now()
	for k := range keys.Keys() {
		if k == m.cfg.Node {
			continue
		}
		var info []byte
		if e, err := m.kv.Get(ctx, k); err == nil {
			info = e.Value()
		}
		m.mu.Lock()
		m.mu.st.heardFrom(k, info, nil, now)
		m.mu.Unlock()
	}
	return nil
}

func (m *Members) subscribe() error {
	var err error
	nc := m.l.nc
	if m.beats, err = nc.Subscribe(membersBeatSubject, m.onBeat); err != nil {
		return fmt.Errorf("log: members: subscribe: %w", err)
	}
	if m.acks, err = nc.Subscribe(membersAckPrefix+m.cfg.Node, m.onAck); err != nil {
		m.unsubscribe()
		return fmt.Errorf("log: members: subscribe: %w", err)
	}
	if m.leaves, err = nc.Subscribe(membersLeaveSubject, m.onLeave); err != nil {
		m.unsubscribe()
		return fmt.Errorf("log: members: subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil {
		m.unsubscribe()
		return fmt.Errorf("log: members: subscribe: %w", err)
	}
	return nil
}

func (m *Members) unsubscribe() {
	for _, s := range []*nats.Subscription{m.beats, m.acks, m.leaves} {
		if s != nil {
			s.Unsubscribe()
		}
	}
}

// run beats every Heartbeat and looks at the view after each beat.
func (m *Members) run(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.sendBeat()
			m.changed()
		case <-m.kick:
			m.changed()
		}
	}
}

// poke asks run to look at the view.
func (m *Members) poke() {
	select {
	case m.kick <- struct{}{}:
	default: // one is pending already
	}
}

// keepKey puts this node's key every Heartbeat so that joining nodes learn
// of it. A put that fails (the bucket's stream has no leader) changes
// nothing else: the lease does not depend on it.
func (m *Members) keepKey(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.Heartbeat)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.mu.Lock()
		info := m.mu.info
		m.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, m.cfg.TTL)
		_, err := m.kv.Put(pctx, m.cfg.Node, info)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			m.logger.Info("node key not stored in the bucket (joining nodes may not learn of this one until it is); the lease does not depend on it", "err", err)
			failing = true
		case err == nil && failing:
			m.logger.Info("node key stored again")
			failing = false
		}
	}
}

// sendBeat publishes a beat with this node's ack subject as its reply.
func (m *Members) sendBeat() {
	now := time.Now()
	m.mu.Lock()
	st := m.mu.st
	st.tick(now)
	msg := beatMsg{Node: m.cfg.Node, Seq: st.beat(now), Info: m.mu.info, Heard: st.heard(now)}
	m.mu.Unlock()
	b, err := encMode.Marshal(msg)
	if err != nil {
		m.logger.Error("beat not encoded", "err", err)
		return
	}
	out := nats.NewMsg(membersBeatSubject)
	out.Data, out.Reply = b, membersAckPrefix+m.cfg.Node
	if err := m.l.nc.PublishMsg(out); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		m.logger.Warn("beat not sent", "err", err)
	}
}

// onBeat takes another node's beat and acks it.
func (m *Members) onBeat(in *nats.Msg) {
	var msg beatMsg
	if err := decMode.Unmarshal(in.Data, &msg); err != nil || ValidNodeName(msg.Node) != nil {
		m.logger.Warn("a beat that does not decode; ignored", "err", err)
		return
	}
	if msg.Node == m.cfg.Node {
		return // our own, back through the subscription
	}
	now := time.Now()
	m.mu.Lock()
	m.mu.st.heardFrom(msg.Node, msg.Info, msg.Heard, now)
	ack := beatMsg{Node: m.cfg.Node, Seq: msg.Seq, Info: m.mu.info, Heard: m.mu.st.heard(now)}
	m.mu.Unlock()
	if in.Reply != "" {
		if b, err := encMode.Marshal(ack); err == nil {
			if err := m.l.nc.Publish(in.Reply, b); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				m.logger.Warn("ack not sent", "to", msg.Node, "err", err)
			}
		}
	}
	m.poke()
}

// onAck takes another node's ack of one of this node's beats.
func (m *Members) onAck(in *nats.Msg) {
	var msg beatMsg
	if err := decMode.Unmarshal(in.Data, &msg); err != nil || ValidNodeName(msg.Node) != nil {
		m.logger.Warn("an ack that does not decode; ignored", "err", err)
		return
	}
	m.mu.Lock()
	m.mu.st.heardFrom(msg.Node, msg.Info, msg.Heard, time.Now())
	m.mu.st.acked(msg.Node, msg.Seq)
	m.mu.Unlock()
	m.poke()
}

// onLeave takes another node's graceful leave.
func (m *Members) onLeave(in *nats.Msg) {
	var msg beatMsg
	if err := decMode.Unmarshal(in.Data, &msg); err != nil || ValidNodeName(msg.Node) != nil || msg.Node == m.cfg.Node {
		return
	}
	m.mu.Lock()
	m.mu.st.left(msg.Node)
	m.mu.Unlock()
	m.poke()
}

// LeaseUntil is when this node's lease ends: two thirds of a TTL after it
// sent its latest beat that a majority of the cluster's nodes received.
// No node that received that beat drops this one before a whole TTL has
// passed since (it received it after it was sent), and a node that did
// not receive it is not in that majority; so until LeaseUntil no node of
// a majority has taken this node's objects, and this node may serve them
// from memory. After it, it must not: it may be cut off (a partition, a
// paused process) while the others have already moved its objects. The
// last third of the TTL is the margin for turns already admitted and for
// clock rates.
func (m *Members) LeaseUntil() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.st.leaseUntil()
}

// Lapses counts the times the lease ran out and was renewed again. A
// holder of in-memory state compares it with the count it last acted on:
// a lease renewed before the holder noticed it had run out (a process
// paused past it) still means the others may have moved its objects.
func (m *Members) Lapses() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.st.lapses
}

// changed calls OnChange if the set of live names moved (on run's
// goroutine, and in JoinMembers before run starts).
func (m *Members) changed() {
	m.mu.Lock()
	live := m.mu.st.live(time.Now())
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

func (m *Members) viewLocked() []Member {
	out := make([]Member, 0, len(m.mu.live))
	for _, n := range m.mu.live {
		if n == m.cfg.Node {
			out = append(out, Member{Node: n, Info: m.mu.info, Seen: time.Now()})
			continue
		}
		mem := Member{Node: n}
		if p := m.mu.st.peers[n]; p != nil {
			mem.Info, mem.Seen = p.info, p.seen
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

// SetInfo replaces this node's payload from the next beat.
func (m *Members) SetInfo(info []byte) {
	m.mu.Lock()
	m.mu.info = info
	m.mu.Unlock()
}

// Leave stops beating, tells the others (they drop this node at once and
// no longer count it among the cluster's nodes) and deletes its key.
func (m *Members) Leave(ctx context.Context) error {
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("log: leave: %w", ctx.Err())
	}
	m.unsubscribe()
	if b, err := encMode.Marshal(beatMsg{Node: m.cfg.Node}); err == nil {
		if err := m.l.nc.Publish(membersLeaveSubject, b); err != nil {
			m.logger.Warn("leave not announced; the others drop this node after a TTL", "err", err)
		}
		m.l.nc.Flush()
	}
	ctx, cancel := context.WithTimeout(ctx, m.l.cfg.RequestTimeout)
	defer cancel()
	if err := m.kv.Delete(ctx, m.cfg.Node); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("log: leave: delete %s: %w", m.cfg.Node, err)
	}
	return nil
}
