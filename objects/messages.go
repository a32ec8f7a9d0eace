package objects

// Durable messages between objects (issue 16, part 2): Stub.Send records a
// message in the turn's write set; it is part of the turn's event
// (log.Turn.Sends) and exists only if that event does (a failed turn, or a
// failed Storage.Transaction, sends nothing). After the event is
// acknowledged the runtime's outbox delivers it: in send order per sender,
// at least once, with backoff, to the target's owner.
//
// Where the truth is (docs/design-notes.md, "Durable messages"):
//   - Pending: an object's pending messages are its own events' Sends
//     minus its own events' Settles (log.Settle). Nothing else, no node's
//     memory, says a message is pending or done: the log of the sender
//     alone does, so any node that loads the sender knows its outbox. The
//     snapshot indexes it (projector/outbox.go); an activation reads the
//     index at load, catches up the events after it, and hands what is
//     pending to the outbox. So a restart, a move, a takeover of a dead
//     node's objects (alarms' takeover scan) and the periodic sweep
//     (alarms' sweep, a page at a time) all redeliver by activating the
//     sender.
//   - Delivered: after the target answered, the outbox makes a "settle
//     call" on the sender (the reply kind of Caller, routed to the
//     sender's owner like any call). For a SendWithReply it runs the
//     reply method's turn: the reply's writes and the Settle are one
//     event, so a reply is applied exactly once (a second reply finds the
//     message no longer pending and does nothing). For a plain Send it
//     runs no turn: the sender notes the Settle and writes it with its
//     next event, or in a settle turn after Config.SettleDelay (lazy
//     settles, settle.go); until then the message is pending in the log,
//     and a crash redelivers it. Messages go out one at a time per
//     sender, each answered by its target before the next leaves (and a
//     reply's, a dead letter's or a retry's Settle written first).
//   - Applied at most once: a message's turn on the target carries the
//     sender's position in its cause (Caller: sender, version, turn,
//     index) and its answer (Outcome). The target keeps, per sender, the
//     last such cause (the snapshot's received index, the overlay until
//     then); a delivery at or before that position runs nothing and gets
//     the recorded answer (at it) or none (before it). This does not
//     expire, unlike idempotency keys: it is one record per sender. The
//     activation remembers the positions (lastReceived), so a new message
//     from a sender it knows reads no record.
//   - Dead letters: a message whose delivery failed MessageAttemptsMax
//     times is settled as dead (a Settle with Dead), in the sender's log
//     too; an operator's retry is a Settle with Retry, which makes it
//     pending again with its first identity, so it is still applied at
//     most once. A dead letter does not run the reply method; a retried
//     one does when it is delivered.
//
// Checkpoints carry the pending messages and dead letters
// (log.Checkpoint.Outbox) and, as keyed records, the last message applied
// per sender (history.Replayer.Received).
//
// A takeover of a dead node's objects finds their senders in the last
// minute of log, and those pending for longer in the outbox marks
// (outboxmarks.go).
//
// Listing: an object's outbox is read from its activation on its owner
// (Outbox), less the delivered messages whose Settle is only noted
// (settle.go); the dead letters of a cluster are found in every node's
// snapshot and listed by their senders' owners (cluster.Router).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
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
	messageBackoffMax  = 30 * time.Second
	// messageTimeout bounds one delivery attempt.
	messageTimeout = 30 * time.Second
	// DefaultOutboxPendingMax is Config.OutboxPendingMax's default.
	DefaultOutboxPendingMax = 10000
)

// DefaultMessageBackoff is Config.MessageBackoff's default.
const DefaultMessageBackoff = 100 * time.Millisecond

// Send records a durable message: the object's method runs with in once
// this turn's event is acknowledged, at least once delivered and at most
// once applied. The turn is not blocked and gets no answer (see
// SendWithReply). Bad input fails here, and the turn that returns the
// error sends nothing.
func (s *Stub) Send(method string, in any) error { return s.send(method, in, "") }

