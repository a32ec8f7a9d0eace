// Package log is Strata's typed event log over NATS JetStream, and the only
// package that imports nats. It is to objects what nats.go's KV is to keys:
// an object is a subject, an event is a message, a version is a position on
// that subject, and a conditional write is a publish with an expected last
// subject sequence.
//
// Layout (DESIGN.md, "Streams and subjects"): objects are spread over P
// shards; shard n has the append-only object log STRATA_LOG_<n> with
// subjects strata.<n>.obj.<class>.<id>, and the timer stream
// STRATA_TIMERS_<n> with strata.<n>.sched.> and strata.<n>.fire.>.
package log

import "errors"

// Sentinel errors callers branch on.
var (
	// ErrConflict: the object's subject moved past the expected sequence:
	// another writer appended first, so the caller's view is stale.
	ErrConflict = errors.New("log: conflict: object was written by another activation")
	// ErrNotFound: the object has no events.
	ErrNotFound = errors.New("log: not found")
	// ErrTooLarge: an event is larger than the server accepts.
	ErrTooLarge = errors.New("log: event too large")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("log: closed")
	// ErrLagging: on a replicated stream, the replicas that answered a
	// read kept lagging the stream's leader; nothing is wrong, retry.
	ErrLagging = errors.New("log: replicas lag the stream leader; retry")
)

// Record is one stored event with its position in the shard's stream.
type Record struct {
	Shard int    // the shard whose log stream holds it
	Seq   uint64 // stream sequence (global to the shard, not the object's version)
	Data  []byte // the canonical bytes as stored; the hash chain covers these
	Event *Event
}

// Subject is the object subject the record is stored on.
func (r Record) Subject() string { return ObjectSubject(r.Shard, r.Event.Class, r.Event.ID) }

// Hash is the chain link of this record: what the next event's PrevHash is.
func (r Record) Hash() Hash { return ChainHash(r.Event.PrevHash, r.Data) }
