package cluster

import (
	"context"
	"fmt"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// releaseRequest asks every node to release one object.
type releaseRequest struct {
	From  string `cbor:"1,keyasint"`
	Class string `cbor:"2,keyasint"`
	ID    log.ID `cbor:"3,keyasint"`
}

// Claim asks every other live node to release class/id and waits for
// their answers, at most ClaimTimeout: wire it to objects.Config.Claim. A
// node that does not answer in time is dead or partitioned; the load goes
// on and fencing guards the writes.
func (r *Router) Claim(ctx context.Context, class string, id objects.ID) {
	if r.members == nil || r.cfg.OwnAll {
		return
	}
	nodes := r.Nodes()
	if len(nodes) <= 1 {
		return
	}
	r.stats.claims.Add(1)
	data, err := encode(releaseRequest{From: r.cfg.Node, Class: class, ID: id})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	// Every node serving the subject answers, this one too (at once).
	got, err := r.log.Gather(ctx, releaseSubject, data, len(nodes))
	if err != nil {
		r.logger.Warn("claim: not every node released the object in time; loading anyway (fencing guards writes)",
			"class", class, "id", id, "answers", len(got), "nodes", len(nodes), "err", err)
	}
}

// handleRelease releases the object named in a claim of another node,
// waiting (bounded) for its activation to drain.
func (r *Router) handleRelease(ctx context.Context, data []byte) []byte {
	var req releaseRequest
	if err := decode(data, &req); err != nil || req.From == r.cfg.Node || r.rt == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	had, err := r.rt.Release(ctx, req.Class, req.ID)
	if err != nil {
		r.logger.Warn("release for another node's claim did not finish", "class", req.Class, "id", req.ID, "to", req.From, "err", err)
		return []byte(fmt.Sprint("late: ", err))
	}
	if had {
		r.stats.released.Add(1)
	}
	return nil
}
