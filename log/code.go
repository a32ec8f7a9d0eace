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
}

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
	return 64 + len(c.Seed) + len(c.Input) + len(c.InputHash) + len(c.Output) + len(c.OutputHash)
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
	}
	return nil
}
