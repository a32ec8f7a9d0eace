package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// WebSockets in a cluster (DESIGN.md, "WebSockets and hibernation" and
// "Scale-out"). A client's socket stays on the node that accepted it, the
// edge; its object's turns run on the owner, which holds the socket in
// its runtime's hub like any other, so hibernation works there exactly as
// on one node. When edge and owner are one node the router calls the
// runtime directly. Otherwise:
//
//  1. Connect: the edge registers the socket under its own id (Sock), then
//     forwards KindWSConnect (routed and retried like a call while the
//     object moves). The owner runs the connect turn with a remoteSocket
//     as the SocketConn and keeps it in held, by edge run and Sock.
//  2. Messages, the client's close and socket errors are forwarded to that
//     owner (not re-placed: only it holds the socket) with the caller's
//     deadline. The owner answers a message equal to the object's
//     auto-response request itself, without a turn and without waking the
//     object, so AutoResponseAt stays true.
//  3. Whatever a turn sends or closes leaves the owner as wsFrames
//     published on the edge's subject, one publish per frame per socket
//     (a broadcast to n sockets on other nodes is n publishes). Frames of
//     one socket carry 1, 2, 3…: core NATS keeps their order from one
//     connection to one subscription, and a gap (a frame NATS dropped)
//     closes the socket with 1012 rather than lose a message silently.
//  4. A socket ends with 1012 (service restart) when its object moves:
//     the owner closes the object's sockets once its activation is
//     released (objects/handoff.go), and the edge closes those whose owner
//     left its view, restarted (its run changed), refused a message
//     (not_owner, moved, socket_lost), or did not answer. The client
//     reconnects and lands on the new owner.
//  5. Edge loss: the owner ends the sockets of an edge that left its view
//     or restarted with WebSocketError turns (the clients' connections
//     died with it). A socket the edge's gateway ends without a turn of
//     its own (the node stops: 1001; a frame was lost; its end turn could
//     not be forwarded) is sent to the owner as a drop, which runs a
//     WebSocketError turn there too. A frame the owner cannot publish ends
//     the socket with 1011 and a WebSocketError turn.
//
// A node's subject is strata.ws.<node>.<run>, run being the process's start
// time in unix nanoseconds, so frames meant for a previous run of a
// restarted node reach nobody instead of a new socket with the same id.

// wsOp is what a wsFrame does.
type wsOp uint8

const (
	opSend  wsOp = iota + 1 // owner → edge: send Data
	opClose                 // owner → edge: close with Code and Reason
	opDrop                  // edge → owner: the socket is gone without a turn
)

// wsFrame is one message between the two nodes of a socket.
type wsFrame struct {
	Op     wsOp   `cbor:"1,keyasint"`
	Sock   uint64 `cbor:"2,keyasint"`           // the socket's id on its edge
	Seq    uint64 `cbor:"3,keyasint,omitempty"` // owner → edge: 1, 2, 3… per socket
	Binary bool   `cbor:"4,keyasint,omitempty"`
	Data   []byte `cbor:"5,keyasint,omitempty"`
	Code   int    `cbor:"6,keyasint,omitempty"`
	Reason string `cbor:"7,keyasint,omitempty"`
	From   string `cbor:"8,keyasint"` // the sending node
	Run    int64  `cbor:"9,keyasint"` // and its run
}

// runKey is one run of one node.
type runKey struct {
	node string
	run  int64
}

func wsSubject(k runKey) string {
	return "strata.ws." + k.node + "." + strconv.FormatInt(k.run, 10)
}

// Errors of sockets between nodes.
var (
	// errSocketLost: the socket's owner no longer holds it (it restarted,
	// or the socket was accepted by a run that has ended).
	errSocketLost = errors.New("cluster: the socket's owner no longer holds it")
	// errEdgeGone is the WebSocketError of a socket whose edge node left.
	errEdgeGone = errors.New("websocket: the node holding the connection left the cluster")
	// errEdgeDropped is the WebSocketError of a socket its edge dropped
	// without a turn of its own (it stopped, lost frames, or could not
	// forward the socket's end).
	errEdgeDropped = errors.New("websocket: the node holding the connection dropped it")
)

