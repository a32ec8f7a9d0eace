package log

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// FormatVersion is the envelope format this code writes. Decode refuses
// any other value so that an old binary never misreads a newer event.
const FormatVersion = 1

// Limits that bound what an event may hold. They are checked on decode, so
// a hostile or corrupt message cannot make the decoder allocate without
// bound. The objects package enforces tighter per-turn limits before it
// ever builds an event.
const (
	eventTurnsMax  = 4096    // turns coalesced into one event
	turnWritesMax  = 1 << 16 // writes in one turn
	eventBytesMax  = 8 << 20 // encoded event; matches the server's payload cap
	causeStringMax = 1024    // request id, principal, method
)

// ID is an object's 32-byte identity. The objects package derives it; the log
// only needs it to build subjects and message ids.
type ID [32]byte

// String is the lowercase hex form used in subjects, URLs and logs.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// UnmarshalCBOR accepts exactly a 32-byte byte string. The default decoder
// would zero-pad a short one, truncate a long one and take an array of
// integers, so a corrupt id would decode as some other object's.
func (id *ID) UnmarshalCBOR(data []byte) error { return unmarshalBytes32(data, (*[32]byte)(id), "id") }

// Via says what kind of entry point ran a turn.
type Via uint8

const (
	ViaRPC Via = iota + 1
	ViaFetch
	ViaAlarm
	ViaWebSocket
	ViaSystem // restore, migration, and other operator actions
)

func (v Via) String() string {
	switch v {
	case ViaRPC:
		return "rpc"
	case ViaFetch:
		return "fetch"
	case ViaAlarm:
		return "alarm"
	case ViaWebSocket:
		return "websocket"
	case ViaSystem:
		return "system"
	}
	return fmt.Sprintf("via(%d)", uint8(v))
}

// Op is the kind of one storage write.
type Op uint8

