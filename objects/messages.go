package objects

// Durable messages between objects (issue 16, part 2): Stub.Send records a
// message in the turn's write set; it is part of the turn's event
// (log.Turn.Sends) and exists only if that event does (a failed turn, or a
// failed Storage.Transaction, sends nothing). After the event is
// acknowledged the runtime's outbox delivers it: in send order per sender,
// at least once, with backoff, to the target's owner. The target applies
// it at most once: the delivery carries an idempotency key derived from
// (sender, version, turn, index), so a redelivery is answered from the
// target's record of the first (idempotency.go) within the target class's
// idempotency window. SendWithReply brings the target's answer back as a
// turn of a method of the sender, keyed the same way.
//
// NOT YET DONE (see docs/api.md): the pending outbox lives in the memory of
// the sender's node. A message whose event was acknowledged but which was
// not yet delivered when that node dies is not redelivered: the snapshot
// has no outbox index yet (as it has for alarms), and nothing takes over a
// dead node's outbox. Dead letters are kept in memory only.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/strata-objects/strata/log"
)

// Message limits.
const (
	// MessageBytesMax bounds a message's encoded input.
	MessageBytesMax = log.MessageBytesMax
	// TurnSendsMax bounds the messages one turn sends.
	TurnSendsMax = log.TurnSendsMax
	// messageOverheadBytes is what a message costs in the event beyond its
	// class, method, reply method and body.
	messageOverheadBytes = 64
	// MessageAttemptsMax: a message whose delivery failed this often (the
	// target's node unreachable, overloaded, ...) goes to the dead letters.
	MessageAttemptsMax = 10
	messageBackoffMin  = 100 * time.Millisecond
	messageBackoffMax  = 30 * time.Second
	// messageTimeout bounds one delivery attempt.
	messageTimeout = 30 * time.Second
	// DefaultOutboxPendingMax is Config.OutboxPendingMax's default.
	DefaultOutboxPendingMax = 10000
)

// Send records a durable message: the object's method runs with in once
// this turn's event is acknowledged, at least once delivered and at most
// once applied. The turn is not blocked and gets no answer (see
// SendWithReply). Bad input fails here, and the turn that returns the
// error sends nothing.
func (s *Stub) Send(method string, in any) error { return s.send(method, in, "") }

// SendWithReply is Send, and the target's answer (its output, or its error)
// comes back as a turn of replyMethod on this object, whose input is a
// Reply.
func (s *Stub) SendWithReply(method string, in any, replyMethod string) error {
	if _, ok := s.c.t.a.class.methods[replyMethod]; !ok {
		return fmt.Errorf("%w: reply method: %s has no method %q", ErrUnknownMethod, s.c.t.a.class.name, truncate(replyMethod))
	}
	return s.send(method, in, replyMethod)
}

func (s *Stub) send(method string, in any, reply string) error {
	if s.err != nil {
		return s.err
	}
	t := s.c.t
	if t.done {
		return errors.New("objects: stub used after its turn ended")
	}
	class, err := t.a.rt.Class(s.ref.Class)
	if err != nil {
		return err
	}
	if _, ok := class.methods[method]; !ok {
		return fmt.Errorf("%w: %s has no method %q", ErrUnknownMethod, class.name, truncate(method))
	}
	var body []byte
	if in != nil {
		if body, err = t.a.rt.codec.Encode(in); err != nil {
			return fmt.Errorf("%w: message %s.%s: %w", ErrBadInput, s.ref, method, err)
		}
	}
	if len(body) > MessageBytesMax {
		return tooLarge(fmt.Sprintf("message %s.%s", s.ref, method), len(body), MessageBytesMax)
	}
	ws := t.current()
	n := 0
	for w := ws; w != nil; w = w.parent {
		n += len(w.sends)
	}
	if n >= TurnSendsMax {
		return fmt.Errorf("%w: a turn sends at most %d messages", ErrTooLarge, TurnSendsMax)
	}
	if p := t.a.rt.outbox.pending(t.a.id); p+n >= t.a.rt.cfg.OutboxPendingMax {
		return fmt.Errorf("%w: %s/%s has %d messages waiting for delivery, at most %d", ErrOutboxFull, t.a.class.name, t.a.id, p, t.a.rt.cfg.OutboxPendingMax)
	}
	cost := len(class.name) + len(method) + len(reply) + len(body) + messageOverheadBytes
	if ws.bytes+cost > WriteSetBytesMax {
		return tooLarge("write set", ws.bytes+cost, WriteSetBytesMax)
	}
	ws.sends = append(ws.sends, log.Message{Class: s.ref.Class, ID: s.ref.ID, Method: method, Body: body, Reply: reply})
	ws.bytes += cost
	return nil
}

