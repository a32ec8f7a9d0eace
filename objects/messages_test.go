package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// inbox is a test class that sends and receives durable messages.
type inbox struct{}

type SendIn struct {
	To      string `json:"to"`
	N       int    `json:"n"`              // messages to send, numbered from First
	First   int    `json:"first"`          // number of the first
	Reply   bool   `json:"reply"`          // SendWithReply
	Fail    bool   `json:"fail,omitempty"` // fail the turn after sending
	InTx    bool   `json:"in_tx,omitempty"`
	TxFail  bool   `json:"tx_fail,omitempty"` // the transaction fails
	Method  string `json:"method,omitempty"`
	BodyLen int    `json:"body_len,omitempty"`
}

type Item struct {
	N   int    `json:"n"`
	Pad string `json:"pad,omitempty"`
}

func (*inbox) Send(c *Ctx, in SendIn) error {
	method := "take"
	if in.Method != "" {
		method = in.Method
	}
	send := func() error {
		for i := 0; i < in.N; i++ {
			item := Item{N: in.First + i, Pad: strings.Repeat("p", in.BodyLen)}
			stub := c.Object("inbox", in.To)
			var err error
			if in.Reply {
				err = stub.SendWithReply(method, item, "replied")
			} else {
				err = stub.Send(method, item)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if in.InTx {
		if err := c.Storage().Transaction(func(*Storage) error {
			if err := send(); err != nil {
				return err
			}
			if in.TxFail {
				return errors.New("the transaction fails")
			}
			return nil
		}); err != nil && !in.TxFail {
			return err
		}
		return c.Storage().Put("sent", []byte("1"))
	}
	if err := send(); err != nil {
		return err
	}
	if in.Fail {
		return Errorf(409, "failed", "the turn fails")
	}
	return nil
}

// inboxDown makes Take fail as an unavailable target would (retryable).
var inboxDown atomic.Bool

// Take appends the item's number to "got" and answers it doubled; an odd
// number over 1000 is refused.
func (*inbox) Take(c *Ctx, in Item) (int, error) {
	if inboxDown.Load() {
		return 0, fmt.Errorf("%w: the target is down", ErrUnavailable)
	}
	if in.N > 1000 && in.N%2 == 1 {
		return 0, Errorf(422, "odd", "odd %d", in.N)
	}
	got, _, err := GetJSON[[]int](c.Storage(), "got")
	if err != nil {
		return 0, err
	}
	return 2 * in.N, PutJSON(c.Storage(), "got", append(got, in.N))
}

// Replied appends the reply to "replies".
func (*inbox) Replied(c *Ctx, r Reply) error {
	got, _, err := GetJSON[[]Reply](c.Storage(), "replies")
	if err != nil {
		return err
	}
	return PutJSON(c.Storage(), "replies", append(got, r))
}

// Answered is how many delivered messages' Settles the activation holds,
// not yet written (settle.go).
func (*inbox) Answered(c *Ctx) (int, error) { return len(c.t.a.answered), nil }

func (*inbox) Read(c *Ctx, key string) (json.RawMessage, error) {
	v, ok, err := c.Storage().Get(key)
	if !ok {
		return json.RawMessage("null"), err
	}
	return v, err
}

type msgHarness struct {
	*harness
	settled atomic.Int64
	dead    atomic.Int64
}

func newMsgHarness(t *testing.T, opts ...harnessOpt) *msgHarness {
	return newMsgHarnessOn(t, startServer(t), opts...)
}

// newMsgHarnessOn starts a node with the inbox class on srv.
func newMsgHarnessOn(t *testing.T, srv *log.Server, opts ...harnessOpt) *msgHarness {
	m := &msgHarness{}
	m.harness = newHarnessOn(t, srv, append([]harnessOpt{func(c *Config) {
		c.Classes = append(c.Classes, Define("inbox", func() *inbox { return &inbox{} }))
		c.Hooks.Delivered = func(_ string, _ ID, dead bool) {
			m.settled.Add(1)
			if dead {
				m.dead.Add(1)
			}
		}
	}}, opts...)...)
	return m
}

func (m *msgHarness) call(name, method string, in any) ([]byte, error) {
	body, _ := json.Marshal(in)
	return m.rt.Call(context.Background(), m.ref("inbox", name), method, body, jsonCodec{}, Cause{})
}

func (m *msgHarness) read(name, key string, v any) {
	m.t.Helper()
	b, err := m.call(name, "read", key)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		m.t.Fatal(err)
	}
}

func (m *msgHarness) waitSettled(n int64) {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for m.settled.Load() < n {
		if time.Now().After(deadline) {
			m.t.Fatalf("%d messages settled, want %d", m.settled.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMessagesDeliveredInOrderWithReplies: messages from one sender to one
// target apply in send order; each reply comes back as a turn of the
// sender; a refusal comes back as the reply's error.
func TestMessagesDeliveredInOrderWithReplies(t *testing.T) {
	m := newMsgHarness(t)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 10, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1001, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(12)
	var got []int
	m.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9 10 1002]" {
		t.Fatalf("r took %v", got)
	}
	var replies []Reply
	m.read("s", "replies", &replies)
	if len(replies) != 12 || string(replies[0].Out) != "2" || string(replies[9].Out) != "20" {
		t.Fatalf("replies %+v", replies)
	}
	if e := replies[10].Error; e == nil || e.Code != "odd" || e.Status != 422 {
		t.Fatalf("reply to the refused 1001: %+v", replies[10])
	}
	// r's events name the sender and the message.
	rec, err := m.log.Last(context.Background(), "inbox", IDFromName("inbox", "r"))
	if err != nil {
		t.Fatal(err)
	}
	c := rec.Event.Turns[len(rec.Event.Turns)-1].Cause.Caller
	if c == nil || c.Kind != log.CallerMessage || c.ID != IDFromName("inbox", "s") || c.Index != 1 {
		t.Fatalf("r's last turn names %+v, want s's message 1", c)
	}
	var sent log.Message
	if err := m.log.Read(context.Background(), "inbox", IDFromName("inbox", "s"), 0, func(r log.Record) error {
		if r.Event.Version == c.Version {
			sent = r.Event.Turns[c.Turn].Sends[c.Index]
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if string(sent.Body) != `{"n":1002}` {
		t.Fatalf("the caller's position names the message %+v, want 1002's", sent)
	}
	waitFor(t, "an empty outbox", func() bool {
		out, err := m.rt.Outbox(context.Background(), m.ref("inbox", "s"))
		return err == nil && len(out) == 0
	})
}

// TestMessageRedeliveryAppliesOnce: delivering the same message again
// (as after a lost answer) is answered from the target's record.
func TestMessageRedeliveryAppliesOnce(t *testing.T) {
	m := newMsgHarness(t)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 7}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	e := &OutboxEntry{Sender: m.ref("inbox", "s"), Version: 1, Target: m.ref("inbox", "r"), Method: "take", body: []byte(`{"n":7}`)}
	for range 3 {
		if err := m.rt.outbox.attempt(e); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	m.read("r", "got", &got)
	if fmt.Sprint(got) != "[7]" {
		t.Fatalf("r took %v, want [7] once", got)
	}
}

// TestMessagesNotSentByFailedTurns: a failed turn, a failed transaction, and
// bad input send nothing.
func TestMessagesNotSentByFailedTurns(t *testing.T) {
	// The settle turn checked at the end comes SettleDelay after the
	// delivery; the default (10s) is as long as waitFor waits.
	m := newMsgHarness(t, func(c *Config) { c.SettleDelay = 200 * time.Millisecond })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, Fail: true}); err == nil {
		t.Fatal("the turn did not fail")
	}
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, InTx: true, TxFail: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   SendIn
		want error
	}{
		{SendIn{To: "r", N: 1, Method: "nope"}, ErrUnknownMethod},
		{SendIn{To: "", N: 1}, ErrInvalidName},
		{SendIn{To: "r", N: 1, BodyLen: MessageBytesMax}, ErrTooLarge},
		{SendIn{To: "r", N: TurnSendsMax + 1}, ErrTooLarge},
	} {
		if _, err := m.call("s", "send", c.in); !errors.Is(err, c.want) {
			t.Fatalf("%+v: %v, want %v", c.in, err, c.want)
		}
	}
	// A message the turn keeps goes, after those that were never sent.
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 5, InTx: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	var got []int
	m.read("r", "got", &got)
	if fmt.Sprint(got) != "[5]" {
		t.Fatalf("r took %v, want only [5]", got)
	}
	// v1: the failed transaction's turn; v2 the message; v3 its settle
	// (after Config.SettleDelay: no other event of s carries it).
	var rec log.Record
	waitFor(t, "s's settle", func() bool {
		var err error
		rec, err = m.log.Last(context.Background(), "inbox", IDFromName("inbox", "s"))
		return err == nil && rec.Event.Version == 3
	})
	if rec.Event.Version != 3 || len(rec.Event.Turns[0].Settles) != 1 || rec.Event.Turns[0].Settles[0].Version != 2 {
		t.Fatalf("s's last event %+v: want v3 settling the message of v2", rec.Event)
	}
}

// TestOutboxFull: messages to a target whose appends are stalled wait in
// the outbox, which lists them; past its bound Send fails with
// ErrOutboxFull and the turn sends nothing.
func TestOutboxFull(t *testing.T) {
	m := &msgHarness{}
	block := make(chan struct{})
	m.harness = newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("inbox", func() *inbox { return &inbox{} }))
		c.OutboxPendingMax = 3
		c.Hooks.BeforeAppend = func(class string, id ID, _ uint64) {
			if id == IDFromName("inbox", "r") {
				<-block // r's turns never commit while blocked: deliveries wait
			}
		}
	})
	defer close(block)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two messages pending", func() bool { out, _ := m.rt.Outbox(context.Background(), m.ref("inbox", "s")); return len(out) == 2 })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 3}); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("a third and fourth message: %v, want ErrOutboxFull (at most 3)", err)
	}
	out, _ := m.rt.Outbox(context.Background(), m.ref("inbox", "s"))
	if len(out) != 2 || out[0].Target.ID != IDFromName("inbox", "r") || out[0].Method != "take" || out[0].Version != 1 || out[1].Index != 1 {
		t.Fatalf("outbox %+v", out)
	}
}

