package objects

import (
	"context"
	"errors"
	"fmt"
)

// Handing an object from node to node (DESIGN.md, "Scale-out"). In a
// cluster an object should have one activation at a time. Two mechanisms
// keep it so, and fencing (the write path, step 6) keeps storage correct
// whenever they are too late:
//
//   - Claim: before an activation loads, the runtime calls Config.Claim,
//     which asks every other node to release the object and waits for
//     them (bounded). An activation left behind on another node could
//     otherwise answer reads from memory that the new owner has since
//     written over. If a node that is still live did not release in time,
//     Claim fails (with ErrMoved: nothing ran, retry) and so does the load.
//   - Release: a node that receives such a request, or that learns from the
//     membership that an object is no longer its own, releases the
//     activation: admissions stop at once (new requests get ErrMoved), the
//     requests already queued run, their events are acknowledged, then the
//     activation is evicted.
//   - The object's WebSockets on this node are closed with 1012 (service
//     restart) once the activation has drained (at once if it hibernates):
//     the new owner's hub does not know them, so their clients reconnect
//     and land there. The auto-response pair goes with them.

// ErrMoved: the object's activation on this node was released because the
// object belongs to another node; nothing ran. The cluster layer retries it
// on the owner.
var ErrMoved = errors.New("object moved to another node; retry")

// CloseServiceRestart is the WebSocket close code (1012, service restart)
// of a socket whose object moved to another node: reconnect.
const CloseServiceRestart = 1012

const closeMovedReason = "object moved to another node; reconnect"

// claim runs Config.Claim before a load, if set. Its error fails the
// load, and with it the requests waiting for the activation.
func (a *activation) claim(ctx context.Context) error {
	if a.rt.cfg.Claim == nil {
		return nil
	}
	return a.rt.cfg.Claim(ctx, a.class.name, a.id)
}

// releaseNow stops admissions (ErrMoved from now on) and asks run to end
// once the queued requests are done.
func (a *activation) releaseNow() {
	a.mu.Lock()
	a.mu.closed = true
	a.mu.moved = true
	a.mu.Unlock()
	a.releaseOnce.Do(func() { close(a.handoff) })
}

// moved reports whether releaseNow ran.
func (a *activation) moved() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.moved
}

// Release drains and evicts class/id's activation on this node, if there
// is one, and waits until it has ended (or ctx); then the object's sockets
// here are closed. It reports whether there was an activation or a socket.
func (rt *Runtime) Release(ctx context.Context, class string, id ID) (bool, error) {
	k := actKey{class, id}
	rt.mu.Lock()
	a, ok := rt.mu.acts[k]
	rt.mu.Unlock()
	if !ok {
		return rt.closeSockets(k, CloseServiceRestart, closeMovedReason) > 0, nil
	}
	a.releaseNow()
	select {
	case <-a.done:
		return true, nil
	case <-ctx.Done():
		return true, fmt.Errorf("release %s/%s: %w", class, id, ctx.Err())
	}
}

// Active reports whether the object has an activation on this node. The
// alarm sweep leaves active objects alone: their alarms are checked on
// activation and their changes are being published.
func (rt *Runtime) Active(class string, id ID) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, ok := rt.mu.acts[actKey{class, id}]
	return ok
}

// ReleaseIf releases, without waiting, every activation for which moved
// reports true, closes the sockets of such objects that hibernate, and
// returns how many objects it released. The cluster layer calls it when
// the membership changes.
func (rt *Runtime) ReleaseIf(moved func(class string, id ID) bool) int {
	rt.mu.Lock()
	var out []*activation
	active := make(map[actKey]bool, len(rt.mu.acts))
	for k, a := range rt.mu.acts {
		active[k] = true
		if moved(k.class, k.id) {
			out = append(out, a)
		}
	}
	rt.mu.Unlock()
	for _, a := range out {
		a.releaseNow() // its sockets close when it ends (finish)
	}
	n := len(out)
	for _, k := range rt.sockets.keys() {
		if !active[k] && moved(k.class, k.id) && rt.closeSockets(k, CloseServiceRestart, closeMovedReason) > 0 {
			n++
		}
	}
	return n
}
