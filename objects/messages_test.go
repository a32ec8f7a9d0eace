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

// Take appends the item's number to "got" and answers it doubled; an odd
// number over 1000 is refused.
func (*inbox) Take(c *Ctx, in Item) (int, error) {
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

func newMsgHarness(t *testing.T) *msgHarness {
	m := &msgHarness{}
	m.harness = newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("inbox", func() *inbox { return &inbox{} }))
		c.Hooks.Delivered = func(_ string, _ ID, dead bool) {
			m.settled.Add(1)
			if dead {
				m.dead.Add(1)
			}
		}
	})
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
	waitFor(t, "an empty outbox", func() bool { out, err := m.rt.Outbox(m.ref("inbox", "s")); return err == nil && len(out) == 0 })
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
	m := newMsgHarness(t)
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
	rec, err := m.log.Last(context.Background(), "inbox", IDFromName("inbox", "s"))
	if err != nil {
		t.Fatal(err)
	}
	// v1: the failed transaction's turn; v2 the message; v3 its settle.
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
	waitFor(t, "two messages pending", func() bool { out, _ := m.rt.Outbox(m.ref("inbox", "s")); return len(out) == 2 })
	if _, err := m.call("s", "send", SendIn{To: "r", N: 2, First: 3}); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("a third and fourth message: %v, want ErrOutboxFull (at most 3)", err)
	}
	out, _ := m.rt.Outbox(m.ref("inbox", "s"))
	if len(out) != 2 || out[0].Target.ID != IDFromName("inbox", "r") || out[0].Method != "take" || out[0].Version != 1 || out[1].Index != 1 {
		t.Fatalf("outbox %+v", out)
	}
}