const (
	OpPut Op = iota + 1
	OpDelete
	OpDeleteAll
	OpSetAlarm
	OpDeleteAlarm
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpDeleteAll:
		return "delete-all"
	case OpSetAlarm:
		return "set-alarm"
	case OpDeleteAlarm:
		return "delete-alarm"
	}
	if s, ok := sqlOpString(o); ok {
		return s
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cause records why a turn ran: who asked, through which entry point.
type Cause struct {
	RequestID string `cbor:"1,keyasint,omitempty"`
	Principal string `cbor:"2,keyasint,omitempty"`
	Method    string `cbor:"3,keyasint,omitempty"` // RPC method, HTTP method and path, alarm name
	Via       Via    `cbor:"4,keyasint"`
	// IdemKey is the request's Idempotency-Key, if it carried one.
	IdemKey string `cbor:"5,keyasint,omitempty"`
	// IdemHash is SHA-256 over what the keyed request asked (entry point,
	// method, body): a retry with the same key must ask the same. Empty or
	// 32 bytes.
	IdemHash []byte `cbor:"6,keyasint,omitempty"`
	// Outcome is the answer of a keyed turn, kept so that a retry with the
	// same key gets it again without running the turn.
	Outcome *Outcome `cbor:"7,keyasint,omitempty"`
	// Caller names the object whose call ran this turn (calls.go in
	// objects); nil for a turn a client, an alarm or an operator caused.
	// Keys 8-19 belong to calls between objects.
	Caller *Caller `cbor:"8,keyasint,omitempty"`
	// Code records, for a turn of a deployed (JavaScript) class, the code
	// version that ran it and what it observed, so it can be replayed
	// (code.go). Keys 20-29 of Cause belong to deployed classes.
	Code *CodeRecord `cbor:"20,keyasint,omitempty"`
	// TraceID is the W3C trace id (32 lowercase hex) of the request that
	// caused the turn, when it carried one or was sampled: a history row
	// links to its trace. Keys 30–39 are the console/metrics/traces range.
	TraceID string `cbor:"30,keyasint,omitempty"`
	// SpanID is the W3C span id (16 lowercase hex) of the append span of
	// this turn's event, set only when the turn was traced (sampled): the
	// projector's span for the event is its child, so the trace context
	// travels with the event itself, through the log and any replay of it
	// (objects/spans.go). Requires TraceID.
	SpanID string `cbor:"31,keyasint,omitempty"`
}

// Caller is the object that caused a turn by calling it. Version and Turn
// place the caller's turn in its own log: the caller's event of that
// version holds, at turn Turn, the call as Calls[Index].
type Caller struct {
	Class   string `cbor:"1,keyasint"`
	ID      ID     `cbor:"2,keyasint"`
	Version uint64 `cbor:"3,keyasint"`
	Turn    int    `cbor:"4,keyasint,omitempty"`
	Index   int    `cbor:"5,keyasint,omitempty"`
	// Kind says how the caller caused the turn: a synchronous call (0), a
	// durable message (Index is then the message's in the turn's Sends),
	// or the reply to one of the turn's messages.
	Kind CallerKind `cbor:"6,keyasint,omitempty"`
}

// CallerKind is how another object caused a turn.
type CallerKind uint8

const (
	CallerCall    CallerKind = iota // Stub.Call
	CallerMessage                   // Stub.Send
	CallerReply                     // the reply to a SendWithReply
)

// Message is one durable message a turn sends (Stub.Send): it exists only
// if the event holding the turn does. Its identity is (sender, version,
// turn, index in Sends).
type Message struct {
	Class  string `cbor:"1,keyasint"`
	ID     ID     `cbor:"2,keyasint"`
	Method string `cbor:"3,keyasint"`
	Body   []byte `cbor:"4,keyasint,omitempty"`
	// Reply is the sender's method that receives the target's answer
	// (SendWithReply); "" for none.
	Reply string `cbor:"5,keyasint,omitempty"`
	// Name is the target's name when the stub named it ("" for a unique
	// id), so an object first reached by a message knows its name.
	Name string `cbor:"6,keyasint,omitempty"`
}

// Settle names one of the object's own messages (the event version, turn
// and index in Sends that sent it) and what became of it.
type Settle struct {
	Version uint64 `cbor:"1,keyasint"`
	Turn    int    `cbor:"2,keyasint,omitempty"`
	Index   int    `cbor:"3,keyasint,omitempty"`
	// Dead, if set, is why the message went to the dead letters (its
	// last delivery error): it is no longer pending, and an operator may
	// put it back (Retry).
	Dead string `cbor:"4,keyasint,omitempty"`
	// Retry puts a dead letter back in the outbox.
	Retry bool `cbor:"5,keyasint,omitempty"`
}

// Call is one synchronous call a turn made to another object, recorded in
// the caller's turn whether it succeeded or not (the callee's own event
// holds what it did).
type Call struct {
	Class  string `cbor:"1,keyasint"`
	ID     ID     `cbor:"2,keyasint"`
	Method string `cbor:"3,keyasint"`
	// Error is the failed call's error code (objects' sentinel names:
	// "call_cycle", "timeout", ...); "" when the call answered.
	Error string `cbor:"4,keyasint,omitempty"`
}

// Limits of what a turn records of its calls.
const (
	TurnCallsMax       = 64  // calls recorded in one turn
	CallMethodBytesMax = 128 // a recorded call's method and error code
	TurnSendsMax       = 64  // durable messages one turn sends
	TurnSettlesMax     = 256 // messages one turn settles (an operator's retry of dead letters)
	MessageBytesMax    = 64 << 10
)

// Outcome is the answer one keyed turn gave. Events before idempotency keys
// existed have none; the fields are new keys of Cause, so old events decode
// (and hash) exactly as before.
type Outcome struct {
	Status int    `cbor:"1,keyasint"`           // HTTP status: 200, a fetch's own, a client error's, 500
	Code   string `cbor:"2,keyasint,omitempty"` // error code; "" for an answer
	// Body is the answer's bytes (RPC output, fetch body, error message)
	// when they fit OutcomeBodyBytesMax. A larger body is not kept: Body is
	// empty, BodyBytes its length and BodyHash its SHA-256.
	Body        []byte `cbor:"3,keyasint,omitempty"`
	ContentType string `cbor:"4,keyasint,omitempty"` // a fetch answer's Content-Type
	BodyBytes   int    `cbor:"5,keyasint,omitempty"`
	BodyHash    []byte `cbor:"6,keyasint,omitempty"`
}

// Kept reports whether the outcome's body was kept to be replayed.
func (o *Outcome) Kept() bool { return o.BodyBytes == 0 }

// Limits of what an idempotency record holds.
const (
	IdemKeyBytesMax     = 256      // an Idempotency-Key
	OutcomeBodyBytesMax = 64 << 10 // a recorded answer's body; larger ones keep only their hash
)

// Write is one storage mutation. Key is the storage key for put and delete,
// the alarm name for alarm ops ("" is the Durable Objects single alarm).
// At is the alarm's due time in Unix nanoseconds for OpSetAlarm.
type Write struct {
	Op    Op     `cbor:"1,keyasint"`
	Key   string `cbor:"2,keyasint,omitempty"`
	Value []byte `cbor:"3,keyasint,omitempty"`
	At    int64  `cbor:"4,keyasint,omitempty"`
}

// Turn is one handler invocation's committed write set.
type Turn struct {
	Cause  Cause   `cbor:"1,keyasint"`
	Writes []Write `cbor:"2,keyasint"`
	// Calls are the synchronous calls the turn made to other objects, in
	// order. Keys 3-9 belong to calls between objects.
	Calls []Call `cbor:"3,keyasint,omitempty"`
	// Sends are the durable messages the turn sent, in order.
	Sends []Message `cbor:"4,keyasint,omitempty"`
	// Settles record what became of this object's own earlier messages:
	// delivered (and, for a SendWithReply, the reply applied by this very
	// turn), dead-lettered, or put back from the dead letters. The
	// pending outbox of an object is its Sends minus its Settles, read
	// from its own log alone (objects/messages.go).
	Settles []Settle `cbor:"5,keyasint,omitempty"`
	// SQL is the turn's changes to the object's SQL database, in the
	// order they happened (sql.go). Events before SQL existed have none.
	SQL []SQLChange `cbor:"10,keyasint,omitempty"`
}

// Event is the durable record of one or more turns of one object. Version
// counts an object's events from 1 without gaps; PrevHash is the chain hash
// of the event before it (zero for version 1).
type Event struct {
	Format   uint8  `cbor:"1,keyasint"`
	Class    string `cbor:"2,keyasint"`
	ID       ID     `cbor:"3,keyasint"`
	Name     string `cbor:"4,keyasint,omitempty"`
	Version  uint64 `cbor:"5,keyasint"`
	Time     int64  `cbor:"6,keyasint"` // Unix nanoseconds
	Turns    []Turn `cbor:"7,keyasint"`
	PrevHash Hash   `cbor:"8,keyasint"`
}

// Hash is a link of an object's hash chain.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// UnmarshalCBOR accepts exactly a 32-byte byte string, as ID does.
func (h *Hash) UnmarshalCBOR(data []byte) error {
	return unmarshalBytes32(data, (*[32]byte)(h), "hash")
}

func unmarshalBytes32(data []byte, dst *[32]byte, what string) error {
	const majorByteString = 2
	if len(data) == 0 || data[0]>>5 != majorByteString {
		return fmt.Errorf("%s is not a byte string", what)
	}
	var b []byte
	if err := decMode.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("%s of %d bytes, want %d", what, len(b), len(dst))
	}
	copy(dst[:], b)
	return nil
}

