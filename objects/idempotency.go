package objects

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// Exactly-once requests (Idempotency-Key). A request may carry a key; the
// turn it runs records, in its own cause in the event that holds its
// writes, the key, a hash of what was asked and the answer (log.Outcome).
// Because the record and the writes are one event, either both are in the
// log or neither is: a retry with the same key finds the record and gets
// the first answer without running again, or finds nothing and runs (the
// first attempt left no trace). The activation looks keys up in its
// overlay (records of events the projector has not applied yet, which
// catch-up fills after a crash or a move) and then in the snapshot's index
// (projector/idem.go). Turns run one at a time, so a retry queued behind
// its first attempt runs after it and finds its record; its answer goes
// through the output gate like any other, so it never gets ahead of the
// event that holds the record.
//
// What is recorded:
//   - a keyed turn that wrote (or synced writes), with its answer or, if it
//     failed after a Sync made writes durable, its error;
//   - not a keyed turn that wrote nothing (a read, or a handler error that
//     discarded its writes): it had no effect, so running it again is safe,
//     and recording it would make every keyed read an append. Its retry may
//     see newer state than the first attempt did.
// Keyed requests are RPC calls, fetches and the alarm writes of the
// gateway's alarm route. Other entry points ignore a key. A durable
// message's delivery is keyed too (its turn records its answer in its
// cause), but a redelivery is answered from its sender's received record
// (messages.go), not from the key: neither the overlay nor the snapshot
// keeps a record under a message's key.

// DefaultIdempotencyWindow is how long a keyed turn's answer is kept for
// retries unless the class says otherwise (Class.WithIdempotencyWindow).
const DefaultIdempotencyWindow = 24 * time.Hour

// idemSweepMax bounds the records one sweep step drops.
const idemSweepMax = 1024

// outcomeBytesMax is what a turn's recorded outcome may add to its event
// beyond the write set: the kept body, the key, the hash and the framing.
const outcomeBytesMax = log.OutcomeBodyBytesMax + log.IdemKeyBytesMax + 512

var (
	// ErrInvalidIdempotencyKey: the key is empty, longer than 256 bytes,
	// not UTF-8, or holds a control character.
	ErrInvalidIdempotencyKey = errors.New("invalid idempotency key")
	// ErrIdempotencyKeyReused: the key was used for a different request
	// (another method, path or body, or another principal's) within the
	// window.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrOutcomeNotKept: the key's first attempt ran, but its answer was
	// too large to keep; the retry cannot be given it.
	ErrOutcomeNotKept = errors.New("idempotent request ran, its answer was too large to keep")
)

// ValidateIdempotencyKey checks an Idempotency-Key: 1 to 256 bytes of
// printable UTF-8.
func ValidateIdempotencyKey(k string) error {
	if k == "" || len(k) > log.IdemKeyBytesMax {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrInvalidIdempotencyKey, len(k), log.IdemKeyBytesMax)
	}
	if !utf8.ValidString(k) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidIdempotencyKey)
	}
	for _, r := range k {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: holds %U, want printable characters", ErrInvalidIdempotencyKey, r)
		}
	}
	return nil
}

// WithIdempotencyWindow sets how long the class keeps a keyed turn's
// answer for retries (default DefaultIdempotencyWindow; zero or less takes
// the default). It returns c, for use at definition.
func (c *Class) WithIdempotencyWindow(d time.Duration) *Class {
	c.idemWindow = d
	return c
}

// IdempotencyWindow is the class's retention of keyed turns' answers.
func (c *Class) IdempotencyWindow() time.Duration {
	if c.idemWindow <= 0 {
		return DefaultIdempotencyWindow
	}
	return c.idemWindow
}