// pendingOf is the sender's outbox as the snapshot holds it.
func (m *msgHarness) pendingOf(name string) []OutboxEntry {
	m.t.Helper()
	out, err := m.rt.Outbox(context.Background(), m.ref("inbox", name))
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// TestMessagesRedeliveredByANewNode: messages whose events were
// acknowledged but which were not delivered when their node stopped are
// delivered by the next node that loads the sender, in order, each applied
// and replied to once. Without the sender's log as the truth about its
// outbox, the second node has nothing to deliver.
func TestMessagesRedeliveredByANewNode(t *testing.T) {
	srv := startServer(t)
	h1 := newMsgHarnessOn(t, srv)
	inboxDown.Store(true) // the target refuses as an unavailable one would: retried
	defer inboxDown.Store(false)
	if _, err := h1.call("s", "send", SendIn{To: "r", N: 3, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	h1.flush()
	if n := len(h1.pendingOf("s")); n != 3 {
		t.Fatalf("%d messages pending on the first node, want 3", n)
	}
	h1.close()
	inboxDown.Store(false)
	h2 := newMsgHarnessOn(t, srv)
	if err := h2.rt.RepairOutbox(context.Background(), h2.ref("inbox", "s")); err != nil {
		t.Fatal(err)
	}
	h2.waitSettled(3)
	var got []int
	h2.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("r took %v, want [1 2 3]", got)
	}
	var replies []Reply
	h2.read("s", "replies", &replies)
	if len(replies) != 3 || string(replies[2].Out) != "6" {
		t.Fatalf("replies %+v, want 3", replies)
	}
	h2.flush()
	if out := h2.pendingOf("s"); len(out) != 0 {
		t.Fatalf("outbox holds %+v after delivery", out)
	}
}

// TestMessageRedeliveryAfterTheWindow: long after the idempotency window,
// redelivering a message (the one applied last, or an older one of the
// same sender) runs nothing, and its settle call (the reply) does nothing
// either: the message is settled. The target keeps no keyed record of a
// message's turn (only its sender's received record, which never
// expires).
func TestMessageRedeliveryAfterTheWindow(t *testing.T) {
	var skew atomic.Int64
	m := newMsgHarness(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		c.IdempotencySweepEvery = 10 * time.Millisecond
	})
	if _, err := m.call("s", "send", SendIn{To: "r", N: 3, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(3)
	m.flush()
	skew.Store(int64(72 * time.Hour))
	rid := IDFromName("inbox", "r")
	if _, ok, err := m.proj.Idem("inbox", rid, "strata-msg-"+IDFromName("inbox", "s").String()+"-1-0-2"); err != nil || ok {
		t.Fatalf("r's snapshot holds a keyed record of a message's turn (%v, %v): want only the received record", ok, err)
	}
	m.rt.Close(context.Background()) // no activation keeps an overlay: the snapshot answers
	m.harness.close()
	m2 := newMsgHarnessOn(t, m.srv, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	for _, index := range []int{2, 0, 2} { // the last applied, an older one, the last again
		e := &OutboxEntry{Sender: m2.ref("inbox", "s"), Version: 1, Index: index, Target: m2.ref("inbox", "r"), Method: "take", Reply: "replied",
			body: []byte(fmt.Sprintf(`{"n":%d}`, index+1))}
		if err := m2.rt.outbox.attempt(e); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	m2.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("r took %v, want [1 2 3]: a redelivery ran again", got)
	}
	var replies []Reply
	m2.read("s", "replies", &replies)
	if len(replies) != 3 {
		t.Fatalf("%d replies, want 3: a redelivered reply ran again", len(replies))
	}
}

// TestMessagesDeadLetteredAndRetried: a message whose delivery keeps
// failing goes to the dead letters, recorded in the sender's log (so it
// is listed by any node); an operator's retry delivers it with its first
// identity, and its reply comes then, once.
func TestMessagesDeadLetteredAndRetried(t *testing.T) {
	inboxDown.Store(true)
	defer inboxDown.Store(false)
	m := newMsgHarness(t, func(c *Config) { c.MessageBackoff = time.Millisecond })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 4, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	if m.dead.Load() != 1 {
		t.Fatalf("%d dead letters, want 1", m.dead.Load())
	}
	m.flush()
	out := m.pendingOf("s")
	if len(out) != 1 || !out[0].Dead || !strings.Contains(out[0].LastErr, "down") {
		t.Fatalf("outbox %+v, want one dead letter", out)
	}
	dead, _, err := m.rt.DeadLetters(projector.OutboxCursor{}, 10)
	if err != nil || len(dead) != 1 || dead[0].Sender.ID != IDFromName("inbox", "s") {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	var replies []Reply
	m.read("s", "replies", &replies)
	if len(replies) != 0 {
		t.Fatalf("a dead letter replied: %+v", replies)
	}
	inboxDown.Store(false)
	if err := m.rt.RetryDead(context.Background(), dead[0]); err != nil {
		t.Fatal(err)
	}
	if err := m.rt.RetryDead(context.Background(), dead[0]); err != nil { // a repeat: no longer dead
		t.Fatal(err)
	}
	m.waitSettled(2)
	var got []int
	m.read("r", "got", &got)
	m.read("s", "replies", &replies)
	if fmt.Sprint(got) != "[4]" || len(replies) != 1 || string(replies[0].Out) != "8" {
		t.Fatalf("after the retry r took %v, replies %+v", got, replies)
	}
	m.flush()
	if out := m.pendingOf("s"); len(out) != 0 {
		t.Fatalf("outbox %+v after the retry", out)
	}
}

// TestMessageRedeliveryAfterACheckpoint: a target loaded on a new node
// from its checkpoint (skipping the events that applied the messages),
// long after the idempotency window, still refuses a redelivery: the
// checkpoint carries, per sender, the last message applied. Without it
// the new node runs the message again.
func TestMessageRedeliveryAfterACheckpoint(t *testing.T) {
	var skew atomic.Int64
	clock := func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		c.Checkpoints = CheckpointConfig{Every: 2}
	}
	srv := startServer(t)
	m := newMsgHarnessOn(t, srv, clock)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(2)
	// r's later events, so the messages' events are behind its checkpoint.
	for i := range 4 {
		if _, err := m.call("r", "send", SendIn{To: "q", N: 1, First: 10 + i}); err != nil {
			t.Fatal(err)
		}
	}
	m.waitSettled(6)
	if err := m.rt.FlushCheckpoints(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.harness.close()
	skew.Store(int64(72 * time.Hour))
	m2 := newMsgHarnessOn(t, srv, clock)
	before := m2.log.Stats().Read
	e := &OutboxEntry{Sender: m2.ref("inbox", "s"), Version: 1, Index: 1, Target: m2.ref("inbox", "r"), Method: "take", Reply: "replied", body: []byte(`{"n":2}`)}
	if err := m2.rt.outbox.attempt(e); err != nil {
		t.Fatal(err)
	}
	if reads := m2.log.Stats().Read - before; reads >= 10 {
		t.Fatalf("r was loaded by reading %d events, not from its checkpoint", reads)
	}
	var got []int
	m2.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("r took %v, want [1 2]: the redelivery ran again on the node that loaded r from its checkpoint", got)
	}
}

// TestMessagesPendingAcrossACheckpoint: a sender loaded on a new node
// from its checkpoint, which skips the events that sent its messages,
// still delivers the pending ones (the checkpoint carries the outbox).
func TestMessagesPendingAcrossACheckpoint(t *testing.T) {
	every := func(c *Config) { c.Checkpoints = CheckpointConfig{Every: 2} }
	srv := startServer(t)
	m := newMsgHarnessOn(t, srv, every)
	inboxDown.Store(true)
	defer inboxDown.Store(false)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 3, First: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // s's later events, so the sending event is behind its checkpoint
		if _, err := m.call("s", "send", SendIn{To: "r", InTx: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.rt.FlushCheckpoints(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.harness.close()
	inboxDown.Store(false)
	m2 := newMsgHarnessOn(t, srv, every)
	before := m2.log.Stats().Read
	if err := m2.rt.RepairOutbox(context.Background(), m2.ref("inbox", "s")); err != nil {
		t.Fatal(err)
	}
	if reads := m2.log.Stats().Read - before; reads >= 4 {
		t.Fatalf("s was loaded by reading %d events, not from its checkpoint", reads)
	}
	m2.waitSettled(3)
	var got []int
	m2.read("r", "got", &got)
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("r took %v, want [1 2 3]", got)
	}
}

// TestRetriedDeadLetterKeepsOrder: a dead letter retried after a later
// message of its sender reached the same target is refused with
// message_superseded (its reply says so) instead of applying out of send
// order; the target applied each message at most once.
func TestRetriedDeadLetterKeepsOrder(t *testing.T) {
	inboxDown.Store(true)
	defer inboxDown.Store(false)
	m := newMsgHarness(t, func(c *Config) { c.MessageBackoff = time.Millisecond })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 1, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	inboxDown.Store(false)
	if _, err := m.call("s", "send", SendIn{To: "r", N: 1, First: 2, Reply: true}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(2)
	m.flush()
	dead, _, err := m.rt.DeadLetters(projector.OutboxCursor{}, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	if err := m.rt.RetryDead(context.Background(), dead[0]); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(3)
	var got []int
	m.read("r", "got", &got)
	var replies []Reply
	m.read("s", "replies", &replies)
	if fmt.Sprint(got) != "[2]" || len(replies) != 2 || replies[1].Error == nil || replies[1].Error.Code != "message_superseded" {
		t.Fatalf("r took %v, replies %+v; want [2], and the retried message refused as superseded", got, replies)
	}
}

// Name is the name the object knows itself by ("" for a unique id).
func (*inbox) Name(c *Ctx) (string, error) { return c.Name(), nil }

// TestMessageNamesItsTarget: an object first reached by a message to its
// name knows that name, as one first reached by a call does: its first
// event records it, and its handlers see it.
func TestMessageNamesItsTarget(t *testing.T) {
	m := newMsgHarness(t)
	if _, err := m.call("s", "send", SendIn{To: "fresh", N: 1, First: 1}); err != nil {
		t.Fatal(err)
	}
	m.waitSettled(1)
	evs := m.events("fresh")
	if len(evs) == 0 || evs[0].Name != "fresh" {
		t.Fatalf("the target's first event names %q, want %q (%d events)", func() string {
			if len(evs) == 0 {
				return ""
			}
			return evs[0].Name
		}(), "fresh", len(evs))
	}
	out, err := m.rt.Call(context.Background(), Ref{Class: "inbox", ID: IDFromName("inbox", "fresh")}, "name", nil, jsonCodec{}, Cause{})
	if err != nil || string(out) != `"fresh"` {
		t.Fatalf("the target calls itself %s (%v), want \"fresh\"", out, err)
	}
}
