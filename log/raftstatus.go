package log

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RaftStatus is the JetStream cluster's Raft groups as this node's
// embedded server sees them: who leads the meta group (stream and
// consumer placement, the JetStream API) and each stream's group (its
// appends). An operator or a test finds here which node to lose last, or
// to cut off on purpose. A server cut off from the others may still name
// itself leader until its group's election timeout passes; the peers'
// Current and Active say how fresh its view is.
type RaftStatus struct {
	Server string // the server answering (its --node-name)
	// StandingBy: JetStream is stopped while the node has no lease
	// (StandBy); the server takes part in no group and the rest is empty.
	StandingBy bool
	MetaLeader string       // "" while no leader is known
	MetaSize   int          // servers in the meta group
	MetaPeers  []RaftPeer   // the meta group's other members
	Streams    []StreamRaft // by name
}

// RaftPeer is one other member of a Raft group.
type RaftPeer struct {
	Name    string
	Current bool          // seen lately and caught up
	Offline bool          // not seen lately
	Active  time.Duration // since it was last heard from
	Lag     uint64        // operations behind
}

// StreamRaft is one stream's group.
type StreamRaft struct {
	Name     string
	Leader   string // "" while electing
	Replicas []RaftPeer
}

// RaftStatus reads the server's own view; it sends nothing over the
// network, so it answers while the node is partitioned. A server that is
// not clustered has no meta group: ErrNotClustered.
func (s *Server) RaftStatus() (RaftStatus, error) {
	if !s.clustered {
		return RaftStatus{}, ErrNotClustered
	}
	if !s.ns.JetStreamIsClustered() {
		return RaftStatus{Server: s.ns.Name(), StandingBy: true}, nil // or stopping, or starting
	}
	info, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return RaftStatus{}, fmt.Errorf("log: raft status: %w", err)
	}
	st := RaftStatus{Server: s.ns.Name()}
	if m := info.Meta; m != nil {
		st.MetaLeader, st.MetaSize, st.MetaPeers = m.Leader, m.Size, raftPeers(m.Replicas)
	}
	for _, acc := range info.AccountDetails {
		for _, sd := range acc.Streams {
			sr := StreamRaft{Name: sd.Name}
			if c := sd.Cluster; c != nil {
				sr.Leader, sr.Replicas = c.Leader, raftPeers(c.Replicas)
			}
			st.Streams = append(st.Streams, sr)
		}
	}
	slices.SortFunc(st.Streams, func(a, b StreamRaft) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

// ErrNotClustered: the embedded server runs alone.
var ErrNotClustered = errors.New("log: the embedded NATS server is not clustered")

func raftPeers(in []*server.PeerInfo) []RaftPeer {
	out := make([]RaftPeer, 0, len(in))
	for _, p := range in {
		if p == nil {
			continue
		}
		out = append(out, RaftPeer{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active, Lag: p.Lag})
	}
	slices.SortFunc(out, func(a, b RaftPeer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StepDown makes the embedded server give up every stream leadership it
// holds, at once and without asking the others (a leader may step down
// alone). A node cut off from the others keeps believing it leads its
// streams until nats-server's lost-quorum check (10 s); healed before that,
// it answers message gets and refuses publishes from its stale store until
// the new leader's first heartbeat reaches it, so a majority node loading
// an object at the heal could read the past (TestClusterPartitionLinearizable
// found a stale read so). Strata calls this when the node's membership
// lease runs out: by then the others may elect new leaders. It returns how
// many leaderships it gave up; a server that is not clustered has none.
func (s *Server) StepDown() (int, error) {
	if !s.ns.JetStreamIsClustered() {
		return 0, nil
	}
	info, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return 0, fmt.Errorf("log: step down: %w", err)
	}
	n := 0
	var errs []error
	for _, acc := range info.AccountDetails {
		for _, sd := range acc.Streams {
			if c := sd.Cluster; c == nil || c.Leader != s.ns.Name() {
				continue
			}
			if err := s.ns.JetStreamStepdownStream(acc.Name, sd.Name); err != nil {
				errs = append(errs, fmt.Errorf("log: step down from %s: %w", sd.Name, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}
