package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/objects"
)

// One socket's gateway side: its bounded send queue and on-demand writer,
// and its reader, which turns messages into turns and reports the end.

// outFrame is one frame waiting in a socket's send queue.
type outFrame struct {
	kind   int // websocket.TextMessage, BinaryMessage or CloseMessage
	data   []byte
	code   int // close
	reason string
}

// wsConn is the gateway's side of one socket: objects.SocketConn.
type wsConn struct {
	h     *wsHub
	b     WebSocketBackend
	ref   objects.Ref
	id    objects.SocketID
	cause objects.Cause
	log   *slog.Logger
	// revoked, with auth on, says whether the token the socket was opened
	// with has been revoked since: the socket is closed (1008) at its next
	// message in either direction or its next ping, whichever comes first.
	revoked func() bool

	mu struct {
		sync.Mutex
		conn    *websocket.Conn // nil until upgraded
		queue   []outFrame
		bytes   int
		writing bool  // a writer goroutine is draining queue
		closed  bool  // a close frame is queued or sent: nothing more is sent
		byUs    bool  // the close was the object's or the gateway's
		fatal   error // why the connection was cut
	}
}

// Send queues m. A full queue cuts the connection (ErrSlowConsumer); a
// revoked token closes it (1008) and m is not sent.
func (c *wsConn) Send(m objects.Message) error {
	if c.isRevoked() {
		// Not WebSocketDrop here: Send runs inside the object's turn. The
		// close is ours, so finish drops the socket without a turn.
		c.Close(websocket.ClosePolicyViolation, "token revoked")
		return objects.ErrSocketClosed
	}
	kind := websocket.TextMessage
	if m.Binary {
		kind = websocket.BinaryMessage
	}
	return c.enqueue(outFrame{kind: kind, data: m.Data})
}

// isRevoked reports whether the socket's token was revoked since it
// opened (never, with auth off).
func (c *wsConn) isRevoked() bool { return c.revoked != nil && c.revoked() }

// cutRevoked takes a socket whose token was revoked out of its object's
// hub, so nothing more is sent to it, and closes it (1008). Not from
// inside a turn.
func (c *wsConn) cutRevoked() {
	c.b.WebSocketDrop(c.ref, c.id)
	c.Close(websocket.ClosePolicyViolation, "token revoked")
}

// closing reports whether a close frame is queued or sent.
func (c *wsConn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}

// Close queues a close frame; the client's reply (or closeWait) ends it.
func (c *wsConn) Close(code int, reason string) {
	c.enqueue(outFrame{kind: websocket.CloseMessage, code: code, reason: reason})
}

func (c *wsConn) enqueue(f outFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed || c.mu.fatal != nil {
		return objects.ErrSocketClosed
	}
	if f.kind == websocket.CloseMessage {
		c.mu.closed, c.mu.byUs = true, true
	} else if len(c.mu.queue) >= c.h.cfg.SendQueueLen || c.mu.bytes+len(f.data) > c.h.cfg.SendQueueBytes {
		c.cutLocked(ErrSlowConsumer)
		return ErrSlowConsumer
	}
	c.mu.queue = append(c.mu.queue, f)
	c.mu.bytes += len(f.data)
	c.startWriterLocked()
	return nil
}

// pingWriteTimeout bounds a ping's write. A socket whose kernel buffer is
// full while its queue is empty has a client that stopped reading: the
// failed ping cuts it.
const pingWriteTimeout = 50 * time.Millisecond

// ping writes a ping frame unless the socket is busy (a busy socket shows
// its client is alive when its writes go through).
func (c *wsConn) ping() {
	c.mu.Lock()
	conn := c.mu.conn
	if conn == nil || c.mu.writing || len(c.mu.queue) > 0 || c.mu.closed || c.mu.fatal != nil {
		c.mu.Unlock()
		return
	}
	c.mu.writing = true // no writer starts meanwhile
	c.mu.Unlock()
	err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(pingWriteTimeout))
	c.mu.Lock()
	c.mu.writing = false
	if err != nil {
		c.cutLocked(fmt.Errorf("websocket: ping: %w", err))
	}
	c.startWriterLocked() // what was queued meanwhile
	c.mu.Unlock()
}

