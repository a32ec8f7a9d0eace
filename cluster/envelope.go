package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// The forwarding envelope: one request for one object's turn, as it
// travels from the node that received it to the object's owner. It is
// generic over entry points (Kind): RPC calls, fetches, alarm fires, the
// alarm operations and WebSocket events (the socket stays on the receiving
// node's gateway; what the owner's turns send travels back as wsFrames,
// websocket.go). CBOR, like events: nothing inside the cluster speaks
// JSON.

// Kind says which entry point an Envelope runs.
type Kind uint8

const (
	KindCall        Kind = iota + 1 // Call: Method, Body
	KindFetch                       // Fetch: HTTP
	KindAlarm                       // an alarm fire: Alarm
	KindGetAlarms                   // GetAlarms
	KindSetAlarm                    // SetAlarmAt: AlarmName, At
	KindDeleteAlarm                 // DeleteAlarmAt: AlarmName
	KindWSConnect                   // WebSocketConnect: HTTP, Sock, EdgeRun
	KindWSMessage                   // WebSocketMessage: Sock, EdgeRun, OwnerRun, Body, Binary
	KindWSClose                     // WebSocketClose: Sock, EdgeRun, OwnerRun, Code, Reason
	KindWSError                     // WebSocketError: Sock, EdgeRun, OwnerRun, Reason (the error's text)
	KindLive                        // Liveness: IDs, sent to a node, not routed to an owner
	KindOutbox                      // Outbox
	KindDeadSenders                 // the senders with dead letters in a node's snapshot: sent to a node, not routed
)

// Envelope is a forwarded request.
type Envelope struct {
	Kind   Kind          `cbor:"1,keyasint"`
	Class  string        `cbor:"2,keyasint"`
	ID     log.ID        `cbor:"3,keyasint"`
	Name   string        `cbor:"4,keyasint,omitempty"`
	Cause  objects.Cause `cbor:"5,keyasint"`
	Method string        `cbor:"6,keyasint,omitempty"` // KindCall
	Body   []byte        `cbor:"7,keyasint,omitempty"` // KindCall, KindFetch
	HTTP   *HTTPRequest  `cbor:"8,keyasint,omitempty"` // KindFetch
	Alarm  *AlarmFire    `cbor:"9,keyasint,omitempty"` // KindAlarm
	// AlarmName and At: KindSetAlarm, KindDeleteAlarm.
	AlarmName string `cbor:"10,keyasint,omitempty"`
	At        int64  `cbor:"11,keyasint,omitempty"` // unix nanoseconds
	From      string `cbor:"12,keyasint"`           // the forwarding node
	// WebSocket events: the socket is Sock on the forwarding node's run
	// EdgeRun; OwnerRun is the owner's run that accepted it (a restarted
	// owner no longer holds it). A run is a node process's start time in
	// unix nanoseconds.
	Sock     uint64 `cbor:"13,keyasint,omitempty"`
	EdgeRun  int64  `cbor:"14,keyasint,omitempty"`
	OwnerRun int64  `cbor:"15,keyasint,omitempty"`
	Binary   bool   `cbor:"16,keyasint,omitempty"` // KindWSMessage: a binary frame
	Code     int    `cbor:"17,keyasint,omitempty"` // KindWSClose
	Reason   string `cbor:"18,keyasint,omitempty"` // KindWSClose, KindWSError
	// Chain: KindCall or KindFetch from another object's turn (a stub's
	// call or fetch), the ids of the objects waiting on it
	// (objects.CallChain), so the owner refuses a cycle.
	Chain []log.ID `cbor:"30,keyasint,omitempty"`
	// IDs: KindLive, the objects of Class the node is asked about.
	IDs []log.ID `cbor:"31,keyasint,omitempty"`

	// Not sent: the receiving node's own handles, used when it runs the
	// request itself.
	codec objects.Codec
	req   *http.Request
	conn  objects.SocketConn // KindWSConnect run here: the gateway's socket
}

// HTTPRequest is what a Fetch handler sees of the request.
type HTTPRequest struct {
	Method string      `cbor:"1,keyasint"`
	URL    string      `cbor:"2,keyasint"`
	Host   string      `cbor:"3,keyasint,omitempty"`
	Header http.Header `cbor:"4,keyasint,omitempty"`
}

// AlarmFire is an alarm fire's objects.AlarmInfo.
type AlarmFire struct {
	Name        string `cbor:"1,keyasint,omitempty"`
	ScheduledAt int64  `cbor:"2,keyasint"`
	RetryCount  int    `cbor:"3,keyasint,omitempty"`
}

func (e *Envelope) ref() objects.Ref { return objects.Ref{Class: e.Class, ID: e.ID, Name: e.Name} }

