package objects

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// WebSockets with hibernation (DESIGN.md, "WebSockets and hibernation").
//
// The gateway owns the TCP connections; an object holds handles. The
// registry of an object's sockets (ids, tags, attachments, the
// auto-response pair and each socket's last auto-response time) is the
// runtime's hub, keyed by object, not the activation: an activation evicted
// while its clients sit idle loses its memory, and the next message
// activates it again with the same sockets. Attachments live in memory, as
// in Durable Objects: they survive hibernation, not a process restart (the
// sockets die with the process anyway).
//
// Messages reach the object only as turns through the runtime
// (WebSocketConnect, WebSocketMessage, WebSocketClose, WebSocketError), and
// whatever a turn sends or closes is buffered in the turn and released with
// its response, after the event holding its writes is acknowledged (the
// output gate). The gateway's side of a socket is a SocketConn, whose Send
// and Close never block: the object never waits on a network write.

// WebSocket limits (Durable Objects' where it has them).
const (
	SocketTagsMax        = 10
	SocketTagBytesMax    = 256
	AttachmentBytesMax   = 2 << 10
	AutoResponseBytesMax = 2 << 10
)

// ErrSocketClosed is returned for a socket the hub no longer holds.
var ErrSocketClosed = errors.New("websocket closed")

// SocketID names one socket on this node.
type SocketID uint64

// Message is one WebSocket data message.
type Message struct {
	Binary bool   // a binary frame; false: text (UTF-8)
	Data   []byte // must not be modified once sent: a broadcast shares it
}

// SocketConn is the gateway's side of one socket. Both methods must return
// at once: Send queues the message (bounded; a socket whose queue is full is
// disconnected by the gateway, which then reports a WebSocketError turn),
// Close starts the closing handshake.
type SocketConn interface {
	Send(m Message) error
	Close(code int, reason string)
}

// Optional interfaces of a class that takes WebSockets at
// /v1/objects/{class}/{name}/ws. A class that implements any of them
// accepts sockets; WebSocketConnect may refuse one.
type (
	// WebSocketConnecter decides whether to accept a socket: nil accepts
	// (with the tags set by ws.SetTags), an error refuses the upgrade
	// (Errorf picks the HTTP status). Sends to ws in this turn reach the
	// client first thing after the upgrade.
	WebSocketConnecter interface {
		WebSocketConnect(ctx *Ctx, ws *WebSocket, r *http.Request) error
	}
	// WebSocketMessager gets each message that is not the auto-response
	// request.
	WebSocketMessager interface {
		WebSocketMessage(ctx *Ctx, ws *WebSocket, m Message) error
	}
	// WebSocketCloser learns that the client closed ws (with a close
	// frame). ws is already out of Sockets.
	WebSocketCloser interface {
		WebSocketClose(ctx *Ctx, ws *WebSocket, code int, reason string) error
	}
	// WebSocketErrorer learns that ws ended without a closing handshake:
	// a network error, a missed pong, a message over the read limit, or a
	// client too slow to take what was sent. ws is already out of Sockets.
	WebSocketErrorer interface {
		WebSocketError(ctx *Ctx, ws *WebSocket, err error) error
	}
)

// acceptsSockets reports whether type t (a *T) takes WebSockets.
func acceptsSockets(t reflect.Type) bool {
	for _, i := range []reflect.Type{
		reflect.TypeFor[WebSocketConnecter](), reflect.TypeFor[WebSocketMessager](),
		reflect.TypeFor[WebSocketCloser](), reflect.TypeFor[WebSocketErrorer](),
	} {
		if t.Implements(i) {
			return true
		}
	}
	return false
}

// socket is the hub's record of one socket. It outlives activations.
type socket struct {
	id   SocketID
	conn SocketConn
	tags []string // fixed once the connect turn ends
	mu   struct {
		sync.Mutex
		attachment []byte
		autoAt     time.Time // the gateway's last auto-response
	}
	gone atomic.Bool // out of the hub
}