const (
	// closedFrameWait bounds the wait for the owner's close frame after
	// the owner answered socket_closed (the frame left before the answer,
	// on another subscription of the same connection).
	closedFrameWait = 5 * time.Second
	// endTurnTimeout bounds the WebSocketError turn of a socket its edge
	// lost or dropped.
	endTurnTimeout = 10 * time.Second
	// endQueueLen and endWorkers bound those turns: past the queue a
	// socket is dropped without one.
	endQueueLen      = 4096
	endWorkers       = 8
	reasonOwnerLeft  = "object's node left the cluster; reconnect"
	reasonOwnerLost  = "socket lost on the object's node; reconnect"
	reasonFramesLost = "messages lost between nodes; reconnect"
	reasonStopping   = "node stopping; reconnect"
	reasonNotRelayed = "message could not be relayed between nodes"
	// closeInternalError is WebSocket's 1011.
	closeInternalError = 1011
)

// edgeSocket is a client's socket on this node (the edge). Fields past
// conn are guarded by Router.ws.
type edgeSocket struct {
	id    objects.SocketID // this node's id, the gateway's
	ref   objects.Ref
	conn  objects.SocketConn
	owner runKey           // zero until the connect turn answered
	local objects.SocketID // the runtime's id when this node is the owner

	seq     uint64        // frames received
	ended   bool          // closed by the owner or here: no frame passes
	endedCh chan struct{} // closed with ended
}

func (r *Router) publishFrame(to runKey, f *wsFrame) error {
	f.From, f.Run = r.cfg.Node, r.run
	data, err := encode(f)
	if err != nil {
		return fmt.Errorf("cluster: encode websocket frame: %w", err)
	}
	return r.log.Publish(wsSubject(to), data)
}

// The gateway's WebSocketBackend.

// WebSocketConnect runs the connect turn on the object's owner, retried
// while the object moves; the socket stays here.
func (r *Router) WebSocketConnect(ctx context.Context, ref objects.Ref, req *http.Request, conn objects.SocketConn, cause objects.Cause) (objects.SocketID, error) {
	if _, err := r.rt.Class(ref.Class); err != nil {
		return 0, err
	}
	es := &edgeSocket{ref: ref, conn: conn, endedCh: make(chan struct{})}
	r.ws.Lock()
	r.ws.next++
	es.id = objects.SocketID(r.ws.next)
	r.ws.edge[es.id] = es
	r.ws.Unlock()

	env := envelope(KindWSConnect, ref, cause)
	env.HTTP = &HTTPRequest{Method: req.Method, URL: req.URL.String(), Host: req.Host, Header: req.Header}
	env.Sock, env.EdgeRun, env.conn, env.req = uint64(es.id), r.run, conn, req
	rep, err := r.route(ctx, env)
	r.ws.Lock()
	defer r.ws.Unlock()
	if err != nil {
		delete(r.ws.edge, es.id)
		return 0, err
	}
	es.owner = runKey{rep.Node, rep.Run}
	if rep.Node == r.cfg.Node {
		es.local = rep.Socket
	} else if !es.ended {
		m := r.ws.byOwner[es.owner]
		if m == nil {
			m = map[objects.SocketID]*edgeSocket{}
			r.ws.byOwner[es.owner] = m
		}
		m[es.id] = es
	}
	return es.id, nil
}

// edgeSocket returns this node's socket id, nil if it is gone.
func (r *Router) edgeSocket(id objects.SocketID) *edgeSocket {
	r.ws.Lock()
	defer r.ws.Unlock()
	return r.ws.edge[id]
}

// forgetEdge takes es out of the registry; it reports whether es had
// ended already.
func (r *Router) forgetEdge(es *edgeSocket) bool {
	r.ws.Lock()
	defer r.ws.Unlock()
	delete(r.ws.edge, es.id)
	if m := r.ws.byOwner[es.owner]; m != nil {
		delete(m, es.id)
		if len(m) == 0 {
			delete(r.ws.byOwner, es.owner)
		}
	}
	was := es.ended
	r.endLocked(es)
	return was
}

func (r *Router) endLocked(es *edgeSocket) {
	if !es.ended {
		es.ended = true
		close(es.endedCh)
	}
}

// closeEdge closes es's client with 1012 (unless the owner closed it
// already) and tells the owner, which may still hold it.
func (r *Router) closeEdge(es *edgeSocket, reason string, tellOwner bool) {
	r.ws.Lock()
	was := es.ended
	r.endLocked(es)
	r.ws.Unlock()
	if was {
		return
	}
	es.conn.Close(objects.CloseServiceRestart, reason)
	if tellOwner {
		r.sendDrop(es.owner, uint64(es.id))
	}
}

func (r *Router) sendDrop(owner runKey, sock uint64) {
	if owner.node == "" || owner.node == r.cfg.Node {
		return
	}
	if err := r.publishFrame(owner, &wsFrame{Op: opDrop, Sock: sock}); err != nil {
		r.logger.Debug("websocket drop not sent", "owner", owner.node, "err", err)
	}
}