// current is the write set the turn writes to now: the innermost
// Storage.Transaction's, else the turn's.
func (t *turn) current() *writeSet {
	if t.tx != nil {
		return t.tx
	}
	return t.st.ws
}

// Reply is the input of a SendWithReply's reply method: the answer of the
// message's target.
type Reply struct {
	// Target is the object the message went to; Method its method.
	Target string `json:"target"`
	Method string `json:"method"`
	// Out is the target's output (JSON) when it answered.
	Out json.RawMessage `json:"out,omitempty"`
	// Error is set when the target refused (a ClientError keeps its
	// status and code), failed, or the message went to the dead letters.
	Error *ReplyError `json:"error,omitempty"`
}

// ReplyError is a failed message's error, as its sender's reply sees it.
type ReplyError struct {
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// OutboxEntry is one message the runtime has yet to deliver, or gave up on.
type OutboxEntry struct {
	Sender   Ref
	Version  uint64 // the sender's event that holds the message
	Turn     int
	Index    int
	Target   Ref
	Method   string
	Reply    string // the sender's reply method, if any
	Attempts int
	LastErr  string
	Dead     bool // in the dead letters: no more attempts until retried
	replying bool // the target answered; the reply is being delivered
	answer   Reply
	body     []byte
}

func (e *OutboxEntry) key() string {
	return "strata-msg-" + e.Sender.ID.String() + "-" + strconv.FormatUint(e.Version, 10) + "-" + strconv.Itoa(e.Turn) + "-" + strconv.Itoa(e.Index)
}

// outbox delivers the messages of acknowledged events, one queue per
// sender, in order. Each queue with messages has one goroutine, owned by
// the outbox, which Close stops.
type outbox struct {
	rt     *Runtime
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		queues  map[ID][]*OutboxEntry // pending, by sender, in send order
		dead    map[ID][]*OutboxEntry
		stopped bool
	}
}

func newOutbox(rt *Runtime) *outbox {
	o := &outbox{rt: rt}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.mu.queues = map[ID][]*OutboxEntry{}
	o.mu.dead = map[ID][]*OutboxEntry{}
	return o
}

// committed enqueues the messages of an acknowledged event.
func (o *outbox) committed(sender Ref, version uint64, turns []log.Turn) {
	var add []*OutboxEntry
	for ti, t := range turns {
		for i, m := range t.Sends {
			add = append(add, &OutboxEntry{Sender: sender, Version: version, Turn: ti, Index: i,
				Target: Ref{Class: m.Class, ID: m.ID}, Method: m.Method, Reply: m.Reply, body: m.Body})
		}
	}
	if len(add) == 0 {
		return
	}
	o.enqueue(sender.ID, add...)
}

func (o *outbox) enqueue(sender ID, es ...*OutboxEntry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.stopped {
		return
	}
	q := o.mu.queues[sender]
	o.mu.queues[sender] = append(q, es...)
	if len(q) == 0 {
		o.wg.Add(1)
		go o.drain(sender)
	}
}

// drain delivers sender's queue in order until it is empty.
func (o *outbox) drain(sender ID) {
	defer o.wg.Done()
	for {
		o.mu.Lock()
		q := o.mu.queues[sender]
		if len(q) == 0 || o.mu.stopped {
			delete(o.mu.queues, sender)
			o.mu.Unlock()
			return
		}
		e := q[0]
		o.mu.Unlock()
		dead := o.deliver(e)
		o.mu.Lock()
		o.mu.queues[sender] = o.mu.queues[sender][1:]
		if dead {
			e.Dead = true
			o.mu.dead[sender] = append(o.mu.dead[sender], e)
		}
		o.rt.hooks.delivered(e.Sender.Class, e.Sender.ID, dead)
		o.mu.Unlock()
		if o.ctx.Err() != nil {
			return
		}
	}
}