// socketSet is the hub's record of one object.
type socketSet struct {
	mu struct {
		sync.Mutex
		byID   map[SocketID]*socket
		sorted []*socket // by id; nil when stale
	}
	auto atomic.Pointer[autoResponse]
}

type autoResponse struct{ request, response string }

// empty reports whether the record holds no socket and no auto-response.
func (s *socketSet) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.byID) == 0 && s.auto.Load() == nil
}

// hub is the node's socket registry. Its zero value is ready.
type hub struct {
	mu   sync.Mutex
	objs map[actKey]*socketSet
	next atomic.Uint64
}

func (h *hub) set(k actKey, create bool) *socketSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.setLocked(k, create)
}

func (h *hub) setLocked(k actKey, create bool) *socketSet {
	s := h.objs[k]
	if s == nil && create {
		if h.objs == nil {
			h.objs = map[actKey]*socketSet{}
		}
		s = &socketSet{}
		s.mu.byID = map[SocketID]*socket{}
		h.objs[k] = s
	}
	return s
}

// add holds the hub's lock while it inserts, so that remove cannot drop
// the object's record in between (lock order: hub, then record).
func (h *hub) add(k actKey, s *socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.setLocked(k, true)
	set.mu.Lock()
	defer set.mu.Unlock()
	set.mu.byID[s.id] = s
	set.mu.sorted = nil
}

func (h *hub) get(k actKey, id SocketID) *socket {
	set := h.set(k, false)
	if set == nil {
		return nil
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	return set.mu.byID[id]
}

// remove takes id out of the hub and reports whether it was there. An
// object's record goes with its last socket, auto-response and all, so the
// hub holds only objects with sockets open (and those that set an
// auto-response before their first socket).
func (h *hub) remove(k actKey, id SocketID) *socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.objs[k]
	if set == nil {
		return nil
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	s := set.mu.byID[id]
	if s == nil {
		return nil
	}
	s.gone.Store(true)
	delete(set.mu.byID, id)
	set.mu.sorted = nil
	if len(set.mu.byID) == 0 {
		delete(h.objs, k)
	}
	return s
}

// keys returns the objects the hub holds a record of.
func (h *hub) keys() []actKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]actKey, 0, len(h.objs))
	for k := range h.objs {
		out = append(out, k)
	}
	return out
}

// closeSockets drops k's record (its sockets and auto-response pair) and
// closes its sockets with code and reason, in the order they were
// accepted. It returns how many sockets it closed.
func (rt *Runtime) closeSockets(k actKey, code int, reason string) int {
	h := &rt.sockets
	h.mu.Lock()
	set := h.objs[k]
	delete(h.objs, k)
	h.mu.Unlock()
	if set == nil {
		return 0
	}
	set.mu.Lock()
	socks := make([]*socket, 0, len(set.mu.byID))
	for _, s := range set.mu.byID {
		s.gone.Store(true)
		socks = append(socks, s)
	}
	clear(set.mu.byID)
	set.mu.sorted = nil
	set.mu.Unlock()
	slices.SortFunc(socks, func(a, b *socket) int { return cmp.Compare(a.id, b.id) })
	for _, s := range socks {
		s.conn.Close(code, reason)
	}
	return len(socks)
}

