package gateway

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/objects"
)

// WebSockets (DESIGN.md, "WebSockets and hibernation"). The gateway owns
// every socket's TCP connection; the object holds a handle in the runtime's
// hub. Each socket costs, while idle, one goroutine blocked in its read (a
// small stack), a 1 KiB read buffer and a few small structs: no writer
// goroutine runs while its send queue is empty (one starts when a message
// is queued and ends when the queue drains), write buffers come from a
// shared pool, and keep-alive pings come from one goroutine for all
// sockets.
//
// Order: a socket's messages become turns one at a time, in order (the
// reader waits for each turn's response); what turns send leaves in turn
// order, through one bounded queue per socket.

// WebSocketBackend is the part of the runtime that serves WebSockets. A
// Backend that does not implement it answers /ws with 501.
type WebSocketBackend interface {
	WebSocketConnect(ctx context.Context, ref objects.Ref, r *http.Request, conn objects.SocketConn, cause objects.Cause) (objects.SocketID, error)
	WebSocketMessage(ctx context.Context, ref objects.Ref, id objects.SocketID, m objects.Message, cause objects.Cause) error
	WebSocketClose(ctx context.Context, ref objects.Ref, id objects.SocketID, code int, reason string, cause objects.Cause) error
	WebSocketError(ctx context.Context, ref objects.Ref, id objects.SocketID, err error, cause objects.Cause) error
	WebSocketAutoResponse(ref objects.Ref, id objects.SocketID, text []byte) (string, bool)
	WebSocketDrop(ref objects.Ref, id objects.SocketID)
}

// WebSocketConfig is the protocol's hygiene. Zero values take the defaults.
type WebSocketConfig struct {
	// PingInterval is how often an idle socket is pinged; a socket that
	// sends nothing (not even a pong) for two intervals is dropped.
	// Default 30s.
	PingInterval time.Duration
	// ReadLimitBytes bounds one incoming message; a larger one closes the
	// socket with 1009. Default 1 MiB.
	ReadLimitBytes int64
	// SendQueueLen and SendQueueBytes bound the messages waiting to be
	// written to one socket; a client that falls further behind is
	// disconnected. Defaults 256 messages, 4 MiB.
	SendQueueLen   int
	SendQueueBytes int
	// WriteTimeout bounds one write to a socket. Default 10s.
	WriteTimeout time.Duration
	// AllowedOrigins lists the Origin hosts (host[:port]) a browser may
	// connect from besides the gateway's own host; "*" allows any. Empty:
	// same origin only (requests without an Origin header are not browsers
	// and always pass).
	AllowedOrigins []string
	// ReadBufferBytes is each socket's read buffer (at least 257). Default
	// 512: an idle socket costs it, a large message is read past it.
	ReadBufferBytes int
}

func (c *WebSocketConfig) defaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.ReadLimitBytes <= 0 {
		c.ReadLimitBytes = 1 << 20
	}
	if c.SendQueueLen <= 0 {
		c.SendQueueLen = 256
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 4 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ReadBufferBytes <= 256 {
		c.ReadBufferBytes = 512
	}
}

// closeWait bounds the wait for the client's half of a closing handshake.
const closeWait = 5 * time.Second

// Errors that end a socket, as its WebSocketError turn sees them.
var (
	ErrSlowConsumer = errors.New("websocket: client does not read fast enough; send queue full")
	ErrPongTimeout  = errors.New("websocket: no message or pong within two ping intervals")
	ErrInvalidUTF8  = errors.New("websocket: text frame is not valid UTF-8 (closed with 1007)")
)

// wsHub is the gateway's set of live sockets, for pings and shutdown.
type wsHub struct {
	cfg      WebSocketConfig
	upgrader websocket.Upgrader
	mu       struct {
		sync.Mutex
		conns   map[*wsConn]struct{}
		closing bool
		pinging bool
	}
	wg   sync.WaitGroup // readers, writers and the pinger
	stop chan struct{}  // closed by close: the pinger ends
}

func (g *Gateway) initWebSockets(cfg WebSocketConfig) {
	cfg.defaults()
	h := &wsHub{cfg: cfg, stop: make(chan struct{})}
	h.mu.conns = map[*wsConn]struct{}{}
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   0, // the reader hijackWriter hands over
		WriteBufferSize:  4 << 10,
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      func(r *http.Request) bool { return g.guard.origin(r) != foreign },
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeError(w, r, &routeError{status, "bad_upgrade", reason.Error()})
		},
	}
	g.ws = h
	g.handle("GET /ui/chat", serveChatPage)
}

