package log

import (
	"sort"
	"time"
)

// The pure core of the membership (members.go): what a node knows of the
// others and of its own lease, changed only by the messages it receives
// and the time it is given. No I/O here; members.go sends and receives.
//
// Inputs: a peer's beat (it is alive, here is what it hears), a peer's ack
// of one of this node's beats (the same, and it received that beat), a
// peer's leave, and ticks. Outputs: the view (who is live), the lease
// (until when this node may serve from memory) and the lapses.
//
// The rules, and why (docs/design-notes.md, "Membership and the lease"):
//
//  1. Quorum. The cluster's nodes are the known set: every node this one
//     ever heard of (the bucket at join, beats, acks), less those that
//     left gracefully. A silent node stays known, so a node cut off alone
//     never counts itself a majority. The quorum is a majority of it.
//  2. Lease. A beat sent at s that a quorum (this node included) has
//     received, as its acks tell, renews the lease to s + 2/3 TTL.
//  3. View. A peer is live while this node heard it directly within a
//     TTL, or while a peer it heard within a TTL reported hearing it in
//     its latest report (so a node drops a peer only when all it hears
//     agree the peer is silent: an asymmetric cut does not move objects
//     away from a node that still holds its lease through others).
//  4. Silence is counted from resumed at the earliest: after a gap in this
//     node's own ticks (a pause), the others get a TTL again.
//
// Safety (a node cut off loses its lease before the others may take its
// objects): a node B drops C at t only if B did not hear C since t - TTL;
// C's lease at t needs a beat sent after t - 2/3 TTL received by a quorum,
// so not by B; in a symmetric cut that quorum is on C's side, which is not
// a majority. Liveness: two nodes of a majority renew each other's leases
// by core NATS messages alone, whatever JetStream's streams and their Raft
// leaders do.

// peerState is what this node knows of one other node.
type peerState struct {
	info  []byte
	seen  time.Time       // when a message of its own (beat, ack) last arrived
	heard map[string]bool // whom it reported hearing, in its latest message
}

// beatRecord is one of this node's beats waiting for acks.
type beatRecord struct {
	sent  time.Time
	acked map[string]bool
}

// memberState is the membership's state; Members guards it with its mutex.
type memberState struct {
	self      string
	heartbeat time.Duration
	ttl       time.Duration

	known    map[string]bool       // the cluster's nodes, self included (rule 1)
	peers    map[string]*peerState // the others heard of, live or not
	resumed  time.Time             // rule 4
	lastTick time.Time
	// leaseSent is the send time of the latest beat a quorum received.
	leaseSent time.Time
	lapses    uint64
	beats     map[uint64]*beatRecord // recent beats by sequence
	seq       uint64
}

// beatsKept bounds the beats remembered for their acks: an ack of an
// older one could not renew the lease anyway (it was sent over a TTL ago).
const beatsKept = 64

func newMemberState(self string, heartbeat, ttl time.Duration) *memberState {
	return &memberState{
		self: self, heartbeat: heartbeat, ttl: ttl,
		known: map[string]bool{self: true},
		peers: map[string]*peerState{},
		beats: map[uint64]*beatRecord{},
	}
}

// quorum is a majority of the known nodes (rule 1).
func (s *memberState) quorum() int { return len(s.known)/2 + 1 }

// leaseUntil is the end of the lease (rule 2).
func (s *memberState) leaseUntil() time.Time {
	if s.leaseSent.IsZero() {
		return time.Time{}
	}
	return s.leaseSent.Add(s.ttl * 2 / 3)
}

// tick notes the time: a gap of more than two heartbeats since the last
// tick is a pause of this node (rule 4).
func (s *memberState) tick(now time.Time) {
	if !s.lastTick.IsZero() && now.Sub(s.lastTick) > 2*s.heartbeat {
		s.resumed = now
	}
	s.lastTick = now
}

// beat records a beat of this node sent at now and returns its sequence.
// Alone in the known set, the beat is its own quorum.
func (s *memberState) beat(now time.Time) uint64 {
	s.seq++
	s.beats[s.seq] = &beatRecord{sent: now, acked: map[string]bool{}}
	delete(s.beats, s.seq-beatsKept)
	s.renew(s.beats[s.seq])
	return s.seq
}

// renew extends the lease if b was received by a quorum.
func (s *memberState) renew(b *beatRecord) {
	if 1+len(b.acked) < s.quorum() || !b.sent.After(s.leaseSent) {
		return
	}
	if !s.leaseSent.IsZero() && b.sent.After(s.leaseUntil()) {
		s.lapses++
	}
	s.leaseSent = b.sent
}

// heardFrom records a message of peer (a beat or an ack) received at now.
func (s *memberState) heardFrom(peer string, info []byte, heard []string, now time.Time) {
	if peer == s.self {
		return
	}
	s.known[peer] = true
	p := s.peers[peer]
	if p == nil {
		p = &peerState{}
		s.peers[peer] = p
	}
	p.info, p.seen = info, now
	p.heard = make(map[string]bool, len(heard))
	for _, n := range heard {
		p.heard[n] = true
	}
}

// acked records peer's ack of beat seq.
func (s *memberState) acked(peer string, seq uint64) {
	b := s.beats[seq]
	if b == nil || peer == s.self || !s.known[peer] {
		return
	}
	b.acked[peer] = true
	s.renew(b)
}

// left forgets a peer that left gracefully: it is no longer one of the
// cluster's nodes.
func (s *memberState) left(peer string) {
	if peer == s.self {
		return
	}
	delete(s.known, peer)
	delete(s.peers, peer)
}

// direct reports whether this node heard p itself within a TTL of now.
func (s *memberState) direct(p *peerState, now time.Time) bool {
	seen := p.seen
	if s.resumed.After(seen) {
		seen = s.resumed
	}
	return now.Sub(seen) <= s.ttl
}

// heard is the peers this node heard directly within a TTL, sorted: its
// report in every beat and ack.
func (s *memberState) heard(now time.Time) []string {
	var out []string
	for n, p := range s.peers {
		if s.direct(p, now) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// live is the view at now (rule 3), sorted, this node included.
func (s *memberState) live(now time.Time) []string {
	out := []string{s.self}
	for n, p := range s.peers {
		if s.direct(p, now) {
			out = append(out, n)
			continue
		}
		for _, q := range s.peers {
			if q != p && q.heard[n] && s.direct(q, now) {
				out = append(out, n)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
