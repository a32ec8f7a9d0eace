package objects

// Lazy settles of plain messages (docs/design-notes.md, "Durable
// messages"). Once the target of a plain Send has answered, the outbox
// makes its settle call on the sender as before, but the sender's
// activation runs no turn for it: it notes the Settle (answered), answers
// at once (on the outbox's goroutine when the sender is idle, as an inline
// turn runs: runInline), and the outbox lets the sender's next message
// leave. The Settle is written with the sender's next event (flush puts
// the noted Settles on the last turn of the event it starts), or, when no
// event comes within Config.SettleDelay, in one settle turn of its own
// with every Settle noted by then. In a busy sender the settles cost no
// event; in M1's shape they cost one event per SettleDelay per sender at
// most, instead of one per message.
//
// Invariants:
//  1. Pending is still the sender's Sends minus its Settles in its log. A
//     noted Settle is only memory: until an event holds it the message is
//     pending in the log, so a crash, a fenced append or a load elsewhere
//     redelivers it. The target answers such a redelivery from its
//     per-sender record (messages.go, answerReceived): with the recorded
//     answer if it is the last message it applied from the sender, else as
//     superseded, since a later one of the sender reached it; a plain
//     message's answer goes nowhere, so either settles it, applied once.
//     The outbox listing (Runtime.Outbox) leaves out a noted one: its
//     target has applied it.
//  2. Send order per sender: the next message still leaves only after the
//     target has answered the one before (its event acknowledged), which
//     is what the target's per-sender record relies on. Only the writing
//     of the Settle is deferred, not the answer.
//  3. The lazy answer passes no output gate: it says nothing about the
//     sender's state, only that the message is noted, and the message was
//     already applied (the target answered after its own event's ack).
//  4. An activation that ends on purpose writes what it noted first: a
//     stopping or released (moved) activation stages its noted Settles
//     before its last append, and an activation with noted Settles is not
//     idle, so eviction waits for the settle turn. Only a crash or a fenced
//     append loses them, which invariant 1 covers.
//  5. A SendWithReply's Settle is its reply turn's, and a dead letter's or
//     a retry's is a turn of its own, as before: those need a turn, and the
//     reply is what makes a reply exactly once.
//  6. Bounded: at most settlesNotedMax Settles are noted; the one that
//     reaches it writes them at once. A turn holds at most
//     log.TurnSettlesMax, and noted Settles go on an event only while its
//     bytes leave room for them.

import (
	"time"

	"github.com/strata-objects/strata/log"
)

const (
	// DefaultSettleDelay is Config.SettleDelay's default.
	DefaultSettleDelay = 10 * time.Second
	// settlesNotedMax bounds the Settles an activation holds unwritten.
	settlesNotedMax = 128
)

// settleCause is the cause of a turn that only settles messages.
var settleCause = Cause{Via: ViaSystem, Method: "outbox settle"}

// backgroundEvent reports whether no client waits on ev: each of its
// turns ran a durable message or its reply, or only settles messages.
// Such an event goes to the log with AppendBackground, which lets the
// appends clients wait on go first while the shard is busy.
func backgroundEvent(ev *log.Event) bool {
	for _, t := range ev.Turns {
		c := t.Cause
		switch {
		case c.Caller != nil && (c.Caller.Kind == log.CallerMessage || c.Caller.Kind == log.CallerReply):
		case c.Caller == nil && c.Via == settleCause.Via && c.Method == settleCause.Method:
		default:
			return false
		}
	}
	return len(ev.Turns) > 0
}

// noteAnswered takes a lazy settle call: the Settle of a delivered plain
// message is noted for the next event (a repeat, of a message no longer
// pending, is not), and the outbox is answered at once.
func (a *activation) noteAnswered(req *request) {
	s := *req.settle
	if a.settleable(s) && !a.noted(s) {
		a.answered = append(a.answered, s)
		switch {
		case len(a.answered) >= settlesNotedMax:
			a.carrySettles(true)
		case !a.settleArmed:
			if a.settleTimer == nil {
				a.settleTimer = time.NewTimer(a.rt.cfg.SettleDelay)
			} else {
				a.settleTimer.Reset(a.rt.cfg.SettleDelay)
			}
			a.settleArmed = true
		}
	}
	a.deliver(req, result{out: []byte(nil)})
}

// noted reports whether s is among the noted Settles.
func (a *activation) noted(s log.Settle) bool {
	for _, n := range a.answered {
		if n.Version == s.Version && n.Turn == s.Turn && n.Index == s.Index {
			return true
		}
	}
	return false
}

// carrySettles puts the noted Settles on the last turn of the next event
// (pending), as many as its room allows. With no next event, alone stages
// a settle turn to hold them; otherwise they wait.
func (a *activation) carrySettles(alone bool) {
	if len(a.answered) == 0 || a.broken != nil {
		return
	}
	if a.pending == nil {
		if !alone {
			return
		}
		a.stage(settleCause, nil, nil)
	}
	c := a.pending
	ti := len(c.turns) - 1
	last := &c.turns[ti]
	n := min(len(a.answered), log.TurnSettlesMax-len(last.Settles), (a.rt.maxEventBytes-eventEnvelopeBytes-c.bytes)/settleOverheadBytes)
	if n <= 0 {
		return // a full event: the next one takes them
	}
	last.Settles = append(last.Settles, a.answered[:n]...)
	c.bytes += n * settleOverheadBytes
	a.noteOutbox(c.version, ti, log.Turn{Settles: a.answered[:n]})
	a.answered = append(a.answered[:0], a.answered[n:]...)
	if len(a.answered) == 0 && a.settleArmed {
		a.settleTimer.Stop()
		a.settleArmed = false
	}
}

// settleDue runs when SettleDelay passed with Settles noted and no event
// to carry them: they get a turn of their own.
func (a *activation) settleDue() {
	a.settleArmed = false
	a.carrySettles(true)
	if len(a.answered) > 0 { // the next event was full: try again later
		a.settleTimer.Reset(a.rt.cfg.SettleDelay)
		a.settleArmed = true
	}
}