func (c *wsConn) startWriterLocked() {
	if c.mu.conn == nil || c.mu.writing || len(c.mu.queue) == 0 {
		return
	}
	c.mu.writing = true
	c.h.wg.Add(1)
	go c.writer(c.mu.conn)
}

// cutLocked ends the connection without a handshake; the reader sees the
// error and reports err as the socket's end.
func (c *wsConn) cutLocked(err error) {
	if c.mu.fatal != nil {
		return
	}
	c.mu.fatal = err
	c.mu.queue, c.mu.bytes = nil, 0
	if c.mu.conn != nil {
		c.mu.conn.NetConn().Close()
	}
}

// writer drains the queue and ends when it is empty.
func (c *wsConn) writer(conn *websocket.Conn) {
	defer c.h.wg.Done()
	for {
		c.mu.Lock()
		if len(c.mu.queue) == 0 || c.mu.fatal != nil {
			c.mu.queue, c.mu.writing = nil, false
			c.mu.Unlock()
			return
		}
		f := c.mu.queue[0]
		c.mu.queue[0] = outFrame{}
		c.mu.queue = c.mu.queue[1:]
		c.mu.bytes -= len(f.data)
		c.mu.Unlock()

		deadline := time.Now().Add(c.h.cfg.WriteTimeout)
		var err error
		switch f.kind {
		case websocket.CloseMessage:
			err = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.code, f.reason), deadline)
			conn.SetReadDeadline(time.Now().Add(closeWait))
		default:
			conn.SetWriteDeadline(deadline)
			err = conn.WriteMessage(f.kind, f.data)
		}
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			c.mu.Lock()
			c.cutLocked(fmt.Errorf("websocket: write: %w", err))
			c.mu.Unlock()
		}
	}
}

// start begins serving an upgraded connection: messages queued during the
// connect turn go out first.
func (c *wsConn) start(conn *websocket.Conn, br *bufio.Reader, turnTimeout time.Duration) {
	conn.SetReadLimit(c.h.cfg.ReadLimitBytes)
	pongWait := 2*c.h.cfg.PingInterval + c.h.cfg.WriteTimeout
	conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error {
		conn.SetReadDeadline(time.Now().Add(pongWait))
		return nil
	})
	c.mu.Lock()
	c.mu.conn = conn
	if c.mu.fatal != nil { // cut before the upgrade finished
		conn.NetConn().Close()
	}
	c.startWriterLocked()
	c.mu.Unlock()
	c.h.wg.Add(1)
	go c.reader(conn, br, pongWait, turnTimeout)
}