// ChainHash is SHA-256 over the previous link and an event's canonical
// bytes: the link that the next event carries as PrevHash.
func ChainHash(prev Hash, canonical []byte) Hash {
	s := sha256.New()
	s.Write(prev[:])
	s.Write(canonical)
	var h Hash
	s.Sum(h[:0])
	return h
}

// ErrBadEvent is returned for bytes that are not a valid event.
var ErrBadEvent = errors.New("bad event")

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  turnWritesMax,
		MaxMapPairs:       32, // the largest struct, a checkpoint manifest, has 22 fields
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Encode returns the canonical (RFC 8949 §4.2 core deterministic) bytes of
// e. It validates first, so the log never holds an event Decode refuses.
func Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event %s v%d: %w", e.ID, e.Version, err)
	}
	if len(b) > eventBytesMax {
		return nil, fmt.Errorf("encode event %s v%d: %d bytes: %w", e.ID, e.Version, len(b), ErrTooLarge)
	}
	return b, nil
}

// Decode parses and validates an event. Any input, however malformed,
// yields an error wrapping ErrBadEvent rather than a panic.
func Decode(b []byte) (*Event, error) {
	if len(b) > eventBytesMax {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadEvent, len(b))
	}
	var e Event
	if err := decMode.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Validate checks the invariants every stored event satisfies.