// socketEnvelope is a WebSocket event of es for its remote owner.
func (r *Router) socketEnvelope(kind Kind, es *edgeSocket, cause objects.Cause) *Envelope {
	env := envelope(kind, es.ref, cause)
	env.Sock, env.EdgeRun, env.OwnerRun = uint64(es.id), r.run, es.owner.run
	return env
}

// forwardSocket sends a socket's event to the owner that holds it. The
// object is not re-placed: a new owner does not know the socket, so an
// object in motion ends it (the gateway closes it with 1012).
func (r *Router) forwardSocket(ctx context.Context, es *edgeSocket, env *Envelope) error {
	r.stats.forwarded.Add(1)
	_, err := r.forward(ctx, es.owner.node, env)
	if err == nil || !errors.Is(err, objects.ErrSocketClosed) {
		return err
	}
	// The owner no longer holds the socket: it closed it, and the close
	// frame left before this answer. Wait for it, bounded; if it was lost,
	// close here.
	t := time.NewTimer(closedFrameWait)
	defer t.Stop()
	select {
	case <-es.endedCh:
	case <-t.C:
		r.closeEdge(es, reasonOwnerLost, false)
	case <-ctx.Done():
		r.closeEdge(es, reasonOwnerLost, false)
	}
	return err
}

// WebSocketMessage runs the message's turn on the socket's owner.
func (r *Router) WebSocketMessage(ctx context.Context, ref objects.Ref, id objects.SocketID, m objects.Message, cause objects.Cause) error {
	es := r.edgeSocket(id)
	if es == nil {
		return fmt.Errorf("socket %d of %s: %w", id, ref, objects.ErrSocketClosed)
	}
	if es.owner.node == r.cfg.Node {
		if owner := r.OwnerOf(ref.ID); owner != r.cfg.Node {
			return fmt.Errorf("%w: %s belongs to %s now", objects.ErrMoved, ref, owner)
		}
		r.stats.local.Add(1)
		return r.rt.WebSocketMessage(ctx, ref, es.local, m, cause)
	}
	env := r.socketEnvelope(KindWSMessage, es, cause)
	env.Body, env.Binary = m.Data, m.Binary
	return r.forwardSocket(ctx, es, env)
}

// WebSocketClose runs the close turn on the socket's owner: the client
// closed it.
func (r *Router) WebSocketClose(ctx context.Context, ref objects.Ref, id objects.SocketID, code int, reason string, cause objects.Cause) error {
	es := r.edgeSocket(id)
	if es == nil {
		return fmt.Errorf("socket %d of %s: %w", id, ref, objects.ErrSocketClosed)
	}
	r.forgetEdge(es)
	if es.owner.node == r.cfg.Node {
		return r.rt.WebSocketClose(ctx, ref, es.local, code, reason, cause)
	}
	env := r.socketEnvelope(KindWSClose, es, cause)
	env.Code, env.Reason = code, reason
	r.stats.forwarded.Add(1)
	_, err := r.forward(ctx, es.owner.node, env)
	return err
}

// WebSocketError runs the error turn on the socket's owner. The owner
// sees the error's text, not its identity.
func (r *Router) WebSocketError(ctx context.Context, ref objects.Ref, id objects.SocketID, sockErr error, cause objects.Cause) error {
	es := r.edgeSocket(id)
	if es == nil {
		return fmt.Errorf("socket %d of %s: %w", id, ref, objects.ErrSocketClosed)
	}
	r.forgetEdge(es)
	if es.owner.node == r.cfg.Node {
		return r.rt.WebSocketError(ctx, ref, es.local, sockErr, cause)
	}
	env := r.socketEnvelope(KindWSError, es, cause)
	env.Reason = sockErr.Error()
	r.stats.forwarded.Add(1)
	_, err := r.forward(ctx, es.owner.node, env)
	return err
}

// WebSocketAutoResponse answers here only for sockets whose object is
// here; the owner answers the others' (KindWSMessage), where the pair and
// the socket's AutoResponseAt live.
func (r *Router) WebSocketAutoResponse(ref objects.Ref, id objects.SocketID, text []byte) (string, bool) {
	es := r.edgeSocket(id)
	if es == nil || es.owner.node != r.cfg.Node {
		return "", false
	}
	return r.rt.WebSocketAutoResponse(ref, es.local, text)
}