// reader turns messages into turns, one at a time, until the socket ends,
// then reports how it ended.
func (c *wsConn) reader(conn *websocket.Conn, br *bufio.Reader, pongWait, turnTimeout time.Duration) {
	defer c.h.wg.Done()
	var err error
	for {
		if br != nil {
			if br.Buffered() == 0 {
				waitReadable(conn.NetConn())
			}
			if skipPong(br) {
				conn.SetReadDeadline(time.Now().Add(pongWait))
				continue
			}
		}
		var kind int
		var data []byte
		kind, data, err = conn.ReadMessage()
		if err != nil {
			break
		}
		conn.SetReadDeadline(time.Now().Add(pongWait))
		if c.closing() {
			continue // the close is sent: what crosses it is dropped
		}
		if c.isRevoked() {
			c.cutRevoked()
			continue // the read ends once the close is done
		}
		if kind == websocket.TextMessage && !utf8.Valid(data) {
			// RFC 6455 §8.1: fail the connection with 1007. The object
			// hears of it as the socket's error.
			c.Close(websocket.CloseInvalidFramePayloadData, "text frame is not valid UTF-8")
			ctx, cancel := context.WithTimeout(context.Background(), turnTimeout)
			if err := c.b.WebSocketError(ctx, c.ref, c.id, ErrInvalidUTF8, c.cause); err != nil {
				c.log.Debug("websocket error turn", "object", c.ref, "socket", c.id, "err", err)
			}
			cancel()
			continue
		}
		if kind == websocket.TextMessage {
			if resp, ok := c.b.WebSocketAutoResponse(c.ref, c.id, data); ok {
				c.Send(objects.Message{Data: []byte(resp)})
				continue
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), turnTimeout)
		err = c.b.WebSocketMessage(ctx, c.ref, c.id, objects.Message{Binary: kind == websocket.BinaryMessage, Data: data}, c.cause)
		cancel()
		if err == nil || errors.Is(err, objects.ErrSocketClosed) {
			continue
		}
		var he *objects.HandlerError
		var ce *objects.ClientError
		if errors.As(err, &he) || errors.As(err, &ce) {
			// The object's own failure: that message's turn is void, the
			// socket goes on.
			c.log.Debug("websocket message turn failed", "object", c.ref, "socket", c.id, "err", err)
			continue
		}
		// The runtime could not run it (overloaded, fenced, stopping): the
		// client should reconnect later.
		c.b.WebSocketDrop(c.ref, c.id)
		code := websocket.CloseTryAgainLater
		if !errors.Is(err, objects.ErrOverloaded) {
			code = websocket.CloseServiceRestart
		}
		c.Close(code, truncateReason(err.Error()))
	}
	c.finish(conn, err)
}

// finish reports the end of the socket to its object and frees it.
func (c *wsConn) finish(conn *websocket.Conn, readErr error) {
	c.h.remove(c)
	c.mu.Lock()
	byUs, fatal := c.mu.byUs, c.mu.fatal
	c.mu.closed = true
	if fatal == nil {
		c.mu.fatal = readErr
	}
	c.mu.Unlock()
	conn.NetConn().Close()

	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	var ce *websocket.CloseError
	var err error
	switch {
	case byUs || c.h.isClosing():
		// The object closed it (it is out of the hub already), or the node
		// is stopping.
		c.b.WebSocketDrop(c.ref, c.id)
		return
	case fatal != nil:
		err = c.b.WebSocketError(ctx, c.ref, c.id, fatal, c.cause)
	case errors.As(readErr, &ce) && ce.Code != websocket.CloseAbnormalClosure && ce.Code != websocket.CloseMessageTooBig:
		err = c.b.WebSocketClose(ctx, c.ref, c.id, ce.Code, ce.Text, c.cause)
	default:
		if isTimeout(readErr) {
			readErr = ErrPongTimeout
		}
		err = c.b.WebSocketError(ctx, c.ref, c.id, readErr, c.cause)
	}
	if err != nil {
		c.log.Debug("websocket end turn", "object", c.ref, "socket", c.id, "err", err)
		c.b.WebSocketDrop(c.ref, c.id)
	}
}

// skipPong consumes a pong frame waiting at the head of br, between
// messages (where the reader loop calls it), and reports whether it did.
// Handing a pong to gorilla would park this goroutine deep inside its frame
// reader until the next data message, with the bigger stack that takes;
// every idle socket answers a ping per interval, so that is most sockets.
// Anything else (a ping, a fragment, a bad frame) is gorilla's to read.
func skipPong(br *bufio.Reader) bool {
	const finPong, masked = 0x8A, 0x80
	h, err := br.Peek(2)
	if err != nil || h[0] != finPong || h[1]&masked == 0 || h[1]&0x7f > 125 {
		return false
	}
	n := 2 + 4 + int(h[1]&0x7f) // header, mask key, payload
	if _, err := br.Peek(n); err != nil {
		return false
	}
	br.Discard(n)
	return true
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func truncateReason(s string) string {
	if len(s) <= 120 {
		return s
	}
	return s[:120]
}
