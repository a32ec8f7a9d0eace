package cluster

import (
	"time"
)

// Status is one node's view of the cluster (GET /v1/cluster).
type Status struct {
	Node string `json:"node"` // the node answering
	// Leased: the answering node holds its membership lease, so it serves
	// requests; without it, it answers 503 no_lease (router.go, ErrNoLease).
	Leased bool         `json:"leased"`
	Nodes  []NodeStatus `json:"nodes"`
	Stats  RouterStats  `json:"stats"`
}

// NodeStatus is one live node as the answering node sees it.
type NodeStatus struct {
	Name  string `json:"name"`
	HTTP  string `json:"http,omitempty"`
	State string `json:"state"` // "live"; "self" for the answering node
	// Objects is how many objects the node holds active: the objects it
	// owns and has served lately (as of its last heartbeat).
	Objects  int       `json:"objects"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
}

// RouterStats count the answering node's routing since it started.
type RouterStats struct {
	Local     uint64 `json:"local"`     // requests run here as the owner
	Forwarded uint64 `json:"forwarded"` // requests sent to their owner
	Served    uint64 `json:"served"`    // forwarded requests this node ran as the owner
	Retries   uint64 `json:"retries"`   // attempts repeated because the object was moving
	NotOwner  uint64 `json:"not_owner"` // forwards refused by a node that disagreed on the owner
	Claims    uint64 `json:"claims"`    // activations that asked the others to release first
	// ClaimsHeld: claims that found a live node still holding the object
	// after ClaimTimeout; the load waited (the request was retried).
	ClaimsHeld uint64 `json:"claims_held"`
	Released   uint64 `json:"released"` // activations released for another node's claim
	// SocketsRemote: WebSockets whose client is on this node and whose
	// object is on another; SocketsHeld: the reverse (websocket.go).
	SocketsRemote int `json:"sockets_remote"`
	SocketsHeld   int `json:"sockets_held"`
}

// Status returns this node's view.
func (r *Router) Status() Status {
	s := Status{Node: r.cfg.Node, Leased: r.leased(), Stats: RouterStats{
		Local: r.stats.local.Load(), Forwarded: r.stats.forwarded.Load(), Served: r.stats.served.Load(),
		Retries: r.stats.retries.Load(), NotOwner: r.stats.notOwner.Load(), Claims: r.stats.claims.Load(),
		ClaimsHeld: r.stats.claimsHeld.Load(), Released: r.stats.released.Load(),
	}}
	s.Stats.SocketsRemote, s.Stats.SocketsHeld = r.socketCounts()
	if !r.joined.Load() {
		return s
	}
	for _, m := range r.members.Live() {
		ns := NodeStatus{Name: m.Node, State: "live", LastSeen: m.Seen.UTC()}
		var info nodeInfo
		if decode(m.Info, &info) == nil {
			ns.HTTP, ns.Objects, ns.Started = info.HTTP, info.Objects, time.Unix(0, info.Started).UTC()
		}
		if m.Node == r.cfg.Node {
			ns.State = "self"
			ns.Objects = r.rt.Stats().Live
		}
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}
