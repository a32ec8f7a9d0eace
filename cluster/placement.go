// Package cluster places objects on nodes and forwards requests to their
// owners (DESIGN.md, "Scale-out"). It sits between objects and gateway:
// a Router is a gateway.Backend like one node's *objects.Runtime, so the
// gateway sees local and forwarded requests the same way.
//
//  1. Placement (this file) is pure: rendezvous hashing of the object id
//     over the names of the live nodes. Every node computes it from its own
//     view of the membership (log.Members); views agree most of the time.
//  2. Routing (router.go): a request for an object this node owns runs on
//     the local runtime; any other goes to the owner over NATS
//     request/reply (log.Request) as an Envelope, with the caller's
//     deadline. The owner runs the turn, or answers "not owner" when its
//     view disagrees.
//  3. Motion: a request that meets an object in motion (fenced, released,
//     not owner, owner gone before it ran) is retried on the owner of the
//     moment until the caller's deadline; then it fails with a retryable
//     ErrUnavailable (503). A request whose outcome is unknown (the owner
//     died while running it) is never retried: it fails the same way, so a
//     turn never runs twice.
//  4. Handoff: before an activation loads, its node asks every other node to
//     release the object and waits for their answers (bounded); a node
//     that learns from the membership that it lost objects releases them.
//     So reads are not answered from a stale activation while the object
//     moves, and fencing rejects any write that is late all the same.
package cluster

import (
	"encoding/binary"
	"hash/fnv"
)

// Owner returns the node among nodes that owns id: the one with the
// highest score hash(node, id) (rendezvous or highest-random-weight
// hashing). When a node leaves, only its objects move; when one joins, it
// takes about 1/n of the objects from each of the others. "" if nodes is
// empty.
func Owner(id [32]byte, nodes []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		s := score(n, id)
		if best == "" || s > bestScore || s == bestScore && n < best {
			best, bestScore = n, s
		}
	}
	return best
}

func score(node string, id [32]byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write(id[:])
	return mix(h.Sum64() ^ binary.BigEndian.Uint64(id[:8]))
}

// mix is splitmix64's finalizer: FNV alone spreads similar names poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
