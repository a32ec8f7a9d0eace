package log

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func fullEvent() *Event {
	return &Event{
		Format:  FormatVersion,
		Class:   "counter",
		ID:      ID{1, 2, 3, 31: 0xff},
		Name:    "alice",
		Version: 7,
		Time:    1_700_000_000_123_456_789,
		Turns: []Turn{
			{Cause: Cause{RequestID: "r1", Principal: "user:1", Method: "Increment", Via: ViaRPC}, Writes: []Write{{Op: OpPut, Key: "value", Value: []byte("1")}}},
			{Cause: Cause{Via: ViaAlarm, Method: "tick"}, Writes: []Write{
				{Op: OpDeleteAll}, {Op: OpDelete, Key: "k"}, {Op: OpSetAlarm, Key: "tick", At: 42}, {Op: OpDeleteAlarm, Key: ""},
			}},
		},
		PrevHash: Hash{9, 31: 1},
	}
}

// eventTable holds events that exercise every field and edge of the
// envelope.
func eventTable() map[string]*Event {
	manyWrites := make([]Write, 1000)
	for i := range manyWrites {
		manyWrites[i] = Write{Op: OpPut, Key: strings.Repeat("k", i%40), Value: bytes.Repeat([]byte{byte(i)}, i%7)}
	}
	manyTurns := make([]Turn, 300)
	for i := range manyTurns {
		manyTurns[i] = Turn{Cause: Cause{Via: Via(1 + i%5)}}
	}
	return map[string]*Event{
		"full":        fullEvent(),
		"minimal":     {Format: FormatVersion, Class: "a", Version: 1, Turns: []Turn{{Cause: Cause{Via: ViaFetch}}}},
		"no writes":   {Format: FormatVersion, Class: "kv", Version: 2, Turns: []Turn{{Cause: Cause{Via: ViaWebSocket}, Writes: []Write{}}}},
		"empty value": {Format: FormatVersion, Class: "kv", Version: 3, Turns: []Turn{{Cause: Cause{Via: ViaRPC}, Writes: []Write{{Op: OpPut, Key: "k", Value: []byte{}}}}}},
		"binary":      {Format: FormatVersion, Class: "kv", Version: 4, Turns: []Turn{{Cause: Cause{Via: ViaRPC}, Writes: []Write{{Op: OpPut, Key: "\u00e9\u6f22", Value: []byte{0, 0xff, 0xc3, 0x28}}}}}},
		"negative":    {Format: FormatVersion, Class: "kv", Version: 1 << 62, Time: -1, Turns: []Turn{{Cause: Cause{Via: ViaSystem}, Writes: []Write{{Op: OpSetAlarm, At: -5}}}}},
		"many writes": {Format: FormatVersion, Class: "big-class-1", Version: 9, Turns: []Turn{{Cause: Cause{Via: ViaRPC}, Writes: manyWrites}}},
		"many turns":  {Format: FormatVersion, Class: "chat", Version: 10, Turns: manyTurns},
		"long name":   {Format: FormatVersion, Class: "chat", Name: strings.Repeat("n", causeStringMax), Version: 1, Turns: []Turn{{Cause: Cause{Via: ViaRPC}}}},
		"keyed": {Format: FormatVersion, Class: "counter", Version: 5, Turns: []Turn{{
			Cause:  Cause{Via: ViaRPC, Method: "increment", IdemKey: strings.Repeat("k", IdemKeyBytesMax), IdemHash: bytes.Repeat([]byte{7}, 32), Outcome: &Outcome{Status: 200, Body: bytes.Repeat([]byte("x"), OutcomeBodyBytesMax)}},
			Writes: []Write{{Op: OpPut, Key: "n", Value: []byte("1")}},
		}}},
		"keyed, answer not kept": {Format: FormatVersion, Class: "counter", Version: 6, Turns: []Turn{{
			Cause: Cause{Via: ViaFetch, IdemKey: "k", IdemHash: bytes.Repeat([]byte{7}, 32), Outcome: &Outcome{Status: 201, ContentType: "text/plain", BodyBytes: OutcomeBodyBytesMax + 1, BodyHash: bytes.Repeat([]byte{9}, 32)}},
		}}},
		"keyed, error": {Format: FormatVersion, Class: "counter", Version: 7, Turns: []Turn{{
			Cause: Cause{Via: ViaRPC, IdemKey: "k", IdemHash: bytes.Repeat([]byte{7}, 32), Outcome: &Outcome{Status: 409, Code: "conflict", Body: []byte("no")}},
		}}},
	}
}