func (e *Event) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadEvent, fmt.Sprintf(format, args...))
	}
	switch {
	case e.Format != FormatVersion:
		return bad("format %d, want %d", e.Format, FormatVersion)
	case !ValidClass(e.Class):
		return bad("class %q", e.Class)
	case e.Version == 0:
		return bad("version 0")
	case len(e.Turns) == 0 || len(e.Turns) > eventTurnsMax:
		return bad("%d turns", len(e.Turns))
	case len(e.Name) > causeStringMax:
		return bad("name of %d bytes", len(e.Name))
	case !utf8.ValidString(e.Name):
		// CBOR text strings are UTF-8 and Decode refuses invalid ones, so
		// Encode must too: the log may not hold an event nobody can read.
		return bad("name is not UTF-8")
	}
	for i, t := range e.Turns {
		if t.Cause.Via < ViaRPC || t.Cause.Via > ViaSystem {
			return bad("turn %d: via %d", i, t.Cause.Via)
		}
		if len(t.Cause.RequestID) > causeStringMax || len(t.Cause.Principal) > causeStringMax || len(t.Cause.Method) > causeStringMax {
			return bad("turn %d: cause too long", i)
		}
		if !utf8.ValidString(t.Cause.RequestID) || !utf8.ValidString(t.Cause.Principal) || !utf8.ValidString(t.Cause.Method) {
			return bad("turn %d: cause is not UTF-8", i)
		}
		if err := t.Cause.validateIdem(); err != nil {
			return bad("turn %d: %v", i, err)
		}
		if err := t.Cause.validateTrace(); err != nil {
			return bad("turn %d: %v", i, err)
		}
		if err := t.validateCalls(); err != nil {
			return bad("turn %d: %v", i, err)
		}
		if err := t.Cause.Code.validate(); err != nil {
			return bad("turn %d: %v", i, err)
		}
		if len(t.Writes) > turnWritesMax {
			return bad("turn %d: %d writes", i, len(t.Writes))
		}
		if len(t.SQL) > turnWritesMax {
			return bad("turn %d: %d SQL changes", i, len(t.SQL))
		}
		for j := range t.SQL {
			if err := t.SQL[j].normalize(); err != nil {
				return bad("turn %d SQL change %d: %v", i, j, err)
			}
		}
		for j, w := range t.Writes {
			if w.Op < OpPut || w.Op > OpDeleteAlarm {
				return bad("turn %d write %d: op %d", i, j, w.Op)
			}
			if w.Op != OpPut && len(w.Value) > 0 {
				return bad("turn %d write %d: %s with a value", i, j, w.Op)
			}
			if !utf8.ValidString(w.Key) {
				return bad("turn %d write %d: key is not UTF-8", i, j)
			}
		}
	}
	return nil
}

// validateCalls checks the calls a turn records and the caller its cause
// names.
func (t *Turn) validateCalls() error {
	if c := t.Cause.Caller; c != nil {
		switch {
		case !ValidClass(c.Class):
			return fmt.Errorf("caller class %q", c.Class)
		case c.Version == 0:
			return errors.New("caller version 0")
		case c.Turn < 0 || c.Turn >= eventTurnsMax || c.Index < 0 || c.Index >= TurnCallsMax:
			return fmt.Errorf("caller turn %d index %d", c.Turn, c.Index)
		case c.Kind > CallerReply:
			return fmt.Errorf("caller kind %d", c.Kind)
		}
	}
	if len(t.Sends) > TurnSendsMax {
		return fmt.Errorf("%d messages", len(t.Sends))
	}
	for j, m := range t.Sends {
		switch {
		case !ValidClass(m.Class):
			return fmt.Errorf("message %d: class %q", j, m.Class)
		case m.Method == "" || len(m.Method) > CallMethodBytesMax || len(m.Reply) > CallMethodBytesMax:
			return fmt.Errorf("message %d: method or reply of %d, %d bytes", j, len(m.Method), len(m.Reply))
		case !utf8.ValidString(m.Method) || !utf8.ValidString(m.Reply):
			return fmt.Errorf("message %d: method or reply is not UTF-8", j)
		case len(m.Body) > MessageBytesMax:
			return fmt.Errorf("message %d: body of %d bytes", j, len(m.Body))
		}
	}
	if len(t.Settles) > TurnSettlesMax {
		return fmt.Errorf("%d settled messages", len(t.Settles))
	}
	for j, s := range t.Settles {
		switch {
		case s.Version == 0 || s.Turn < 0 || s.Turn >= eventTurnsMax || s.Index < 0 || s.Index >= TurnSendsMax:
			return fmt.Errorf("settled message %d: version %d turn %d index %d", j, s.Version, s.Turn, s.Index)
		case len(s.Dead) > CallMethodBytesMax || !utf8.ValidString(s.Dead):
			return fmt.Errorf("settled message %d: error of %d bytes or not UTF-8", j, len(s.Dead))
		case s.Dead != "" && s.Retry:
			return fmt.Errorf("settled message %d: dead and retried", j)
		}
	}
	if len(t.Calls) > TurnCallsMax {
		return fmt.Errorf("%d calls", len(t.Calls))
	}
	for j, c := range t.Calls {
		switch {
		case !ValidClass(c.Class):
			return fmt.Errorf("call %d: class %q", j, c.Class)
		case len(c.Method) > CallMethodBytesMax || len(c.Error) > CallMethodBytesMax:
			return fmt.Errorf("call %d: method or error too long", j)
		case !utf8.ValidString(c.Method) || !utf8.ValidString(c.Error):
			return fmt.Errorf("call %d: method or error is not UTF-8", j)
		}
	}
	return nil
}