// SendWithReply is Send, and the target's answer (its output, or its error)
// comes back as a turn of replyMethod on this object, whose input is a
// Reply.
//
// A class deployed at run time (Dynamic) checks replyMethod itself: its
// methods are its code's.
func (s *Stub) SendWithReply(method string, in any, replyMethod string) error {
	if replyMethod == "" {
		return fmt.Errorf("%w: a reply method is required", ErrBadInput)
	}
	if _, ok := s.c.t.a.class.methods[replyMethod]; !ok && !s.c.t.a.class.dynamic {
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
	if _, ok := class.methods[method]; !ok && !class.dynamic { // a deployed class's methods are its code's: it answers unknown_method
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
	if p := len(t.a.sent) + len(t.a.dead); p+n >= t.a.rt.cfg.OutboxPendingMax {
		return fmt.Errorf("%w: %s/%s has %d messages waiting for delivery, at most %d", ErrOutboxFull, t.a.class.name, t.a.id, p, t.a.rt.cfg.OutboxPendingMax)
	}
	cost := len(class.name) + len(s.ref.Name) + len(method) + len(reply) + len(body) + messageOverheadBytes
	if ws.bytes+cost > WriteSetBytesMax {
		return tooLarge("write set", ws.bytes+cost, WriteSetBytesMax)
	}
	ws.sends = append(ws.sends, log.Message{Class: s.ref.Class, ID: s.ref.ID, Name: s.ref.Name, Method: method, Body: body, Reply: reply})
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
	// status and code) or failed. A dead letter has no reply until an
	// operator retries it and it is delivered.
	Error *ReplyError `json:"error,omitempty"`
}

// ReplyError is a failed message's error, as its sender's reply sees it.
type ReplyError struct {
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// OutboxEntry is one message of an object not yet delivered, or a dead
// letter.
type OutboxEntry struct {
	Sender   Ref    `cbor:"1,keyasint"`
	Version  uint64 `cbor:"2,keyasint"` // the sender's event that holds the message
	Turn     int    `cbor:"3,keyasint,omitempty"`
	Index    int    `cbor:"4,keyasint,omitempty"`
	Target   Ref    `cbor:"5,keyasint"`
	Method   string `cbor:"6,keyasint"`
	Reply    string `cbor:"7,keyasint,omitempty"` // the sender's reply method, if any
	Attempts int    `cbor:"8,keyasint,omitempty"` // failed deliveries since this node took it
	LastErr  string `cbor:"9,keyasint,omitempty"`
	Dead     bool   `cbor:"10,keyasint,omitempty"` // in the dead letters: no more attempts until retried
	body     []byte
	since    time.Time // its event's acknowledgement as this node saw it; zero: loaded, so unknown
	replying bool      // the target answered: the settle (and reply) is being delivered
	dying    bool      // out of attempts: being settled as dead
	answer   Reply
}

func (e *OutboxEntry) pos() projector.MessagePos {
	return projector.MessagePos{Version: e.Version, Turn: e.Turn, Index: e.Index}
}

func (e *OutboxEntry) key() string {
	return "strata-msg-" + e.Sender.ID.String() + "-" + strconv.FormatUint(e.Version, 10) + "-" + strconv.Itoa(e.Turn) + "-" + strconv.Itoa(e.Index)
}

func newEntry(sender Ref, pos projector.MessagePos, m log.Message) *OutboxEntry {
	return &OutboxEntry{Sender: sender, Version: pos.Version, Turn: pos.Turn, Index: pos.Index,
		Target: Ref{Class: m.Class, ID: m.ID, Name: m.Name}, Method: m.Method, Reply: m.Reply, body: m.Body}
}

// The activation's view of its outbox: loaded from the snapshot, then
// kept by every event it catches up or stages (Sends add, Settles end,
// dead-letter or put back). Owned by the activation's goroutine.

// loadOutbox reads the snapshot's outbox of the object; catch-up applies
// the events after the version it was read at.
func (a *activation) loadOutbox() error {
	pending, dead, v, err := a.rt.proj.Outbox(a.class.name, a.id)
	if err != nil {
		return fmt.Errorf("load %s/%s outbox: %w: %w", a.class.name, a.id, ErrUnavailable, err)
	}
	a.sent, a.dead, a.outboxVer = map[projector.MessagePos]*OutboxEntry{}, map[projector.MessagePos]*OutboxEntry{}, v
	ref := a.ref()
	for _, m := range pending {
		a.sent[m.Pos] = newEntry(ref, m.Pos, m.Msg)
	}
	for _, m := range dead {
		e := newEntry(ref, m.Pos, m.Msg)
		e.Dead, e.LastErr = true, m.Dead
		a.dead[m.Pos] = e
	}
	return nil
}

func (a *activation) ref() Ref { return Ref{Class: a.class.name, ID: a.id, Name: a.name} }

// noteOutbox applies one caught-up or staged turn's sends and settles.
func (a *activation) noteOutbox(version uint64, ti int, t log.Turn) {
	if a.sent == nil {
		a.sent, a.dead = map[projector.MessagePos]*OutboxEntry{}, map[projector.MessagePos]*OutboxEntry{}
	}
	ref := a.ref()
	for i, m := range t.Sends {
		pos := projector.MessagePos{Version: version, Turn: ti, Index: i}
		a.sent[pos] = newEntry(ref, pos, m)
	}
	for _, s := range t.Settles {
		pos := projector.MessagePos{Version: s.Version, Turn: s.Turn, Index: s.Index}
		switch {
		case s.Retry:
			if e, ok := a.dead[pos]; ok {
				delete(a.dead, pos)
				e.Dead, e.LastErr = false, ""
				a.sent[pos] = e
			}
		case s.Dead != "":
			if e, ok := a.sent[pos]; ok {
				delete(a.sent, pos)
				e.Dead, e.LastErr = true, s.Dead
				a.dead[pos] = e
			}
		default:
			delete(a.sent, pos)
		}
	}
}

// settleable reports whether a settle call still has something to do: the
// message is pending (or, for a retry, dead).
func (a *activation) settleable(s log.Settle) bool {
	pos := projector.MessagePos{Version: s.Version, Turn: s.Turn, Index: s.Index}
	if s.Retry {
		_, ok := a.dead[pos]
		return ok
	}
	_, ok := a.sent[pos]
	return ok
}

// attachSettle records a settle call's Settle in the turn it ran (staged
// says whether the turn staged anything; if not, the Settle is staged
// alone), so the reply's writes and the Settle are one event.
func (a *activation) attachSettle(req *request, staged bool) {
	if !staged || a.pending == nil {
		a.stage(req.cause, nil, req.trace)
	}
	last := &a.pending.turns[len(a.pending.turns)-1]
	last.Settles = append(last.Settles, *req.settle)
	a.pending.bytes += settleOverheadBytes + len(req.settle.Dead)
	a.noteOutbox(a.pending.version, len(a.pending.turns)-1, log.Turn{Settles: []log.Settle{*req.settle}})
}

// settleOverheadBytes is what a Settle costs in the event beyond its error.
const settleOverheadBytes = 32

// committed hands the outbox the messages an acknowledged event made
// pending: its sends, and the dead letters it put back.
func (a *activation) outboxCommitted(c *commit) {
	var add []*OutboxEntry
	for ti, t := range c.turns {
		for i := range t.Sends {
			if e, ok := a.sent[projector.MessagePos{Version: c.version, Turn: ti, Index: i}]; ok {
				e.since = time.Now()
				add = append(add, e)
			}
		}
		for _, s := range t.Settles {
			if e, ok := a.sent[projector.MessagePos{Version: s.Version, Turn: s.Turn, Index: s.Index}]; ok && s.Retry {
				e.since = time.Now()
				add = append(add, e)
			}
		}
	}
	a.rt.outbox.enqueue(a.id, add...)
}

// loadedOutbox hands the outbox what the loaded object has pending.
func (a *activation) loadedOutbox() {
	add := make([]*OutboxEntry, 0, len(a.sent))
	for _, e := range a.sent {
		add = append(add, e)
	}
	slices.SortFunc(add, func(x, y *OutboxEntry) int {
		switch {
		case x.pos().Less(y.pos()):
			return -1
		case y.pos().Less(x.pos()):
			return 1
		}
		return 0
	})
	a.rt.outbox.enqueue(a.id, add...)
}

// receivedKey is where the overlay keeps, under a.idem, the last message
// applied from a sender (a name no Idempotency-Key can take: keys are
// printable).
func receivedKey(class string, id ID) string { return "\x00msg\x00" + class + "\x00" + string(id[:]) }

// answerReceived answers a message already applied (a redelivery) and
// reports whether it did: at the last applied message of its sender, with
// its recorded answer; before it, with ErrMessageSuperseded. Such a
// message was applied before (its sender has settled it: the answer goes
// nowhere), or it is a dead letter retried after a later message of its
// sender reached this target: applying it now would break send order, so
// it is refused, and its reply says so.
func (a *activation) answerReceived(req *request) bool {
	c := req.cause.Caller
	this := projector.MessagePos{Version: c.Version, Turn: c.Turn, Index: c.Index}
	if at, ok := a.lastReceived[actKey{c.Class, c.ID}]; ok && at.Less(this) {
		return false // a new message: no record to read
	}
	var last log.Cause
	if e, ok := a.idem[receivedKey(c.Class, c.ID)]; ok {
		last = e.cause
	} else {
		rec, ok, err := a.rt.proj.Received(a.class.name, a.id, c.Class, c.ID)
		if err != nil {
			a.gate(req, result{err: fmt.Errorf("%w: look up messages received by %s/%s: %w", ErrUnavailable, a.class.name, a.id, err)})
			return true
		}
		if !ok {
			a.rememberReceived(c.Class, c.ID, projector.MessagePos{}) // none yet: before any message
			return false
		}
		last = rec
	}
	lc := last.Caller
	at := projector.MessagePos{Version: lc.Version, Turn: lc.Turn, Index: lc.Index}
	a.rememberReceived(c.Class, c.ID, at)
	switch {
	case at.Less(this):
		return false
	case this.Less(at):
		a.rt.hooks.replayed(a.class.name, a.id)
		a.gate(req, result{err: &ClientError{Status: http.StatusConflict, Code: "message_superseded",
			Message: fmt.Sprintf("%s/%s has applied a later message of %s/%s (v%d.%d.%d)", a.class.name, a.id, c.Class, c.ID, at.Version, at.Turn, at.Index)}})
	default:
		a.rt.hooks.replayed(a.class.name, a.id)
		MarkReplayed(req.ctx)
		a.gate(req, a.replayOutcome(req, last.Outcome))
	}
	return true
}

// receivedCacheMax bounds the senders an activation remembers the last
// applied message of (lastReceived); past it the cache starts again empty.
const receivedCacheMax = 64

// rememberReceived notes that the last message applied from sender is at
// pos: it comes from a staged or caught-up turn that applied it, or from
// the record answerReceived read. Turns run one at a time and the log
// only grows, so the newest note is the truth while this activation
// lives; without a note answerReceived reads the record.
func (a *activation) rememberReceived(class string, id ID, pos projector.MessagePos) {
	k := actKey{class, id}
	if a.lastReceived == nil {
		a.lastReceived = map[actKey]projector.MessagePos{}
	} else if _, ok := a.lastReceived[k]; !ok && len(a.lastReceived) >= receivedCacheMax {
		clear(a.lastReceived)
	}
	a.lastReceived[k] = pos
}

// outbox delivers the messages of acknowledged events, one queue per
// sender, in order, one message at a time. Each queue with messages has one
// worker goroutine, owned by the outbox, which close stops. A worker whose
// queue emptied waits up to outboxWorkerIdle for another sender's queue
// (handoff) before it ends, so a busy node does not start a goroutine, and
// grow its stack again, per message. It holds copies: the activation's
// entries are its own.
type outbox struct {
	rt      *Runtime
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	handoff chan ID // unbuffered: a sender's queue, to a waiting worker

	// started counts the workers started, waiting those waiting now for
	// a handoff (for tests).
	started, waiting atomic.Int64

	mu struct {
		sync.Mutex
		queues map[ID][]*OutboxEntry // pending, by sender, in send order
		queued map[ID]map[projector.MessagePos]bool
		// since: by queued sender, the oldest acknowledgement of what it
		// queued since its queue was last empty (zero: unknown, as old as
		// can be); marks: the senders marked (outboxmarks.go).
		since   map[ID]time.Time
		marks   map[ID]outboxMark
		stopped bool
	}
}

func newOutbox(rt *Runtime) *outbox {
	o := &outbox{rt: rt}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	o.handoff = make(chan ID)
	o.mu.queues = map[ID][]*OutboxEntry{}
	o.mu.queued = map[ID]map[projector.MessagePos]bool{}
	o.mu.since = map[ID]time.Time{}
	o.mu.marks = map[ID]outboxMark{}
	if rt.cfg.OutboxMarks != nil {
		o.wg.Add(1)
		go o.markLoop()
	}
	return o
}

// enqueue adds copies of es to sender's queue, but not those it holds
// already (an activation loaded again hands them again).
func (o *outbox) enqueue(sender ID, es ...*OutboxEntry) {
	if len(es) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mu.stopped {
		return
	}
	set := o.mu.queued[sender]
	if set == nil {
		set = map[projector.MessagePos]bool{}
		o.mu.queued[sender] = set
	}
	q := o.mu.queues[sender]
	start := len(q) == 0
	since, known := o.mu.since[sender]
	for _, e := range es {
		if set[e.pos()] {
			continue
		}
		set[e.pos()] = true
		if !known || e.since.Before(since) {
			since, known = e.since, true
		}
		c := *e
		c.Dead, c.Attempts, c.LastErr = false, 0, ""
		q = append(q, &c)
	}
	o.mu.queues[sender] = q
	if known {
		o.mu.since[sender] = since
	}
	if start && len(q) > 0 {
		select {
		case o.handoff <- sender: // a waiting worker takes it
		default:
			o.wg.Add(1)
			o.started.Add(1)
			go o.work(sender)
		}
	}
}

// outboxWorkerIdle is how long a worker whose queue emptied waits for
// another sender's before it ends. A variable for tests only.
var outboxWorkerIdle = time.Second

// work drains sender's queue, then the queues handed to it while it
// waits, until it waits outboxWorkerIdle for nothing or the outbox stops.
func (o *outbox) work(sender ID) {
	defer o.wg.Done()
	idle := time.NewTimer(outboxWorkerIdle)
	defer idle.Stop()
	for o.drain(sender) {
		idle.Reset(outboxWorkerIdle)
		o.waiting.Add(1)
		handed := false
		select {
		case sender = <-o.handoff:
			handed = true
		case <-idle.C:
		case <-o.ctx.Done():
		}
		o.waiting.Add(-1)
		if !handed {
			return
		}
	}
}

// drain delivers sender's queue in order until it is empty (true) or the
// outbox stops (false).
//
// One worker per sender: enqueue starts (or hands off to) a worker only
// when it finds the sender's queue empty, so the worker must remove a
// delivered message and give the sender up (delete its queue) in one
// critical section. Were the lock let go in between, an enqueue there
// would find the queue empty, start a second worker, and this one would
// take the new message too: both delivered it and the second pop of the
// queue ran past its end (a panic once in about 400,000 messages of
// BenchmarkMessages).
func (o *outbox) drain(sender ID) bool {
	o.mu.Lock()
	for {
		q := o.mu.queues[sender]
		if len(q) == 0 || o.mu.stopped {
			delete(o.mu.queues, sender)
			delete(o.mu.queued, sender)
			delete(o.mu.since, sender)
			stopped := o.mu.stopped
			o.mu.Unlock()
			return !stopped
		}
		e := q[0]
		o.mu.Unlock()
		if !o.deliver(e) {
			return false // stopping
		}
		if e.dying {
			o.markDead(e.Sender)
		}
		o.mu.Lock()
		o.mu.queues[sender] = o.mu.queues[sender][1:]
		delete(o.mu.queued[sender], e.pos())
		o.rt.hooks.delivered(e.Sender.Class, e.Sender.ID, e.dying)
	}
}

// deliver runs e on its target, then settles it on its sender (with its
// reply), until that is done (true) or the outbox stops (false). Once the
// delivery failed MessageAttemptsMax times it settles e as dead instead.
func (o *outbox) deliver(e *OutboxEntry) bool {
	backoff := o.rt.cfg.MessageBackoff
	for {
		err := o.attempt(e)
		if err == nil {
			return true
		}
		o.mu.Lock()
		e.LastErr = err.Error()
		if !e.replying && !e.dying {
			e.Attempts++
			if e.Attempts >= MessageAttemptsMax {
				e.dying = true
				o.rt.logger.Warn("message dead-lettered", "sender", e.Sender, "version", e.Version, "target", e.Target, "method", e.Method, "err", err)
			}
		}
		o.mu.Unlock()
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

// attempt delivers e once: the message, then its settle call. An answer
// of the target (its output or its refusal) settles the message; only an
// error that says nothing ran, or that the outcome is unknown, is retried
// (the target's received record makes the retry safe).
func (o *outbox) attempt(e *OutboxEntry) error {
	ctx, cancel := context.WithTimeout(o.ctx, messageTimeout)
	defer cancel()
	if e.dying {
		return o.settle(ctx, e, "", settleBody{Dead: e.LastErr})
	}
	if !e.replying {
		cause := Cause{Caller: &Caller{Class: e.Sender.Class, ID: e.Sender.ID, Version: e.Version, Turn: e.Turn, Index: e.Index, Kind: log.CallerMessage}, IdemKey: e.key()}
		out, err := o.rt.calls.Call(ctx, e.Target, e.Method, e.body, o.rt.codec, cause)
		if err != nil && retryableDelivery(err) {
			return err
		}
		e.answer = Reply{Target: e.Target.String(), Method: e.Method}
		if err != nil {
			e.answer.Error = replyError(err)
		} else if len(out) > 0 {
			e.answer.Out = json.RawMessage(out)
		}
		e.replying = true
	}
	if e.Reply == "" {
		return o.settle(ctx, e, "", settleBody{})
	}
	return o.settle(ctx, e, e.Reply, e.answer)
}

// settleBody is the input of a settle call without a reply method.
type settleBody struct {
	Dead  string `json:"dead,omitempty"`
	Retry bool   `json:"retry,omitempty"`
}

// settle makes the settle call of e on its sender: the reply method with
// the answer, or (method "") the bare settle body.
func (o *outbox) settle(ctx context.Context, e *OutboxEntry, method string, in any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode the settle of %s v%d: %w", e.Sender, e.Version, err)
	}
	from := e.Target
	if method == "" {
		from = e.Sender
	}
	cause := Cause{Caller: &Caller{Class: from.Class, ID: from.ID, Version: e.Version, Turn: e.Turn, Index: e.Index, Kind: log.CallerReply}}
	_, err = o.rt.calls.Call(ctx, e.Sender, method, body, o.rt.codec, cause)
	if err != nil && retryableDelivery(err) {
		return err
	}
	return nil
}

// retryableDelivery: nothing ran, or the outcome is unknown (a retry is
// safe either way).
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

// close stops delivering and waits for the queues' goroutines. What they
// had not settled is still pending in the senders' logs.
func (o *outbox) close() {
	o.mu.Lock()
	o.mu.stopped = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// settleCall runs a settle call (a Caller of the reply kind) on the
// sender: the reply method, if any, and the Settle, in one turn; nothing
// if the message is no longer pending (a repeat).
func (rt *Runtime) settleCall(ctx context.Context, class *Class, ref Ref, method string, body []byte, codec Codec, cause Cause) ([]byte, error) {
	c := cause.Caller
	s := log.Settle{Version: c.Version, Turn: c.Turn, Index: c.Index}
	run := func(*Ctx, any) (any, error) { return nil, nil }
	label := "outbox settle"
	if method == "" {
		var in settleBody
		if len(body) > 0 {
			if err := json.Unmarshal(body, &in); err != nil {
				return nil, fmt.Errorf("%w: settle of a message: %w", ErrBadInput, err)
			}
		}
		switch {
		case in.Retry:
			s.Retry, label = true, "outbox retry"
		case in.Dead != "":
			s.Dead, label = truncateTo(in.Dead, log.CallMethodBytesMax), "outbox dead letter"
		default:
			// A delivered plain message: the activation notes it and
			// answers at once; its Settle goes with the sender's next
			// event (settle.go).
			req := &request{ctx: ctx, label: label, settle: &s, lazy: true, result: make(chan result, 1)}
			_, err := rt.submit(ctx, class, ref, req)
			return nil, err
		}
	} else if class.dynamic {
		// A deployed class's reply method is its code's: the Reply is its
		// one argument (a JSON object).
		label = method
		run = func(c *Ctx, inst any) (any, error) {
			if _, err := inst.(Dynamic).Call(c, method, body); err != nil {
				return nil, handlerError(class.name, method, err)
			}
			return []byte(nil), nil
		}
	} else {
		label = method
		m, ok := class.methods[method]
		var in reflect.Value
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("%w: %s has no reply method %q", ErrUnknownMethod, class.name, truncate(method))
		case m.in != nil:
			in = reflect.New(m.in)
			if derr := codec.Decode(body, in.Interface()); derr != nil {
				err = fmt.Errorf("%w: %s.%s reply: %w", ErrBadInput, class.name, method, derr)
			}
		}
		// A reply that cannot run still settles: the turn fails, the
		// Settle is recorded, the message is not delivered again.
		run = func(c *Ctx, inst any) (any, error) {
			if err != nil {
				return nil, err
			}
			if _, err := m.call(inst, c, in); err != nil {
				return nil, handlerError(class.name, method, err)
			}
			return []byte(nil), nil
		}
	}
	cause = Cause{Via: ViaRPC, Method: label, Caller: c, RequestID: cause.RequestID, Principal: cause.Principal, TraceID: cause.TraceID}
	if method == "" {
		cause.Via = ViaSystem
	}
	req := &request{size: len(body), ctx: ctx, cause: cause, label: label, run: run, settle: &s, result: make(chan result, 1)}
	out, err := rt.submit(ctx, class, ref, req)
	b, _ := out.([]byte)
	return b, err
}

func truncateTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Outbox lists ref's messages not yet delivered and its dead letters, in
// send order, as its activation knows them (loading it if needed: its
// snapshot, then its log), with the attempts of this node's outbox. A
// delivered Send whose Settle is only noted (settle.go) is not listed:
// its target has applied it. It is exact on the object's owner, and only
// there may it be called: in a cluster ask the owner
// (cluster.Router.Outbox).
func (rt *Runtime) Outbox(ctx context.Context, ref Ref) ([]OutboxEntry, error) {
	var out []OutboxEntry
	_, err := rt.dispatch(ctx, ref, Cause{Via: ViaSystem, Method: "outbox"}, "outbox list", nil, func(c *Ctx, _ any) (any, error) {
		a := c.t.a
		out = make([]OutboxEntry, 0, len(a.sent)+len(a.dead))
		for _, e := range a.sent {
			if !a.noted(log.Settle{Version: e.Version, Turn: e.Turn, Index: e.Index}) {
				out = append(out, *e)
			}
		}
		for _, e := range a.dead {
			out = append(out, *e)
		}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y OutboxEntry) int {
		switch {
		case x.Dead != y.Dead: // pending first
			if y.Dead {
				return -1
			}
			return 1
		case x.pos().Less(y.pos()):
			return -1
		case y.pos().Less(x.pos()):
			return 1
		}
		return 0
	})
	o := rt.outbox
	o.mu.Lock()
	attempts := map[projector.MessagePos]*OutboxEntry{}
	for _, e := range o.mu.queues[ref.ID] {
		attempts[e.pos()] = e
	}
	for i := range out {
		e := &out[i]
		if q, ok := attempts[e.pos()]; ok && !e.Dead {
			e.Attempts, e.LastErr = q.Attempts, q.LastErr
		}
		e.body, e.since, e.answer = nil, time.Time{}, Reply{}
	}
	o.mu.Unlock()
	return out, nil
}

// DeadLetters lists at most n dead letters of every object after cursor
// in this node's snapshot, and the cursor of the next page (zero at the
// end).
func (rt *Runtime) DeadLetters(cursor projector.OutboxCursor, n int) ([]OutboxEntry, projector.OutboxCursor, error) {
	ms, next, err := rt.proj.DeadPage(cursor, n)
	if err != nil {
		return nil, cursor, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out := make([]OutboxEntry, len(ms))
	for i, m := range ms {
		e := newEntry(Ref{Class: m.Class, ID: m.ID}, m.Pos, m.Msg)
		e.Dead, e.LastErr, e.body = true, m.Dead, nil
		out[i] = *e
	}
	return out, next, nil
}

// eachDead calls fn with every dead letter in this node's snapshot, a
// page at a time, until fn returns false, ctx ends or the index does.
func (rt *Runtime) eachDead(ctx context.Context, fn func(OutboxEntry) (bool, error)) error {
	var cursor projector.OutboxCursor
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		es, next, err := rt.DeadLetters(cursor, 512)
		if err != nil {
			return err
		}
		for _, e := range es {
			if more, err := fn(e); err != nil || !more {
				return err
			}
		}
		if next == (projector.OutboxCursor{}) {
			return nil
		}
		cursor = next
	}
}

// DeadSenders lists at most n senders with dead letters in this node's
// snapshot (in a cluster, of the objects it ran; their owners list them
// exactly: Outbox).
func (rt *Runtime) DeadSenders(ctx context.Context, n int) ([]Ref, error) {
	var out []Ref
	seen := map[Ref]bool{}
	err := rt.eachDead(ctx, func(e OutboxEntry) (bool, error) {
		if !seen[e.Sender] {
			seen[e.Sender] = true
			out = append(out, e.Sender)
		}
		return len(out) < n, nil
	})
	return out, err
}

// RetryDead puts one dead letter back in its sender's outbox (a turn on
// the sender, on its owner), where it is delivered again with its first
// identity. A letter no longer dead is left alone.
func (rt *Runtime) RetryDead(ctx context.Context, e OutboxEntry) error {
	body, _ := json.Marshal(settleBody{Retry: true})
	cause := Cause{Caller: &Caller{Class: e.Sender.Class, ID: e.Sender.ID, Version: e.Version, Turn: e.Turn, Index: e.Index, Kind: log.CallerReply}}
	_, err := rt.calls.Call(ctx, e.Sender, "", body, rt.codec, cause)
	if err != nil {
		return fmt.Errorf("retry the dead letter %s v%d.%d.%d: %w", e.Sender, e.Version, e.Turn, e.Index, err)
	}
	return nil
}

// RepairOutbox activates ref, whose load hands its pending messages to
// this node's outbox: the sweep and the takeover of a dead node's objects
// call it for senders with pending messages.
func (rt *Runtime) RepairOutbox(ctx context.Context, ref Ref) error {
	_, err := rt.dispatch(ctx, ref, Cause{Via: ViaSystem, Method: "outbox repair"}, "outbox repair", nil, func(*Ctx, any) (any, error) { return nil, nil })
	return err
}

// AllDeadLetters lists at most n dead letters of every object in this
// node's snapshot (gateway.OutboxAdmin).
func (rt *Runtime) AllDeadLetters(ctx context.Context, n int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	if n <= 0 {
		return nil, nil
	}
	err := rt.eachDead(ctx, func(e OutboxEntry) (bool, error) {
		out = append(out, e)
		return len(out) < n, nil
	})
	return out, err
}

// RetryAllDead puts every dead letter this node's snapshot holds back in
// its sender's outbox, a page at a time, and reports how many
// (gateway.OutboxAdmin).
func (rt *Runtime) RetryAllDead(ctx context.Context) (int, error) {
	n := 0
	err := rt.eachDead(ctx, func(e OutboxEntry) (bool, error) {
		if err := rt.RetryDead(ctx, e); err != nil {
			return false, err
		}
		n++
		return true, nil
	})
	return n, err
}