// normalize maps empty slices to nil: CBOR omits them, so they decode nil.
func normalize(e *Event) *Event {
	c := *e
	c.Turns = append([]Turn(nil), e.Turns...)
	for i := range c.Turns {
		ws := append([]Write(nil), c.Turns[i].Writes...)
		for j := range ws {
			if len(ws[j].Value) == 0 {
				ws[j].Value = nil
			}
		}
		c.Turns[i].Writes = ws
	}
	return &c
}

func TestEventRoundTrip(t *testing.T) {
	for name, e := range eventTable() {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			if b2, _ := Encode(e); !bytes.Equal(b, b2) {
				t.Fatal("encoding the same event twice gave different bytes")
			}
			d, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(d), normalize(e)) {
				t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", d, e)
			}
			if b3, _ := Encode(d); !bytes.Equal(b, b3) {
				t.Fatal("re-encoding a decoded event changed its bytes: the hash chain would break")
			}
		})
	}
}

// TestEncodingIsCanonical: map keys in the stored bytes are sorted integer
// keys (core deterministic encoding), whatever the struct's field order.
func TestEncodingIsCanonical(t *testing.T) {
	b, _ := Encode(fullEvent())
	var m map[int]cbor.RawMessage
	if err := cbor.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xa8 || b[1] != 0x01 { // map of 8 pairs, first key 1
		t.Fatalf("envelope starts % x", b[:2])
	}
	canon, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := canon.Marshal(m)
	if !bytes.Equal(again, b) {
		t.Fatal("stored bytes are not in core deterministic form")
	}
}

func TestEventValidate(t *testing.T) {
	cases := map[string]func(*Event){
		"format 0":           func(e *Event) { e.Format = 0 },
		"format 2":           func(e *Event) { e.Format = 2 },
		"class empty":        func(e *Event) { e.Class = "" },
		"class upper":        func(e *Event) { e.Class = "Counter" },
		"class digit first":  func(e *Event) { e.Class = "1x" },
		"class dot":          func(e *Event) { e.Class = "a.b" },
		"class wildcard":     func(e *Event) { e.Class = "a*" },
		"class too long":     func(e *Event) { e.Class = "a" + strings.Repeat("b", 63) },
		"version 0":          func(e *Event) { e.Version = 0 },
		"no turns":           func(e *Event) { e.Turns = nil },
		"too many turns":     func(e *Event) { e.Turns = make([]Turn, eventTurnsMax+1) },
		"name too long":      func(e *Event) { e.Name = strings.Repeat("n", causeStringMax+1) },
		"name not utf-8":     func(e *Event) { e.Name = "\xff" },
		"via 0":              func(e *Event) { e.Turns[0].Cause.Via = 0 },
		"via past system":    func(e *Event) { e.Turns[0].Cause.Via = ViaSystem + 1 },
		"request id long":    func(e *Event) { e.Turns[0].Cause.RequestID = strings.Repeat("r", causeStringMax+1) },
		"principal long":     func(e *Event) { e.Turns[0].Cause.Principal = strings.Repeat("p", causeStringMax+1) },
		"method long":        func(e *Event) { e.Turns[1].Cause.Method = strings.Repeat("m", causeStringMax+1) },
		"method not utf-8":   func(e *Event) { e.Turns[1].Cause.Method = "a\xc3" },
		"too many writes":    func(e *Event) { e.Turns[0].Writes = make([]Write, turnWritesMax+1) },
		"op 0":               func(e *Event) { e.Turns[0].Writes[0].Op = 0 },
		"op past last":       func(e *Event) { e.Turns[0].Writes[0].Op = OpDeleteAlarm + 1 },
		"delete with value":  func(e *Event) { e.Turns[1].Writes[1].Value = []byte("x") },
		"alarm with value":   func(e *Event) { e.Turns[1].Writes[2].Value = []byte("x") },
		"key not utf-8":      func(e *Event) { e.Turns[0].Writes[0].Key = "\xff\xfe" },
		"alarm name invalid": func(e *Event) { e.Turns[1].Writes[3].Key = "\x80" },
		"idem key long":      func(e *Event) { e.Turns[0].Cause.IdemKey = strings.Repeat("k", IdemKeyBytesMax+1) },
		"idem key not utf-8": func(e *Event) { e.Turns[0].Cause.IdemKey = "\xff" },
		"idem hash no key":   func(e *Event) { e.Turns[0].Cause.IdemHash = make([]byte, 32) },
		"outcome no key":     func(e *Event) { e.Turns[0].Cause.Outcome = &Outcome{Status: 200} },
		"idem hash short": func(e *Event) {
			e.Turns[0].Cause.IdemKey, e.Turns[0].Cause.IdemHash = "k", make([]byte, 31)
		},
		"outcome status 0": func(e *Event) {
			e.Turns[0].Cause.IdemKey, e.Turns[0].Cause.Outcome = "k", &Outcome{}
		},
		"outcome body long": func(e *Event) {
			e.Turns[0].Cause.IdemKey = "k"
			e.Turns[0].Cause.Outcome = &Outcome{Status: 200, Body: make([]byte, OutcomeBodyBytesMax+1)}
		},
		"outcome kept and not": func(e *Event) {
			e.Turns[0].Cause.IdemKey = "k"
			e.Turns[0].Cause.Outcome = &Outcome{Status: 200, Body: []byte("x"), BodyBytes: 9, BodyHash: make([]byte, 32)}
		},
	}
	if err := fullEvent().Validate(); err != nil {
		t.Fatalf("the base event is invalid: %v", err)
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			e := fullEvent()
			mutate(e)
			if err := e.Validate(); !errors.Is(err, ErrBadEvent) {
				t.Fatalf("Validate: %v, want ErrBadEvent", err)
			}
			if _, err := Encode(e); !errors.Is(err, ErrBadEvent) {
				t.Fatalf("Encode: %v, want ErrBadEvent", err)
			}
		})
	}
}

