package log

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A message on an object's subject that is not the next valid event of
// that object's chain (DESIGN.md, "Security model"): bytes that do not
// decode, an event of another object, or a well-formed event whose version
// or PrevHash does not follow the event before it. Only Strata should
// publish there, so such a message is a forgery or damage; readers report
// it by stream sequence and go on with other objects, never retry it.

// ErrBrokenChain: an event decodes but is not the next link of its
// object's chain. It is an ErrBadEvent too.
var ErrBrokenChain = fmt.Errorf("%w: not the next link of the object's hash chain", ErrBadEvent)

// CorruptError is a message on a log subject that is not a valid event of
// that object's chain: which message, and what is wrong with it (Err wraps
// ErrBadEvent, and ErrBrokenChain for a link that does not follow).
type CorruptError struct {
	Stream  string
	Seq     uint64
	Subject string
	Err     error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("log: %s sequence %d (%s): %v", e.Stream, e.Seq, e.Subject, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Object is the class and id the corrupt message's subject names, if it
// is an object subject.
func (e *CorruptError) Object() (class string, id ID, ok bool) {
	return ParseObjectSubject(e.Subject)
}

// ParseObjectSubject splits strata.<shard>.obj.<class>.<idhex>.
func ParseObjectSubject(subj string) (class string, id ID, ok bool) {
	parts := strings.Split(subj, ".")
	if len(parts) != 5 || parts[0] != "strata" || parts[2] != "obj" {
		return "", ID{}, false
	}
	if n, err := hex.Decode(id[:], []byte(parts[4])); err != nil || n != len(id) || len(parts[4]) != 2*len(id) {
		return "", ID{}, false
	}
	return parts[3], id, true
}

// Follows checks that rec is the event right after version (whose chain
// hash is hash; version 0 and the zero hash before the first event) on the
// object's chain: its version is the next one and its PrevHash is hash.
// Anything else is a *CorruptError wrapping ErrBrokenChain.
func Follows(version uint64, hash Hash, rec Record) error {
	ev := rec.Event
	var why error
	switch {
	case ev.Version != version+1:
		why = fmt.Errorf("%w: version %d after version %d", ErrBrokenChain, ev.Version, version)
	case ev.PrevHash != hash:
		why = fmt.Errorf("%w: version %d has previous hash %s, the chain says %s", ErrBrokenChain, ev.Version, ev.PrevHash, hash)
	default:
		return nil
	}
	return &CorruptError{Stream: LogStream(rec.Shard), Seq: rec.Seq, Subject: rec.Subject(), Err: why}
}

// AsCorrupt returns the *CorruptError in err's chain, if any.
func AsCorrupt(err error) (*CorruptError, bool) {
	var ce *CorruptError
	ok := errors.As(err, &ce)
	return ce, ok
}