func (h *hub) list(k actKey) []*socket {
	set := h.set(k, false)
	if set == nil {
		return nil
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.mu.sorted == nil {
		set.mu.sorted = make([]*socket, 0, len(set.mu.byID))
		for _, s := range set.mu.byID {
			set.mu.sorted = append(set.mu.sorted, s)
		}
		slices.SortFunc(set.mu.sorted, func(a, b *socket) int { return cmp.Compare(a.id, b.id) })
	}
	return set.mu.sorted // never modified in place: a change makes a new one
}

// WebSocket is a handler's view of one socket, valid for the turn that
// handed it out (get it again with Ctx.Sockets in a later turn). Its Send
// and Close are released when the turn's response is: after the event
// holding the turn's writes is acknowledged. A turn that fails sends
// nothing.
type WebSocket struct {
	s *socket
	t *turn
}

// ID is the socket's id, stable for the socket's life on this node.
func (ws *WebSocket) ID() SocketID { return ws.s.id }

// Tags are the tags the socket was accepted with.
func (ws *WebSocket) Tags() []string { return slices.Clone(ws.s.tags) }

// SetTags sets the socket's tags; only in the WebSocketConnect turn, as in
// Durable Objects, where tags are given at accept time.
func (ws *WebSocket) SetTags(tags ...string) error {
	if err := ws.check(); err != nil {
		return err
	}
	if ws.t.connecting != ws.s {
		return fmt.Errorf("%w: tags are set in the WebSocketConnect turn only", ErrBadInput)
	}
	if len(tags) > SocketTagsMax {
		return fmt.Errorf("%w: %d tags, at most %d", ErrBadInput, len(tags), SocketTagsMax)
	}
	for _, tag := range tags {
		if tag == "" || len(tag) > SocketTagBytesMax || !utf8.ValidString(tag) {
			return fmt.Errorf("%w: tag %q: want 1 to %d bytes of UTF-8", ErrBadInput, truncate(tag), SocketTagBytesMax)
		}
	}
	ws.s.tags = slices.Clone(tags)
	return nil
}

// Send queues a text message; it leaves after the turn's writes are durable.
func (ws *WebSocket) Send(text string) error {
	return ws.queue(sockOp{s: ws.s, msg: Message{Data: []byte(text)}})
}

// SendBytes queues a binary message.
func (ws *WebSocket) SendBytes(data []byte) error {
	return ws.queue(sockOp{s: ws.s, msg: Message{Binary: true, Data: cloneBytes(data)}})
}

// SendMessage queues m; m.Data must not be changed afterwards, so one
// message can go to many sockets without copies.
func (ws *WebSocket) SendMessage(m Message) error {
	return ws.queue(sockOp{s: ws.s, msg: m})
}

// Close closes the socket with a close code (1000 normal, 3000-4999 the
// application's) and a reason of at most 123 bytes. The socket leaves
// Sockets when the turn's response is released; no WebSocketClose turn
// follows a close the object started.
func (ws *WebSocket) Close(code int, reason string) error {
	if code != 1000 && (code < 3000 || code > 4999) {
		return fmt.Errorf("%w: close code %d: want 1000 or 3000-4999", ErrBadInput, code)
	}
	if len(reason) > 123 || !utf8.ValidString(reason) {
		return fmt.Errorf("%w: close reason: want at most 123 bytes of UTF-8", ErrBadInput)
	}
	return ws.queue(sockOp{s: ws.s, close: true, code: code, reason: reason})
}

// SetAttachment keeps data (at most 2 KiB) with the socket; it survives
// the object's eviction. It is memory, not storage: it is set at once and
// a failing turn does not undo it.
func (ws *WebSocket) SetAttachment(data []byte) error {
	if err := ws.check(); err != nil {
		return err
	}
	if len(data) > AttachmentBytesMax {
		return tooLarge("attachment", len(data), AttachmentBytesMax)
	}
	ws.s.mu.Lock()
	defer ws.s.mu.Unlock()
	ws.s.mu.attachment = cloneBytes(data)
	return nil
}

// Attachment returns a copy of the socket's attachment (nil if none).
func (ws *WebSocket) Attachment() []byte {
	ws.s.mu.Lock()
	defer ws.s.mu.Unlock()
	return cloneBytes(ws.s.mu.attachment)
}

// AutoResponseAt is when the gateway last answered this socket's
// auto-response request (zero if never).
func (ws *WebSocket) AutoResponseAt() time.Time {
	ws.s.mu.Lock()
	defer ws.s.mu.Unlock()
	return ws.s.mu.autoAt
}

func (ws *WebSocket) check() error {
	if ws.t.done {
		return errors.New("objects: WebSocket used after its turn ended; get it again with Ctx.Sockets")
	}
	return nil
}

func (ws *WebSocket) queue(op sockOp) error {
	if err := ws.check(); err != nil {
		return err
	}
	if ws.s.gone.Load() {
		return fmt.Errorf("socket %d: %w", ws.s.id, ErrSocketClosed)
	}
	ws.t.sockOps = append(ws.t.sockOps, op)
	return nil
}

// sockOp is a send or a close waiting for the turn's output gate.
type sockOp struct {
	s      *socket
	msg    Message
	close  bool
	code   int
	reason string
}

// releaseSockOps runs on the activation's goroutine when the turn's
// response is released; the conn's methods never block.
func (a *activation) releaseSockOps(ops []sockOp) {
	for _, op := range ops {
		if op.s.gone.Load() {
			continue
		}
		if op.close {
			a.rt.sockets.remove(a.key, op.s.id)
			op.s.conn.Close(op.code, op.reason)
			continue
		}
		// A full queue disconnects that socket; the others go on.
		_ = op.s.conn.Send(op.msg)
	}
}

// Sockets returns the object's open sockets with tag ("" for all), in the
// order they were accepted.
func (c *Ctx) Sockets(tag string) []*WebSocket {
	all := c.t.a.rt.sockets.list(c.t.a.key)
	out := make([]*WebSocket, 0, len(all))
	for _, s := range all {
		if tag == "" || slices.Contains(s.tags, tag) {
			out = append(out, &WebSocket{s: s, t: c.t})
		}
	}
	return out
}

// SetAutoResponse makes the gateway answer a text message equal to
// request with response, without waking the object (a keep-alive ping
// that costs no activation). An empty request removes the pair. It lasts
// across evictions while the object has sockets open on this node, and is
// forgotten with its last socket (set it again when a socket connects, as
// the chat class does), so the node keeps nothing for objects without
// sockets.
func (c *Ctx) SetAutoResponse(request, response string) error {
	if len(request) > AutoResponseBytesMax || len(response) > AutoResponseBytesMax {
		return tooLarge("auto-response", max(len(request), len(response)), AutoResponseBytesMax)
	}
	h := &c.t.a.rt.sockets
	h.mu.Lock() // remove drops records with no auto-response: not in between
	defer h.mu.Unlock()
	if request == "" {
		if set := h.setLocked(c.t.a.key, false); set != nil {
			set.auto.Store(nil)
			if set.empty() {
				delete(h.objs, c.t.a.key)
			}
		}
		return nil
	}
	set := h.setLocked(c.t.a.key, true)
	set.auto.Store(&autoResponse{request: request, response: response})
	return nil
}

// AutoResponse returns the object's auto-response pair ("" if none).
func (c *Ctx) AutoResponse() (request, response string) {
	set := c.t.a.rt.sockets.set(c.t.a.key, false)
	if set == nil {
		return "", ""
	}
	if p := set.auto.Load(); p != nil {
		return p.request, p.response
	}
	return "", ""
}

// The gateway's entry points. Each message becomes a turn through the
// object's mailbox like any other request, and returns once the turn's
// response (and so its sends) is released.

// WebSocketConnect runs the connect turn of a socket whose gateway side is
// conn. On success the socket is in the object's Sockets with its tags and
// the gateway must upgrade (or call WebSocketError if it cannot).
func (rt *Runtime) WebSocketConnect(ctx context.Context, ref Ref, r *http.Request, conn SocketConn, cause Cause) (SocketID, error) {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return 0, err
	}
	if !acceptsSockets(class.typ) {
		return 0, fmt.Errorf("%w: %s takes no WebSockets", ErrUnknownMethod, class.name)
	}
	k := actKey{class.name, ref.ID}
	s := &socket{id: SocketID(rt.sockets.next.Add(1)), conn: conn}
	cause.Via, cause.Method = ViaWebSocket, "connect"
	_, err = rt.dispatch(ctx, ref, cause, "WebSocketConnect", nil, func(c *Ctx, inst any) (any, error) {
		rt.sockets.add(k, s)
		c.t.connecting = s
		if h, ok := inst.(WebSocketConnecter); ok {
			if err := h.WebSocketConnect(c, &WebSocket{s: s, t: c.t}, r); err != nil {
				rt.sockets.remove(k, s.id)
				return nil, handlerError(class.name, "WebSocketConnect", err)
			}
		}
		return nil, nil
	})
	if err != nil {
		rt.sockets.remove(k, s.id)
		return 0, err
	}
	return s.id, nil
}