// validateIdem checks the idempotency fields of a cause.
func (c *Cause) validateIdem() error {
	switch {
	case len(c.IdemKey) > IdemKeyBytesMax:
		return fmt.Errorf("idempotency key of %d bytes", len(c.IdemKey))
	case !utf8.ValidString(c.IdemKey):
		return errors.New("idempotency key is not UTF-8")
	case c.IdemKey == "" && (len(c.IdemHash) > 0 || c.Outcome != nil):
		return errors.New("idempotency hash or outcome without a key")
	case len(c.IdemHash) != 0 && len(c.IdemHash) != sha256.Size:
		return fmt.Errorf("idempotency hash of %d bytes", len(c.IdemHash))
	}
	o := c.Outcome
	if o == nil {
		return nil
	}
	switch {
	case o.Status < 100 || o.Status > 999:
		return fmt.Errorf("outcome status %d", o.Status)
	case len(o.Body) > OutcomeBodyBytesMax:
		return fmt.Errorf("outcome body of %d bytes", len(o.Body))
	case len(o.Code) > causeStringMax || len(o.ContentType) > causeStringMax:
		return errors.New("outcome code or content type too long")
	case !utf8.ValidString(o.Code) || !utf8.ValidString(o.ContentType):
		return errors.New("outcome code or content type is not UTF-8")
	case o.BodyBytes < 0 || o.BodyBytes > 0 && (len(o.Body) > 0 || len(o.BodyHash) != sha256.Size):
		return errors.New("outcome body both kept and not kept")
	case o.BodyBytes == 0 && len(o.BodyHash) > 0:
		return errors.New("outcome body hash without a length")
	}
	return nil
}

// EncodeCause returns the canonical bytes of one cause, for stores that
// keep a keyed turn's record apart from its event (the projector's index).
func EncodeCause(c Cause) ([]byte, error) {
	if err := c.validateIdem(); err != nil {
		return nil, fmt.Errorf("encode cause: %w", err)
	}
	return encMode.Marshal(c)
}

// DecodeCause parses bytes from EncodeCause.
func DecodeCause(b []byte) (Cause, error) {
	var c Cause
	if err := decMode.Unmarshal(b, &c); err != nil {
		return Cause{}, fmt.Errorf("%w: cause: %w", ErrBadEvent, err)
	}
	if err := c.validateIdem(); err != nil {
		return Cause{}, fmt.Errorf("%w: cause: %w", ErrBadEvent, err)
	}
	return c, nil
}

// ValidClass reports whether s is a class name: [a-z][a-z0-9-]{0,62}.
// Class names are subject tokens, so this is also what keeps subjects sane.
func ValidClass(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// EncodeMessage encodes one durable message alone (the snapshot's outbox
// index keeps them).
func EncodeMessage(m Message) ([]byte, error) { return encMode.Marshal(m) }

// DecodeMessage parses bytes from EncodeMessage.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if err := decMode.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: message: %w", ErrBadEvent, err)
	}
	return m, nil
}

// CallerBefore reports whether a names a message sent before b's (the
// same sender's: version, then turn, then index).
func CallerBefore(a, b *Caller) bool {
	if a.Version != b.Version {
		return a.Version < b.Version
	}
	if a.Turn != b.Turn {
		return a.Turn < b.Turn
	}
	return a.Index < b.Index
}

// validateTrace checks the cause's trace context: a trace id of 32 and a
// span id of 16 lowercase hex digits, a span id only with a trace id.
func (c *Cause) validateTrace() error {
	switch {
	case c.TraceID != "" && !lowerHex(c.TraceID, 32):
		return fmt.Errorf("trace id %.40q is not 32 lowercase hex digits", c.TraceID)
	case c.SpanID != "" && !lowerHex(c.SpanID, 16):
		return fmt.Errorf("span id %.40q is not 16 lowercase hex digits", c.SpanID)
	case c.SpanID != "" && c.TraceID == "":
		return errors.New("span id without a trace id")
	}
	return nil
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