// TestEventBeforeIdempotencyKeys: an event written before causes had
// idempotency fields encodes to the same bytes now (so its chain hash
// holds) and decodes with none.
func TestEventBeforeIdempotencyKeys(t *testing.T) {
	type oldCause struct {
		RequestID string `cbor:"1,keyasint,omitempty"`
		Principal string `cbor:"2,keyasint,omitempty"`
		Method    string `cbor:"3,keyasint,omitempty"`
		Via       Via    `cbor:"4,keyasint"`
	}
	type oldTurn struct {
		Cause  oldCause `cbor:"1,keyasint"`
		Writes []Write  `cbor:"2,keyasint"`
	}
	type oldEvent struct {
		Format   uint8     `cbor:"1,keyasint"`
		Class    string    `cbor:"2,keyasint"`
		ID       ID        `cbor:"3,keyasint"`
		Name     string    `cbor:"4,keyasint,omitempty"`
		Version  uint64    `cbor:"5,keyasint"`
		Time     int64     `cbor:"6,keyasint"`
		Turns    []oldTurn `cbor:"7,keyasint"`
		PrevHash Hash      `cbor:"8,keyasint"`
	}
	old := oldEvent{Format: FormatVersion, Class: "counter", Version: 3, Time: 42, Turns: []oldTurn{{
		Cause:  oldCause{RequestID: "r", Principal: "p", Method: "increment", Via: ViaRPC},
		Writes: []Write{{Op: OpPut, Key: "n", Value: []byte("3")}},
	}}}
	b, err := encMode.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Decode(b)
	if err != nil {
		t.Fatalf("an old event no longer decodes: %v", err)
	}
	if c := e.Turns[0].Cause; c.IdemKey != "" || c.IdemHash != nil || c.Outcome != nil || c.Method != "increment" {
		t.Fatalf("old cause decoded as %+v", c)
	}
	if again, _ := Encode(e); !bytes.Equal(again, b) {
		t.Fatal("an old event re-encodes to other bytes: its chain hash would change")
	}
}