// WebSocketMessage runs the WebSocketMessage turn for m. A message for a
// socket the hub no longer holds returns ErrSocketClosed.
func (rt *Runtime) WebSocketMessage(ctx context.Context, ref Ref, id SocketID, m Message, cause Cause) error {
	cause.Via, cause.Method = ViaWebSocket, "message"
	return rt.socketTurn(ctx, ref, id, cause, "WebSocketMessage", false, func(c *Ctx, inst any, ws *WebSocket) error {
		if h, ok := inst.(WebSocketMessager); ok {
			return h.WebSocketMessage(c, ws, m)
		}
		return nil
	})
}

// WebSocketClose takes the socket out of the hub and runs the
// WebSocketClose turn: the client closed it with code and reason.
func (rt *Runtime) WebSocketClose(ctx context.Context, ref Ref, id SocketID, code int, reason string, cause Cause) error {
	cause.Via, cause.Method = ViaWebSocket, "close"
	return rt.socketTurn(ctx, ref, id, cause, "WebSocketClose", true, func(c *Ctx, inst any, ws *WebSocket) error {
		if h, ok := inst.(WebSocketCloser); ok {
			return h.WebSocketClose(c, ws, code, reason)
		}
		return nil
	})
}

// WebSocketError takes the socket out of the hub and runs the
// WebSocketError turn: the socket ended without a closing handshake.
func (rt *Runtime) WebSocketError(ctx context.Context, ref Ref, id SocketID, sockErr error, cause Cause) error {
	cause.Via, cause.Method = ViaWebSocket, "error"
	return rt.socketTurn(ctx, ref, id, cause, "WebSocketError", true, func(c *Ctx, inst any, ws *WebSocket) error {
		if h, ok := inst.(WebSocketErrorer); ok {
			return h.WebSocketError(c, ws, sockErr)
		}
		return nil
	})
}

