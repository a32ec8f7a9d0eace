package log

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// CodeRecord is what a turn of a deployed class (a JavaScript class, see
// the jsclass package) records beside its writes: the class version whose
// code ran it, and everything the turn observed that replay must give back
// to reproduce it (the turn's clock and the seed of its random numbers),
// with its input and its answer so that new code can be run against the
// same request and compared. Events without one decode as before.
type CodeRecord struct {
	// ClassVersion is the deployed version of the class that ran the turn.
	ClassVersion uint64 `cbor:"1,keyasint"`
	// Time is the turn's clock in Unix milliseconds: Date.now() answers it
	// for the whole turn (as in Cloudflare Workers, time does not advance
	// while code runs).
	Time int64 `cbor:"2,keyasint,omitempty"`
	// Seed seeds the turn's random numbers (Math.random, crypto.*); 32 bytes.
	Seed []byte `cbor:"3,keyasint,omitempty"`
	// Input is what the entry point was given (RPC arguments as JSON, a
	// fetch request, a WebSocket message, an alarm's info), when it fits
	// CodeInputBytesMax; otherwise empty, with InputBytes and InputHash.
	Input      []byte `cbor:"4,keyasint,omitempty"`
	InputBytes int    `cbor:"5,keyasint,omitempty"`
	InputHash  []byte `cbor:"6,keyasint,omitempty"`
	// Output is the turn's answer (RPC result as JSON, a fetch response)
	// under the same rule.
	Output      []byte `cbor:"7,keyasint,omitempty"`
	OutputBytes int    `cbor:"8,keyasint,omitempty"`
	OutputHash  []byte `cbor:"9,keyasint,omitempty"`
	// Calls are the answers of the calls to other objects the turn made
	// (env.X.get(id).method()), in order: replay gives them back instead
	// of calling again. The calls themselves (class, id, method) are in
	// the turn's log.Turn.Calls.
	Calls []CodeCall `cbor:"10,keyasint,omitempty"`
	// Continued marks a part of a turn that a call split (a call is a
	// commit point: the writes before it are staged as their own part);
	// the turn's last part carries the full record, with Continued false.
	Continued bool `cbor:"11,keyasint,omitempty"`
}

// CodeCall is the answer a turn's call to another object got: its output
// (JSON) under the rule of CodeRecord.Output, or its error's code, status
// and message.
type CodeCall struct {
	Output      []byte `cbor:"1,keyasint,omitempty"`
	OutputBytes int    `cbor:"2,keyasint,omitempty"`
	OutputHash  []byte `cbor:"3,keyasint,omitempty"`
	Code        string `cbor:"4,keyasint,omitempty"` // "" when the call answered
	Status      int    `cbor:"5,keyasint,omitempty"`
	Message     string `cbor:"6,keyasint,omitempty"`
	// InputHash is SHA-256 over the call's input: replay reports new code
	// that calls with other arguments.
	InputHash []byte `cbor:"7,keyasint,omitempty"`
	// Refused: the call was refused before it left (a cycle, an unknown
	// class, ...), so the turn's log.Turn.Calls does not list it: replay
	// pairs the other answers with the listed calls in order.
	Refused bool `cbor:"8,keyasint,omitempty"`
}

// Limits of the call answers a CodeRecord keeps.
const (
	CodeCallsMax        = 1024     // answers one record keeps; a turn that made more is not replayable
	CodeCallsBytesMax   = 64 << 10 // outputs kept whole in one record; later ones keep length and hash
	CodeCallMessageMax  = 1 << 10  // an error message kept
	codeCallOverheadMax = 32
)

// CodeInputBytesMax bounds the input or output a CodeRecord keeps whole;
// a larger one keeps its length and SHA-256 only.
const CodeInputBytesMax = 16 << 10

// KeepBytes returns b as a CodeRecord keeps it: whole, or its length and
// hash.
func KeepBytes(b []byte) (kept []byte, n int, hash []byte) {
	if len(b) <= CodeInputBytesMax {
		return b, 0, nil
	}
	s := sha256.Sum256(b)
	return nil, len(b), s[:]
}

// Size is what the record adds to an event, roughly.
func (c *CodeRecord) Size() int {
	if c == nil {
		return 0
	}
	n := 64 + len(c.Seed) + len(c.Input) + len(c.InputHash) + len(c.Output) + len(c.OutputHash)
	for _, k := range c.Calls {
		n += codeCallOverheadMax + len(k.Output) + len(k.OutputHash) + len(k.InputHash) + len(k.Code) + len(k.Message)
	}
	return n
}

func (c *CodeRecord) validate() error {
	if c == nil {
		return nil
	}
	switch {
	case c.ClassVersion == 0:
		return errors.New("code record without a class version")
	case len(c.Seed) != 0 && len(c.Seed) != 32:
		return fmt.Errorf("code record seed of %d bytes", len(c.Seed))
	case len(c.Input) > CodeInputBytesMax || len(c.Output) > CodeInputBytesMax:
		return errors.New("code record input or output too long")
	case c.InputBytes < 0 || c.OutputBytes < 0:
		return errors.New("code record negative length")
	case len(c.InputHash) != 0 && len(c.InputHash) != sha256.Size,
		len(c.OutputHash) != 0 && len(c.OutputHash) != sha256.Size:
		return errors.New("code record hash of the wrong size")
	case len(c.Calls) > CodeCallsMax:
		return fmt.Errorf("code record of %d call answers", len(c.Calls))
	}
	kept := 0
	for _, k := range c.Calls {
		kept += len(k.Output)
		switch {
		case len(k.Output) > CodeInputBytesMax || kept > CodeCallsBytesMax:
			return errors.New("code record call answers too long")
		case k.OutputBytes < 0:
			return errors.New("code record call answer of negative length")
		case len(k.OutputHash) != 0 && len(k.OutputHash) != sha256.Size,
			len(k.InputHash) != 0 && len(k.InputHash) != sha256.Size:
			return errors.New("code record call answer hash of the wrong size")
		case len(k.Code) > CallMethodBytesMax || len(k.Message) > CodeCallMessageMax:
			return errors.New("code record call error too long")
		}
	}
	return nil
}
