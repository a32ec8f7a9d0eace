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

// releaseReply is a node's answer to a claim: Late says why its
// activation did not drain in time (empty: released, or never held).
type releaseReply struct {
	Node string `cbor:"1,keyasint"`
	Late string `cbor:"2,keyasint,omitempty"`
}

// Claim asks every other live node to release class/id and waits for
// their answers, at most ClaimTimeout: wire it to objects.Config.Claim.
// It fails with objects.ErrMoved (nothing ran; the router retries within
// the caller's deadline) while a node that is still in this node's view
// has not released: an activation left there could answer reads from
// memory after this node's writes. A node that dies drops out of the view
// after --node-ttl, and then the claim goes through without it.
func (r *Router) Claim(ctx context.Context, class string, id objects.ID) error {
	if r.cfg.OwnAll {
		return nil
	}
	if !r.joined.Load() {
		return fmt.Errorf("%w: %s/%s: %s has not joined the cluster yet", objects.ErrMoved, class, id, r.cfg.Node)
	}
	nodes := r.Nodes()
	if len(nodes) <= 1 {
		return nil
	}
	r.stats.claims.Add(1)
	data, err := encode(releaseRequest{From: r.cfg.Node, Class: class, ID: id})
	if err != nil {
		return fmt.Errorf("claim %s/%s: %w", class, id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	// Every node serving the subject answers, this one too (at once).
	got, gerr := r.log.Gather(ctx, releaseSubject, data, len(nodes))
	released := map[string]bool{r.cfg.Node: true}
	var late []string
	for _, b := range got {
		var rep releaseReply
		if decode(b, &rep) != nil || rep.Node == "" {
			continue
		}
		if rep.Late != "" {
			late = append(late, rep.Node+": "+rep.Late)
			continue
		}
		released[rep.Node] = true
	}
	var holdouts []string
	for _, n := range r.Nodes() { // the view now: a node dropped meanwhile is gone
		if !released[n] {
			holdouts = append(holdouts, n)
		}
	}
	if len(holdouts) == 0 {
		return nil
	}
	r.stats.claimsHeld.Add(1)
	r.logger.Warn("claim: a live node has not released the object; not loading it yet",
		"class", class, "id", id, "holdouts", holdouts, "late", late, "err", gerr)
	return fmt.Errorf("%w: %s/%s: %v did not release it in time", objects.ErrMoved, class, id, holdouts)
}

// handleRelease releases the object named in a claim of another node,
// waiting (bounded) for its activation to drain, and answers with a
// releaseReply.
func (r *Router) handleRelease(ctx context.Context, data []byte) []byte {
	var req releaseRequest
	if err := decode(data, &req); err != nil {
		return nil
	}
	reply := func(late string) []byte {
		b, _ := encode(releaseReply{Node: r.cfg.Node, Late: late})
		return b
	}
	if req.From == r.cfg.Node || r.rt == nil {
		return reply("")
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ClaimTimeout)
	defer cancel()
	had, err := r.rt.Release(ctx, req.Class, req.ID)
	if err != nil {
		r.logger.Warn("release for another node's claim did not finish", "class", req.Class, "id", req.ID, "to", req.From, "err", err)
		return reply(err.Error())
	}
	if had {
		r.stats.released.Add(1)
	}
	return reply("")
}