// WebSocketAutoResponse answers a text message that equals the object's
// auto-response request, without a turn, and records the time on the
// socket. It reports false for any other message.
func (rt *Runtime) WebSocketAutoResponse(ref Ref, id SocketID, text []byte) (string, bool) {
	k := actKey{ref.Class, ref.ID}
	set := rt.sockets.set(k, false)
	if set == nil {
		return "", false
	}
	p := set.auto.Load()
	if p == nil || p.request != string(text) {
		return "", false
	}
	if s := rt.sockets.get(k, id); s != nil {
		s.mu.Lock()
		s.mu.autoAt = time.Now()
		s.mu.Unlock()
	}
	return p.response, true
}

// WebSocketDrop takes a socket out of the hub without a turn (the node is
// shutting down, or the upgrade failed before the client saw it).
func (rt *Runtime) WebSocketDrop(ref Ref, id SocketID) {
	rt.sockets.remove(actKey{ref.Class, ref.ID}, id)
}

// socketTurn runs fn as a turn with id's handle. ending takes the socket
// out of the hub first, so the handler's Sockets no longer lists it.
func (rt *Runtime) socketTurn(ctx context.Context, ref Ref, id SocketID, cause Cause, label string, ending bool, fn func(*Ctx, any, *WebSocket) error) error {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return err
	}
	k := actKey{class.name, ref.ID}
	var s *socket
	if ending {
		s = rt.sockets.remove(k, id)
	} else {
		s = rt.sockets.get(k, id)
	}
	if s == nil {
		return fmt.Errorf("socket %d of %s: %w", id, ref, ErrSocketClosed)
	}
	_, err = rt.dispatch(ctx, ref, cause, label, nil, func(c *Ctx, inst any) (any, error) {
		if err := fn(c, inst, &WebSocket{s: s, t: c.t}); err != nil {
			return nil, handlerError(class.name, label, err)
		}
		return nil, nil
	})
	return err
}