// WebSocketDrop forgets the socket without a turn; a remote owner is told.
func (r *Router) WebSocketDrop(ref objects.Ref, id objects.SocketID) {
	es := r.edgeSocket(id)
	if es == nil {
		return
	}
	ended := r.forgetEdge(es)
	switch {
	case es.owner.node == r.cfg.Node:
		r.rt.WebSocketDrop(ref, es.local)
	case !ended:
		r.sendDrop(es.owner, uint64(es.id))
	}
}

// onFrame takes one frame from this node's subject, in order.
func (r *Router) onFrame(data []byte) {
	var f wsFrame
	if err := decode(data, &f); err != nil {
		r.logger.Warn("bad websocket frame from another node", "err", err)
		return
	}
	from := runKey{f.From, f.Run}
	if f.Op == opDrop {
		r.dropHeld(from, f.Sock)
		return
	}
	r.ws.Lock()
	es := r.ws.edge[objects.SocketID(f.Sock)]
	switch {
	case es == nil:
		// Gone here (closed, or its connect gave up): the owner forgets it.
		r.ws.Unlock()
		r.sendDrop(from, f.Sock)
		return
	case es.ended:
		r.ws.Unlock()
		return
	case es.owner.node != "" && es.owner != from:
		r.ws.Unlock()
		r.logger.Warn("websocket frame from a node that does not hold the socket", "socket", f.Sock, "from", f.From, "owner", es.owner.node)
		return
	}
	es.seq++
	if f.Seq != es.seq {
		r.ws.Unlock()
		r.logger.Warn("websocket frames lost between nodes; closing the socket", "object", es.ref, "socket", es.id, "want", es.seq, "got", f.Seq)
		r.closeEdge(es, reasonFramesLost, true)
		return
	}
	if f.Op == opClose {
		r.endLocked(es)
	}
	r.ws.Unlock()
	if f.Op == opClose {
		es.conn.Close(f.Code, f.Reason)
		return
	}
	es.conn.Send(objects.Message{Binary: f.Binary, Data: f.Data})
}

// sweepSockets ends the sockets whose other node left view or restarted:
// the edge closes its clients' with 1012, the owner runs WebSocketError
// turns for those held for a lost edge. An edge absent from the view is
// lost only once this node has held sockets for it for the grace (a new
// node's first sockets may arrive before this node sees its heartbeat).
func (r *Router) sweepSockets(view []log.Member) {
	runs := make(map[string]int64, len(view))
	for _, m := range view {
		var info nodeInfo
		decode(m.Info, &info)
		runs[m.Node] = info.Started
	}
	lost := func(k runKey) (bool, bool) {
		run, ok := runs[k.node]
		return !ok, ok && run != 0 && run != k.run
	}
	r.ws.Lock()
	var edges []*edgeSocket
	for k, m := range r.ws.byOwner {
		if absent, restarted := lost(k); absent || restarted {
			for _, es := range m {
				edges = append(edges, es)
			}
			delete(r.ws.byOwner, k)
		}
	}
	var held []*remoteSocket
	for k, m := range r.ws.held {
		absent, restarted := lost(k)
		if restarted || absent && time.Since(r.ws.heldSince[k]) > r.heldGrace() {
			for _, rs := range m {
				held = append(held, rs)
			}
			delete(r.ws.held, k)
			delete(r.ws.heldSince, k)
		}
	}
	r.ws.Unlock()
	for _, es := range edges {
		r.closeEdge(es, reasonOwnerLeft, false)
	}
	if len(edges) > 0 {
		r.logger.Info("closed websockets whose object's node left", "sockets", len(edges))
	}
	if len(held) > 0 {
		r.logger.Info("ending websockets whose connection's node left", "sockets", len(held))
	}
	for _, rs := range held {
		r.endSocket(rs, errEdgeGone)
	}
}

// heldGrace is how long an edge may be absent from this node's view
// before the sockets held for it end.
func (r *Router) heldGrace() time.Duration {
	ttl := r.cfg.TTL
	if ttl <= 0 {
		ttl = 3 * time.Second
	}
	return max(2*ttl, 5*time.Second)
}

// socketCounts are the sockets this node serves with another node: its
// clients' whose object is elsewhere, and the sockets of its objects whose
// client is elsewhere.
func (r *Router) socketCounts() (remote, held int) {
	r.ws.Lock()
	defer r.ws.Unlock()
	for _, m := range r.ws.byOwner {
		remote += len(m)
	}
	for _, m := range r.ws.held {
		held += len(m)
	}
	return remote, held
}
