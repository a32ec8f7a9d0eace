package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/strata-objects/strata/objects"
)

// The owner's side of a socket whose client is on another node
// (websocket.go has the whole picture): its SocketConn, the registry of
// such sockets by edge, the forwarded events, and the end turns of the
// sockets of lost edges and of sockets their edge dropped.

// remoteSocket is the owner's SocketConn for a socket on another node.
type remoteSocket struct {
	r    *Router
	edge runKey
	sock uint64
	ref  objects.Ref
	id   objects.SocketID // the runtime's, set before hold
	mu   struct {
		sync.Mutex
		seq    uint64
		closed bool
		held   bool // its connect turn ended and hold recorded it
	}
}

// Send publishes m to the edge; it never waits for the edge. A message
// that cannot leave (larger than the NATS server takes, or the connection
// is down) ends the socket: the client must not miss it silently.
func (s *remoteSocket) Send(m objects.Message) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return objects.ErrSocketClosed
	}
	s.mu.seq++
	err := s.r.publishFrame(s.edge, &wsFrame{Op: opSend, Sock: s.sock, Seq: s.mu.seq, Binary: m.Binary, Data: m.Data})
	held := s.mu.held
	s.mu.Unlock()
	if err != nil {
		s.r.logger.Warn("websocket message not relayed to the connection's node; closing the socket", "object", s.ref, "edge", s.edge.node, "bytes", len(m.Data), "err", err)
		s.Close(closeInternalError, reasonNotRelayed)
		if held {
			s.r.queueEnd(s, fmt.Errorf("websocket: message not relayed to the connection's node: %w", err))
		} // else in its connect turn: connectHere drops it, without an end turn
	}
	return err
}

// Close publishes the close to the edge and forgets the socket.
func (s *remoteSocket) Close(code int, reason string) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	s.mu.seq++
	err := s.r.publishFrame(s.edge, &wsFrame{Op: opClose, Sock: s.sock, Seq: s.mu.seq, Code: code, Reason: reason})
	s.mu.Unlock()
	if err != nil {
		s.r.logger.Debug("websocket close not sent", "edge", s.edge.node, "err", err)
	}
	s.r.unhold(s)
}

// end marks s closed without telling the edge, and reports whether it was
// open.
func (s *remoteSocket) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := !s.mu.closed
	s.mu.closed = true
	return was
}

// The owner's side.

// connectHere runs a connect turn of a socket whose client is on another
// node.
func (r *Router) connectHere(ctx context.Context, env *Envelope) (*Reply, error) {
	if env.HTTP == nil || env.Sock == 0 || env.From == "" {
		return nil, fmt.Errorf("%w: websocket connect without its request or socket", objects.ErrBadInput)
	}
	req, err := http.NewRequestWithContext(ctx, env.HTTP.Method, env.HTTP.URL, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("%w: forwarded websocket connect: %w", objects.ErrBadInput, err)
	}
	req.Header, req.Host = env.HTTP.Header, env.HTTP.Host
	if req.Header == nil {
		req.Header = http.Header{}
	}
	rs := &remoteSocket{r: r, edge: runKey{env.From, env.EdgeRun}, sock: env.Sock, ref: env.ref()}
	id, err := r.rt.WebSocketConnect(ctx, rs.ref, req, rs, env.Cause)
	if err != nil {
		return nil, err
	}
	rs.id = id
	if !r.hold(rs) {
		// Closed in its own connect turn, or its first message could not
		// be relayed: the client gets the close; the hub forgets it.
		r.rt.WebSocketDrop(rs.ref, id)
	}
	return &Reply{Socket: id, Node: r.cfg.Node, Run: r.run}, nil
}

// hold records rs under its edge, unless it closed during its connect
// turn; it reports whether it did.
func (r *Router) hold(rs *remoteSocket) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.mu.closed {
		return false
	}
	rs.mu.held = true
	r.ws.Lock()
	defer r.ws.Unlock()
	m := r.ws.held[rs.edge]
	if m == nil {
		m = map[uint64]*remoteSocket{}
		r.ws.held[rs.edge] = m
		r.ws.heldSince[rs.edge] = time.Now()
	}
	m[rs.sock] = rs
	return true
}