// deliver runs e on its target (and its reply on the sender) until it
// succeeds, the attempts run out (it reports true: dead letter) or the
// outbox stops.
func (o *outbox) deliver(e *OutboxEntry) (dead bool) {
	backoff := messageBackoffMin
	for {
		err := o.attempt(e)
		if err == nil {
			return false
		}
		o.mu.Lock()
		e.Attempts++
		e.LastErr = err.Error()
		attempts := e.Attempts
		o.mu.Unlock()
		if attempts >= MessageAttemptsMax {
			o.rt.logger.Warn("message dead-lettered", "sender", e.Sender, "version", e.Version, "target", e.Target, "method", e.Method, "err", err)
			return true
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-o.ctx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, messageBackoffMax)
	}
}

// attempt delivers e once: the message, then its reply. An answer of the
// target (its output or its refusal) settles the message; only an error
// that says nothing ran, or that the outcome is unknown, is retried (the
// key makes the retry safe).
func (o *outbox) attempt(e *OutboxEntry) error {
	ctx, cancel := context.WithTimeout(o.ctx, messageTimeout)
	defer cancel()
	if !e.replying {
		cause := Cause{Caller: &Caller{Class: e.Sender.Class, ID: e.Sender.ID, Version: e.Version, Turn: e.Turn, Index: e.Index, Kind: log.CallerMessage}, IdemKey: e.key()}
		out, err := o.rt.calls.Call(ctx, e.Target, e.Method, e.body, o.rt.codec, cause)
		if err != nil && retryableDelivery(err) {
			return err
		}
		if e.Reply == "" {
			return nil
		}
		e.answer = Reply{Target: e.Target.String(), Method: e.Method}
		if err != nil {
			e.answer.Error = replyError(err)
		} else if len(out) > 0 {
			e.answer.Out = json.RawMessage(out)
		}
		e.replying = true
	}
	body, err := o.rt.codec.Encode(e.answer)
	if err != nil {
		return fmt.Errorf("encode the reply: %w", err)
	}
	cause := Cause{Caller: &Caller{Class: e.Target.Class, ID: e.Target.ID, Version: e.Version, Turn: e.Turn, Index: e.Index, Kind: log.CallerReply}, IdemKey: e.key() + "-reply"}
	_, err = o.rt.calls.Call(ctx, e.Sender, e.Reply, body, o.rt.codec, cause)
	if err != nil && retryableDelivery(err) {
		return err
	}
	return nil
}

// retryableDelivery: nothing ran, or the outcome is unknown (a keyed retry
// is safe either way).
func retryableDelivery(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) || errors.Is(err, ErrFenced) ||
		errors.Is(err, ErrMoved) || errors.Is(err, ErrClosed) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}

func replyError(err error) *ReplyError {
	var ce *ClientError
	if errors.As(err, &ce) {
		return &ReplyError{Status: ce.Status, Code: ce.Code, Message: ce.Message}
	}
	code := callErrorCode(err)
	return &ReplyError{Code: code, Message: err.Error()}
}

// pending is how many of sender's messages wait (dead letters included).
func (o *outbox) pending(sender ID) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.mu.queues[sender]) + len(o.mu.dead[sender])
}

// close stops delivering and waits for the queues' goroutines.
func (o *outbox) close() {
	o.mu.Lock()
	o.mu.stopped = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// Outbox lists ref's messages not yet delivered and its dead letters, as
// this node holds them.
func (rt *Runtime) Outbox(ref Ref) []OutboxEntry {
	o := rt.outbox
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []OutboxEntry
	for _, es := range [][]*OutboxEntry{o.mu.queues[ref.ID], o.mu.dead[ref.ID]} {
		for _, e := range es {
			out = append(out, OutboxEntry{Sender: e.Sender, Version: e.Version, Turn: e.Turn, Index: e.Index, Target: e.Target,
				Method: e.Method, Reply: e.Reply, Attempts: e.Attempts, LastErr: e.LastErr, Dead: e.Dead})
		}
	}
	return out
}

// RetryDead moves ref's dead letters back to its queue, in order, and
// reports how many.
func (rt *Runtime) RetryDead(ref Ref) int {
	o := rt.outbox
	o.mu.Lock()
	dead := o.mu.dead[ref.ID]
	delete(o.mu.dead, ref.ID)
	o.mu.Unlock()
	for _, e := range dead {
		e.Dead, e.Attempts = false, 0
	}
	if len(dead) > 0 {
		o.enqueue(ref.ID, dead...)
	}
	return len(dead)
}
