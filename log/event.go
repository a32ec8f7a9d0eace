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
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cause records why a turn ran: who asked, through which entry point.
type Cause struct {
	RequestID string `cbor:"1,keyasint,omitempty"`
	Principal string `cbor:"2,keyasint,omitempty"`
	Method    string `cbor:"3,keyasint,omitempty"` // RPC method, HTTP method and path, alarm name
	Via       Via    `cbor:"4,keyasint"`
}

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
		MaxMapPairs:       16,
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
		if len(t.Writes) > turnWritesMax {
			return bad("turn %d: %d writes", i, len(t.Writes))
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