// badUpgrade checks a WebSocket handshake before the object sees it.
func badUpgrade(r *http.Request) string {
	switch {
	case !websocket.IsWebSocketUpgrade(r):
		return "not a WebSocket upgrade: want Connection: Upgrade and Upgrade: websocket"
	case r.Header.Get("Sec-Websocket-Version") != "13":
		return "Sec-WebSocket-Version must be 13"
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key"))
	if err != nil || len(key) != 16 {
		return "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return ""
}

// webSocket serves GET /v1/objects/{class}/{name}/ws: the object's
// WebSocketConnect turn decides, then the connection is upgraded.
func (g *Gateway) webSocket(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	wb, ok := g.cfg.Backend.(WebSocketBackend)
	switch {
	case !ok:
		writeError(w, r, &routeError{http.StatusNotImplemented, "not_implemented", "this node serves no WebSockets"})
		return
	case rt.rest != "":
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "want /v1/objects/{class}/{name}/ws"})
		return
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "a WebSocket upgrade is a GET"})
		return
	}
	if msg := badUpgrade(r); msg != "" {
		w.Header().Set("Sec-Websocket-Version", "13")
		writeError(w, r, &routeError{http.StatusBadRequest, "bad_upgrade", msg})
		return
	}
	h := g.ws
	c := &wsConn{h: h, b: wb, ref: rt.ref, cause: cause, log: g.log, revoked: g.tokenRevoked(cause.Principal)}
	if !h.add(c) {
		writeError(w, r, objects.ErrClosed)
		return
	}
	defer h.wg.Done() // add's place in wg: the socket's goroutines join it before it is given back
	ctx = cluster.TrackNode(ctx)
	id, err := wb.WebSocketConnect(ctx, rt.ref, r, c, cause)
	if err != nil {
		h.remove(c)
		writeError(w, r, err)
		return
	}
	c.id = id
	header := http.Header{}
	if node := cluster.RanOn(ctx); node != "" {
		header.Set(cluster.NodeHeader, node)
	}
	if p := wsAnswerProtocol(r); p != "" {
		header.Set("Sec-Websocket-Protocol", p)
	}
	hw := &hijackWriter{ResponseWriter: w, readBufferBytes: h.cfg.ReadBufferBytes}
	conn, err := h.upgrader.Upgrade(hw, r, header)
	if err != nil {
		// The object accepted a socket the client never got.
		h.remove(c)
		ectx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
		defer cancel()
		if err := wb.WebSocketError(ectx, rt.ref, id, fmt.Errorf("upgrade: %w", err), cause); err != nil {
			g.log.Debug("websocket error turn", "object", rt.ref, "err", err)
		}
		return
	}
	c.start(conn, hw.br, g.cfg.RequestTimeout)
}

// hijackWriter gives the WebSocket a read buffer of the gateway's choosing
// and keeps it in view: with an empty buffer, an idle socket's reader can
// wait for the network without a deep stack (waitReadable).
type hijackWriter struct {
	http.ResponseWriter
	readBufferBytes int
	br              *bufio.Reader // the socket's read buffer, once hijacked
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: response does not implement http.Hijacker")
	}
	conn, brw, err := hj.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return conn, brw, err // the upgrade refuses early data itself
	}
	h.br = bufio.NewReaderSize(conn, h.readBufferBytes)
	return conn, bufio.NewReadWriter(h.br, brw.Writer), nil
}

func (h *wsHub) add(c *wsConn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closing {
		return false
	}
	h.mu.conns[c] = struct{}{}
	// A place in wg for the handler that adds c, taken while the hub is
	// open: its socket's goroutines join wg later, and an Add from zero
	// while close waits would race with the Wait.
	h.wg.Add(1)
	if !h.mu.pinging {
		h.mu.pinging = true
		h.wg.Add(1)
		go h.pinger()
	}
	return true
}

func (h *wsHub) remove(c *wsConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.mu.conns, c)
}

func (h *wsHub) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.closing
}

// pinger pings every idle socket once per interval from one goroutine,
// writing the ping itself: an idle socket's send buffer is empty, so the
// write does not wait, and no writer goroutine starts for it.
func (h *wsHub) pinger() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.PingInterval)
	defer t.Stop()
	var conns []*wsConn
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.Lock()
		conns = conns[:0]
		for c := range h.mu.conns {
			conns = append(conns, c)
		}
		h.mu.Unlock()
		for _, c := range conns {
			if c.isRevoked() && !c.closing() {
				c.cutRevoked() // an idle socket's revoked token
				continue
			}
			c.ping()
		}
		clear(conns)
	}
}

// close starts the closing handshake of every socket (1001, going away)
// and stops the pinger; readers end within closeWait. No WebSocketClose
// turns run for them: the runtime is stopping too.
func (h *wsHub) close() {
	h.mu.Lock()
	if !h.mu.closing {
		close(h.stop)
	}
	h.mu.closing = true
	conns := make([]*wsConn, 0, len(h.mu.conns))
	for c := range h.mu.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close(websocket.CloseGoingAway, "server shutting down")
	}
}

// CloseWebSockets closes every socket with 1001 (going away) and waits
// until their goroutines end (within closeWait), or ctx. Call it before
// the HTTP server's Shutdown, which does not track upgraded connections.
func (g *Gateway) CloseWebSockets(ctx context.Context) error {
	g.ws.close()
	return g.ws.wait(ctx)
}

// wait waits for every socket goroutine to end, or ctx.
func (h *wsHub) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

//go:embed ui/chat.html
var chatPage []byte

// serveChatPage serves the chat class's page: two tabs on it can chat.
func serveChatPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(chatPage)
}