func (r *Router) unhold(rs *remoteSocket) {
	r.ws.Lock()
	defer r.ws.Unlock()
	if m := r.ws.held[rs.edge]; m != nil && m[rs.sock] == rs {
		delete(m, rs.sock)
		if len(m) == 0 {
			delete(r.ws.held, rs.edge)
			delete(r.ws.heldSince, rs.edge)
		}
	}
}

// heldSocket is the socket env names, held here for its edge.
func (r *Router) heldSocket(env *Envelope) (*remoteSocket, error) {
	if env.OwnerRun != r.run {
		return nil, fmt.Errorf("%w: socket %d of %s was accepted by another run of %s", errSocketLost, env.Sock, env.From, r.cfg.Node)
	}
	r.ws.Lock()
	defer r.ws.Unlock()
	rs := r.ws.held[runKey{env.From, env.EdgeRun}][env.Sock]
	if rs == nil {
		return nil, fmt.Errorf("socket %d of %s: %w", env.Sock, env.From, objects.ErrSocketClosed)
	}
	return rs, nil
}

// socketHere runs a forwarded message, close or error of a held socket.
func (r *Router) socketHere(ctx context.Context, env *Envelope) (*Reply, error) {
	rs, err := r.heldSocket(env)
	if err != nil {
		return nil, err
	}
	ref := env.ref()
	switch env.Kind {
	case KindWSMessage:
		if !env.Binary {
			if resp, ok := r.rt.WebSocketAutoResponse(ref, rs.id, env.Body); ok {
				return &Reply{}, rs.Send(objects.Message{Data: []byte(resp)})
			}
		}
		return &Reply{}, r.rt.WebSocketMessage(ctx, ref, rs.id, objects.Message{Binary: env.Binary, Data: env.Body}, env.Cause)
	case KindWSClose:
		rs.end()
		r.unhold(rs)
		return &Reply{}, r.rt.WebSocketClose(ctx, ref, rs.id, env.Code, env.Reason, env.Cause)
	default: // KindWSError
		rs.end()
		r.unhold(rs)
		return &Reply{}, r.rt.WebSocketError(ctx, ref, rs.id, errors.New(env.Reason), env.Cause)
	}
}

// dropHeld ends a socket its edge dropped: its object learns it with a
// WebSocketError turn, as of a connection that broke.
func (r *Router) dropHeld(edge runKey, sock uint64) {
	r.ws.Lock()
	rs := r.ws.held[edge][sock]
	r.ws.Unlock()
	if rs != nil {
		r.endSocket(rs, errEdgeDropped)
	}
}

// endJob is a held socket's WebSocketError turn to run.
type endJob struct {
	rs  *remoteSocket
	err error
}

// endSocket forgets rs and queues its WebSocketError turn (the edge's
// frame subscription must not wait for turns); with the queue full, or
// the router stopping, it is dropped without one.
func (r *Router) endSocket(rs *remoteSocket, err error) {
	if !rs.end() {
		return
	}
	r.unhold(rs)
	r.queueEnd(rs, err)
}

// queueEnd queues the WebSocketError turn of rs, which is out of held.
func (r *Router) queueEnd(rs *remoteSocket, err error) {
	if r.stopCtx.Err() == nil {
		select {
		case r.ends <- endJob{rs, err}:
			return
		default:
		}
	}
	r.rt.WebSocketDrop(rs.ref, rs.id)
}

// endWorker runs queued WebSocketError turns until the router stops.
func (r *Router) endWorker() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			for {
				select {
				case j := <-r.ends:
					r.rt.WebSocketDrop(j.rs.ref, j.rs.id)
				default:
					return
				}
			}
		case j := <-r.ends:
			ctx, cancel := context.WithTimeout(r.stopCtx, endTurnTimeout)
			err := r.rt.WebSocketError(ctx, j.rs.ref, j.rs.id, j.err, objects.Cause{})
			cancel()
			if err != nil {
				r.rt.WebSocketDrop(j.rs.ref, j.rs.id)
			}
		}
	}
}

// closeHeld closes every socket held here for another node with 1012: this
// node is stopping.
func (r *Router) closeHeld() {
	r.ws.Lock()
	var held []*remoteSocket
	for _, m := range r.ws.held {
		for _, rs := range m {
			held = append(held, rs)
		}
	}
	r.ws.Unlock()
	for _, rs := range held {
		rs.Close(objects.CloseServiceRestart, reasonStopping)
		r.rt.WebSocketDrop(rs.ref, rs.id)
	}
}