// Reply is the owner's answer.
type Reply struct {
	Out    []byte               `cbor:"1,keyasint,omitempty"` // KindCall's output
	Resp   *objects.Response    `cbor:"2,keyasint,omitempty"` // KindFetch
	Alarms map[string]time.Time `cbor:"3,keyasint,omitempty"` // KindGetAlarms
	OK     bool                 `cbor:"4,keyasint,omitempty"` // KindDeleteAlarm: it was set
	Err    *WireError           `cbor:"5,keyasint,omitempty"`
	// KindWSConnect: the socket's id on the node that ran the turn, that
	// node and its run.
	Socket objects.SocketID `cbor:"6,keyasint,omitempty"`
	Node   string           `cbor:"7,keyasint,omitempty"`
	Run    int64            `cbor:"8,keyasint,omitempty"`
	At     int64            `cbor:"9,keyasint,omitempty"` // KindSetAlarm: the time set, unix nanoseconds
	// Replayed: the owner answered from the request's key's record.
	Replayed bool `cbor:"10,keyasint,omitempty"`
	// Live: KindLive, each of the envelope's IDs' life on the node.
	Live []objects.Liveness `cbor:"11,keyasint,omitempty"`
	// Outbox: KindOutbox, the object's pending messages and dead letters.
	Outbox []objects.OutboxEntry `cbor:"12,keyasint,omitempty"`
	// Senders: KindDeadSenders.
	Senders []objects.Ref `cbor:"13,keyasint,omitempty"`
}

// WireError is an error as it crosses nodes: a code that maps back to the
// sentinel the callers branch on, and the message.
type WireError struct {
	Code     string `cbor:"1,keyasint"`
	Message  string `cbor:"2,keyasint"`
	Status   int    `cbor:"3,keyasint,omitempty"` // client errors
	Class    string `cbor:"4,keyasint,omitempty"` // handler errors
	Method   string `cbor:"5,keyasint,omitempty"`
	Panicked bool   `cbor:"6,keyasint,omitempty"`
}

// errNotOwner: the receiving node does not own the object in its view;
// nothing ran.
var errNotOwner = errors.New("cluster: this node does not own the object")

// wireErrors maps sentinels to codes, in the order they are tested (a
// handler error wrapping ErrTooLarge reports ErrTooLarge, as the gateway's
// table does).
var wireErrors = []struct {
	err  error
	code string
}{
	{objects.ErrInvalidClass, "invalid_class"},
	{objects.ErrInvalidName, "invalid_name"},
	{objects.ErrInvalidID, "invalid_id"},
	{objects.ErrInvalidKey, "invalid_key"},
	{objects.ErrBadInput, "bad_input"},
	{objects.ErrBadRange, "bad_range"},
	{objects.ErrTooLarge, "too_large"},
	{objects.ErrUnknownClass, "unknown_class"},
	{objects.ErrUnknownMethod, "unknown_method"},
	{objects.ErrCallCycle, "call_cycle"},
	{objects.ErrCallDepth, "call_depth"},
	{objects.ErrCallInTransaction, "call_in_transaction"},
	{objects.ErrOutboxFull, "outbox_full"},
	{objects.ErrStaleAlarm, "stale_alarm"},
	{objects.ErrInvalidIdempotencyKey, "invalid_idempotency_key"},
	{objects.ErrIdempotencyKeyReused, "idempotency_key_reused"},
	{objects.ErrOutcomeNotKept, "idempotency_outcome_not_kept"},
	{objects.ErrFenced, "fenced"},
	{objects.ErrMoved, "moved"},
	{errNotOwner, "not_owner"},
	{errSocketLost, "socket_lost"},
	{objects.ErrSocketClosed, "socket_closed"},
	{objects.ErrOverloaded, "overloaded"},
	{objects.ErrUnavailable, "unavailable"},
	{objects.ErrClosed, "closed"},
	{context.DeadlineExceeded, "timeout"},
	{context.Canceled, "canceled"},
}

func toWire(err error) *WireError {
	if err == nil {
		return nil
	}
	w := &WireError{Code: "internal", Message: err.Error()}
	var ce *objects.ClientError
	if errors.As(err, &ce) {
		w.Code, w.Status, w.Message = "client", ce.Status, ce.Message
		w.Class = ce.Code
		return w
	}
	for _, row := range wireErrors {
		if errors.Is(err, row.err) {
			w.Code = row.code
			return w
		}
	}
	var he *objects.HandlerError
	if errors.As(err, &he) {
		w.Code, w.Class, w.Method, w.Panicked = "handler", he.Class, he.Method, he.Panicked
		w.Message = he.Err.Error()
	}
	return w
}

// remoteError keeps the owner's message and unwraps to the sentinel.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (w *WireError) err() error {
	if w == nil {
		return nil
	}
	switch w.Code {
	case "client":
		return &objects.ClientError{Status: w.Status, Code: w.Class, Message: w.Message}
	case "handler":
		return &objects.HandlerError{Class: w.Class, Method: w.Method, Err: errors.New(w.Message), Panicked: w.Panicked}
	}
	for _, row := range wireErrors {
		if row.code == w.Code {
			return &remoteError{msg: w.Message, sentinel: row.err}
		}
	}
	return fmt.Errorf("on the owner: %s", w.Message)
}

func encode(v any) ([]byte, error) { return cbor.Marshal(v) }

func decode(data []byte, v any) error { return cbor.Unmarshal(data, v) }
