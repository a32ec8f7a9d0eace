package gateway

import (
	"net/http"
)

// RaftStatus is GET /v1/cluster/raft: the NATS JetStream cluster's Raft
// groups as the answering node's embedded server sees them, so an
// operator can tell which node leads the meta group and each stream (a
// node whose loss costs an election). Its view is local: a node cut off
// from the others may still name itself leader until its election timeout
// passes; each peer's active_ms says how fresh the view is.
type RaftStatus struct {
	Node string `json:"node"` // the answering node
	// StandingBy: the node has no membership lease and its embedded
	// server's JetStream is stopped meanwhile; it takes part in no group.
	StandingBy bool         `json:"standing_by,omitempty"`
	MetaLeader string       `json:"meta_leader"` // "" while none is known
	MetaSize   int          `json:"meta_size"`
	MetaPeers  []RaftPeer   `json:"meta_peers"` // the meta group's other members
	Streams    []StreamRaft `json:"streams"`
}

// RaftPeer is one other member of a Raft group.
type RaftPeer struct {
	Name     string `json:"name"`
	Current  bool   `json:"current"` // seen lately and caught up
	Offline  bool   `json:"offline,omitempty"`
	ActiveMs int64  `json:"active_ms"` // since it was last heard from
	Lag      uint64 `json:"lag,omitempty"`
}

// StreamRaft is one stream's Raft group.
type StreamRaft struct {
	Name     string     `json:"name"`
	Leader   string     `json:"leader"` // "" while electing
	Replicas []RaftPeer `json:"replicas"`
}

// raft serves GET /v1/cluster/raft; a node without an embedded clustered
// NATS server (alone, or on --nats-url) answers 404 not_clustered.
func (g *Gateway) raft(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Raft == nil {
		writeError(w, r, &routeError{http.StatusNotFound, "not_clustered", "this node runs no clustered embedded NATS server (it runs alone, or on --nats-url): ask the NATS cluster's own monitoring"})
		return
	}
	st, err := g.cfg.Raft()
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