func TestCauseRecordRoundTrip(t *testing.T) {
	c := Cause{Via: ViaRPC, Method: "m", IdemKey: "k", IdemHash: bytes.Repeat([]byte{1}, 32), Outcome: &Outcome{Status: 200, Body: []byte("{}")}}
	b, err := EncodeCause(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCause(b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("DecodeCause = %+v, %v; want %+v", got, err, c)
	}
	if _, err := DecodeCause(b[:len(b)-1]); !errors.Is(err, ErrBadEvent) {
		t.Fatalf("truncated cause: %v, want ErrBadEvent", err)
	}
	if _, err := EncodeCause(Cause{Via: ViaRPC, Outcome: &Outcome{Status: 200}}); err == nil {
		t.Fatal("EncodeCause took an outcome without a key")
	}
}

// rawEvent mirrors Event with loose types, to build encodings Encode
// would never produce.
type rawEvent struct {
	Format   uint8  `cbor:"1,keyasint"`
	Class    string `cbor:"2,keyasint"`
	ID       any    `cbor:"3,keyasint"`
	Version  uint64 `cbor:"5,keyasint"`
	Turns    []Turn `cbor:"7,keyasint"`
	PrevHash any    `cbor:"8,keyasint"`
	Extra    int    `cbor:"9,keyasint,omitempty"`
}

func TestDecodeRefuses(t *testing.T) {
	turns := []Turn{{Cause: Cause{Via: ViaRPC}}}
	enc := func(r rawEvent) []byte {
		b, err := cbor.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid, _ := Encode(fullEvent())
	cases := map[string][]byte{
		"empty":          {},
		"not a map":      {0x01},
		"trailing bytes": append(append([]byte{}, valid...), 0x00),
		"truncated":      valid[:len(valid)-1],
		"short id":       enc(rawEvent{Format: 1, Class: "kv", ID: []byte{1, 2, 3}, Version: 1, Turns: turns, PrevHash: make([]byte, 32)}),
		"long id":        enc(rawEvent{Format: 1, Class: "kv", ID: make([]byte, 33), Version: 1, Turns: turns, PrevHash: make([]byte, 32)}),
		"id as array":    enc(rawEvent{Format: 1, Class: "kv", ID: make([]int, 32), Version: 1, Turns: turns, PrevHash: make([]byte, 32)}),
		"short hash":     enc(rawEvent{Format: 1, Class: "kv", ID: make([]byte, 32), Version: 1, Turns: turns, PrevHash: make([]byte, 31)}),
		"unknown field":  enc(rawEvent{Format: 1, Class: "kv", ID: make([]byte, 32), Version: 1, Turns: turns, PrevHash: make([]byte, 32), Extra: 1}),
		"invalid":        enc(rawEvent{Format: 1, Class: "KV", ID: make([]byte, 32), Version: 1, Turns: turns, PrevHash: make([]byte, 32)}),
		"duplicate key":  {0xa2, 0x01, 0x01, 0x01, 0x01},
		"indefinite":     {0xbf, 0x01, 0x01, 0xff},
		"tag":            {0xc0, 0x61, 0x61},
		"huge array":     {0xa1, 0x07, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"too large":      make([]byte, eventBytesMax+1),
	}
	// The same loose struct with a proper id decodes: the cases above fail
	// for the reason they name.
	if _, err := Decode(enc(rawEvent{Format: 1, Class: "kv", ID: make([]byte, 32), Version: 1, Turns: turns, PrevHash: make([]byte, 32)})); err != nil {
		t.Fatalf("control encoding: %v", err)
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if e, err := Decode(b); !errors.Is(err, ErrBadEvent) {
				t.Fatalf("Decode: %+v, %v; want ErrBadEvent", e, err)
			}
		})
	}
}

func TestChainHash(t *testing.T) {
	b, _ := Encode(fullEvent())
	h := ChainHash(Hash{}, b)
	if h == ChainHash(Hash{1}, b) {
		t.Fatal("the previous link does not change the hash")
	}
	flipped := append([]byte(nil), b...)
	flipped[len(flipped)-1] ^= 1
	if h == ChainHash(Hash{}, flipped) {
		t.Fatal("a flipped bit does not change the hash")
	}
	r := Record{Data: b, Event: fullEvent()}
	if r.Hash() != ChainHash(fullEvent().PrevHash, b) {
		t.Fatal("Record.Hash does not chain from the event's PrevHash")
	}
}

// FuzzDecode: no input panics the decoder or escapes ErrBadEvent, and
// whatever decodes encodes to bytes that decode to an equal event.
func FuzzDecode(f *testing.F) {
	for _, e := range eventTable() {
		b, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 2<<10 {
			continue // large seeds make the fuzzer spend its time minimizing
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	for _, garbage := range [][]byte{
		{}, {0x00}, {0xa1, 0x01, 0x01}, {0xff}, {0xbf, 0xff},
		bytes.Repeat([]byte{0x9f}, 64), bytes.Repeat([]byte{0xa1}, 64),
		{0xa8, 0x01, 0x01, 0x02, 0x61, 0x61, 0x03, 0x58, 0x20},
		[]byte("not cbor at all"),
	} {
		f.Add(garbage)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error does not wrap ErrBadEvent: %v", err)
			}
			return
		}
		b, err := Encode(e)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		e2, err := Decode(b)
		if err != nil {
			t.Fatalf("a re-encoded event does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(e), normalize(e2)) {
			t.Fatalf("decode, encode, decode changed the event:\n%+v\n%+v", e, e2)
		}
		if b2, _ := Encode(e2); !bytes.Equal(b, b2) {
			t.Fatal("canonical bytes are not a fixed point")
		}
	})
}

// TestDecodeErrorKeepsCause: a malformed event is ErrBadEvent, and the
// decoder's own error stays reachable with errors.As (it was formatted
// with %v once, and lost).
func TestDecodeErrorKeepsCause(t *testing.T) {
	_, err := Decode([]byte{0xa1, 0x01}) // a map missing its value
	if !errors.Is(err, ErrBadEvent) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("decode of a truncated map: %v; want ErrBadEvent and io.ErrUnexpectedEOF", err)
	}
}