// requestHash is what a keyed request asked, to tell a retry from another
// request under the same key: the entry point, its method (or HTTP method
// and path) and its input, each length-prefixed.
func requestHash(via log.Via, method string, parts ...[]byte) []byte {
	h := sha256.New()
	var n [8]byte
	h.Write([]byte{byte(via)})
	for _, p := range append([][]byte{[]byte(method)}, parts...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return h.Sum(nil)
}

// outcomeCodec turns one entry point's answer into a recorded outcome and
// a recorded outcome back into the answer.
type outcomeCodec struct {
	record func(out any) log.Outcome
	replay func(o *log.Outcome) any
}

// newOutcome bounds body: a body over log.OutcomeBodyBytesMax keeps only
// its length and hash.
func newOutcome(status int, code, contentType string, body []byte) log.Outcome {
	o := log.Outcome{Status: status, Code: code, ContentType: contentType}
	if len(body) > log.OutcomeBodyBytesMax {
		sum := sha256.Sum256(body)
		o.BodyBytes, o.BodyHash = len(body), sum[:]
		return o
	}
	o.Body = cloneBytes(body)
	return o
}

var (
	rpcOutcome = &outcomeCodec{
		record: func(out any) log.Outcome { b, _ := out.([]byte); return newOutcome(http.StatusOK, "", "", b) },
		replay: func(o *log.Outcome) any { return cloneBytes(o.Body) },
	}
	fetchOutcome = &outcomeCodec{
		record: func(out any) log.Outcome {
			r := out.(*Response)
			return newOutcome(r.Status, "", r.Header.Get("Content-Type"), r.Body)
		},
		replay: func(o *log.Outcome) any {
			r := &Response{Status: o.Status, Header: http.Header{}, Body: cloneBytes(o.Body)}
			if o.ContentType != "" {
				r.Header.Set("Content-Type", o.ContentType)
			}
			return r
		},
	}
	setAlarmOutcome = &outcomeCodec{
		record: func(out any) log.Outcome {
			return newOutcome(http.StatusOK, "", "", binary.BigEndian.AppendUint64(nil, uint64(out.(time.Time).UnixNano())))
		},
		replay: func(o *log.Outcome) any {
			if len(o.Body) != 8 {
				return time.Time{}
			}
			return time.Unix(0, int64(binary.BigEndian.Uint64(o.Body)))
		},
	}
	deleteAlarmOutcome = &outcomeCodec{
		record: func(out any) log.Outcome {
			if out.(bool) {
				return newOutcome(http.StatusOK, "", "", []byte{1})
			}
			return newOutcome(http.StatusOK, "", "", []byte{0})
		},
		replay: func(o *log.Outcome) any { return len(o.Body) == 1 && o.Body[0] == 1 },
	}
)

// errorOutcome is the recorded form of a handler's failure; ok is false
// for errors that are not the handler's answer (the log, fencing, ...).
func errorOutcome(err error) (o log.Outcome, ok bool) {
	var ce *ClientError
	var he *HandlerError
	switch {
	case errors.As(err, &ce):
		return newOutcome(ce.Status, ce.Code, "", []byte(ce.Message)), true
	case errors.As(err, &he):
		return newOutcome(http.StatusInternalServerError, "handler_error", "", []byte(he.Error())), true
	}
	return log.Outcome{}, false
}

// replayOutcome is the answer a retry gets from a record.
func (a *activation) replayOutcome(req *request, o *log.Outcome) result {
	if !o.Kept() {
		return result{err: fmt.Errorf("%w: %s %s key %q: status %d, %d bytes (at most %d are kept)",
			ErrOutcomeNotKept, a.class.name, a.id, truncate(req.cause.IdemKey), o.Status, o.BodyBytes, log.OutcomeBodyBytesMax)}
	}
	if o.Code != "" {
		if o.Status == http.StatusInternalServerError {
			return result{err: &HandlerError{Class: a.class.name, Method: req.label, Err: errors.New(string(o.Body))}}
		}
		return result{err: &ClientError{Status: o.Status, Code: o.Code, Message: string(o.Body)}}
	}
	return result{out: req.outcome.replay(o)}
}

// idemEntry is a keyed turn's record in the overlay.
type idemEntry struct {
	cause log.Cause
	at    int64  // Unix nanoseconds: when it was staged or its event's time
	ver   uint64 // the event's version
}

// overlayIdem notes the records of a staged or caught-up event's turns.
func (a *activation) overlayIdem(version uint64, at int64, turns []log.Turn) {
	for _, t := range turns {
		if t.Cause.IdemKey == "" || t.Cause.Outcome == nil {
			continue
		}
		if a.idem == nil {
			a.idem = map[string]idemEntry{}
		}
		k := t.Cause.IdemKey
		c := t.Cause.Caller
		if c != nil && c.Kind == log.CallerMessage {
			// The last message applied from its sender (messages.go): a
			// redelivery is answered from it, not from the key (the
			// projector keeps no record under it either).
			k = receivedKey(c.Class, c.ID)
			a.rememberReceived(c.Class, c.ID, projector.MessagePos{Version: c.Version, Turn: c.Turn, Index: c.Index})
		}
		if old, ok := a.idem[k]; ok {
			a.overlayB -= old.cost()
		}
		e := idemEntry{cause: t.Cause, at: at, ver: version}
		a.idem[k] = e
		a.overlayB += e.cost() // the overlay's bound counts kept answers too
	}
}

// cost is what the entry holds in memory, for the overlay's byte bound.
func (e idemEntry) cost() int {
	c := e.cause
	n := len(c.IdemKey) + len(c.IdemHash) + len(c.RequestID) + len(c.Principal) + len(c.Method) + 64
	if o := c.Outcome; o != nil {
		n += len(o.Body) + len(o.BodyHash) + len(o.Code) + len(o.ContentType)
	}
	return n
}

// lookupIdem finds the record of a key within the class's window.
func (a *activation) lookupIdem(key string) (log.Cause, bool, error) {
	since := a.rt.now().Add(-a.class.IdempotencyWindow()).UnixNano()
	if e, ok := a.idem[key]; ok && e.at > since {
		return e.cause, true, nil
	}
	rec, ok, err := a.rt.proj.Idem(a.class.name, a.id, key)
	if err != nil {
		return log.Cause{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok || rec.Time <= since {
		return log.Cause{}, false, nil
	}
	return rec.Cause, true, nil
}

// answerFromRecord answers a keyed request from its key's record, if there
// is one, and reports whether it did.
func (a *activation) answerFromRecord(req *request) bool {
	cause, ok, err := a.lookupIdem(req.cause.IdemKey)
	switch {
	case err != nil:
		a.gate(req, result{err: fmt.Errorf("look up idempotency key of %s/%s: %w", a.class.name, a.id, err)})
	case !ok:
		return false
	case string(cause.IdemHash) != string(req.cause.IdemHash):
		a.gate(req, result{err: fmt.Errorf("%w: %s/%s key %q was first used for %s %s", ErrIdempotencyKeyReused,
			a.class.name, a.id, truncate(req.cause.IdemKey), cause.Via, truncate(cause.Method))})
	default:
		a.rt.hooks.replayed(a.class.name, a.id)
		MarkReplayed(req.ctx)
		a.gate(req, a.replayOutcome(req, cause.Outcome))
	}
	return true
}

// sweepIdem drops records older than every class's window from the
// snapshot, in bounded steps, every IdempotencySweepEvery, until the
// runtime stops.
func (rt *Runtime) sweepIdem() {
	defer close(rt.sweepDone)
	var window time.Duration
	for _, c := range rt.classes {
		window = max(window, c.IdempotencyWindow())
	}
	if window == 0 {
		return // no classes, no records
	}
	t := time.NewTicker(rt.cfg.IdempotencySweepEvery)
	defer t.Stop()
	for {
		select {
		case <-rt.ctx.Done():
			return
		case <-t.C:
		}
		before := rt.now().Add(-window).UnixNano()
		for rt.ctx.Err() == nil {
			n, err := rt.proj.ExpireIdem(before, idemSweepMax)
			if err != nil {
				rt.logger.Warn("idempotency sweep failed", "err", err)
				break
			}
			if n < idemSweepMax {
				break
			}
		}
	}
}

type replayedKey struct{}

// TrackReplay returns a context in which a keyed request notes whether it
// was answered from its key's record rather than run (Replayed). The
// gateway says so in a header.
func TrackReplay(ctx context.Context) context.Context {
	return context.WithValue(ctx, replayedKey{}, new(atomic.Bool))
}

// Replayed reports whether a request made with a TrackReplay context was
// answered from its key's record.
func Replayed(ctx context.Context) bool {
	p, ok := ctx.Value(replayedKey{}).(*atomic.Bool)
	return ok && p.Load()
}

// MarkReplayed notes in ctx's tracker, if any, that the request was
// answered from a record (a cluster node relays its owner's answer).
func MarkReplayed(ctx context.Context) {
	if p, ok := ctx.Value(replayedKey{}).(*atomic.Bool); ok {
		p.Store(true)
	}
}

// keyed prepares a keyed request's cause: the key is checked and, unless
// the caller set one (the gateway does for alarm writes, whose body may
// say "in 5s": the retry must match the request, not the time it works
// out), the hash of what it asks is set. Without a key it does nothing.
func keyed(cause *Cause, hash func() []byte) error {
	cause.Outcome = nil
	if cause.IdemKey == "" {
		cause.IdemHash = nil
		return nil
	}
	if err := ValidateIdempotencyKey(cause.IdemKey); err != nil {
		return err
	}
	if len(cause.IdemHash) != sha256.Size {
		cause.IdemHash = boundTo(cause.Principal, hash())
	}
	return nil
}

// boundTo binds a keyed request's hash to the principal that sent it, so a
// key is one caller's: another token's request under the same key is
// refused as a different request (ErrIdempotencyKeyReused) and never gets
// the first caller's answer. Without a principal (auth off) the hash is
// the request's alone, as before.
func boundTo(principal string, h []byte) []byte {
	if principal == "" {
		return h
	}
	return requestHash(0, principal, h)
}
