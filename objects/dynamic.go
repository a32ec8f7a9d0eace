package objects

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/strata-objects/strata/log"
)

// Dynamic is implemented by the instances of a class whose methods are not
// Go methods known at build time: a class deployed at run time (a
// JavaScript class, see the jsclass package). Call runs method with the
// request body as is (the gateway's JSON) and returns the encoded answer.
// An unknown method is an error wrapping ErrUnknownMethod. The instance may
// also implement Fetcher, Alarmer and the WebSocket interfaces, which the
// runtime uses exactly as for a Go class.
type Dynamic interface {
	Call(ctx *Ctx, method string, body []byte) ([]byte, error)
}

// DefineDynamic registers a class whose instances (made by newT, one per
// activation) implement Dynamic. Its write path, output gate, alarms,
// WebSockets and history are those of any class.
func DefineDynamic[T Dynamic](name string, newT func() T) (*Class, error) {
	if err := ValidateClassName(name); err != nil {
		return nil, err
	}
	c := &Class{
		name:    name,
		newInst: func() any { return newT() },
		typ:     reflect.TypeFor[T](),
		methods: map[string]*method{},
		dynamic: true,
	}
	_, c.fetches = any(*new(T)).(Fetcher)
	return c, nil
}

// Dynamic reports whether the class was defined by DefineDynamic.
func (c *Class) Dynamic() bool { return c.dynamic }

// callDynamic is Call for a Dynamic class.
func (rt *Runtime) callDynamic(ctx context.Context, ref Ref, class *Class, method string, body []byte, cause Cause) ([]byte, error) {
	cause.Via, cause.Method = ViaRPC, method
	if err := keyed(&cause, func() []byte { return requestHash(ViaRPC, method, body) }); err != nil {
		return nil, err
	}
	out, err := rt.dispatchSized(ctx, ref, cause, method, rpcOutcome, len(body), func(c *Ctx, inst any) (any, error) {
		out, err := inst.(Dynamic).Call(c, method, body)
		if err != nil {
			return nil, handlerError(class.name, method, err)
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	b, _ := out.([]byte)
	return b, nil
}

// RecordCode attaches what a deployed class's turn observed (its code
// version, clock, random seed, input and answer) to the turn's cause, so
// that its event carries it (log.CodeRecord). The last call of a turn wins;
// a turn that writes nothing records nothing.
func (c *Ctx) RecordCode(rec *log.CodeRecord) {
	c.t.req.cause.Code = rec
}

// resolve finds a class that is not built in, through Config.Resolve.
func (rt *Runtime) resolve(name string) (*Class, error) {
	if rt.cfg.Resolve == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownClass, name)
	}
	c, err := rt.cfg.Resolve(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrUnknownClass, name, err)
	}
	if c == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownClass, name)
	}
	return c, nil
}

// FetchTurner is a Fetcher that can fail its turn: an error discards the
// turn's writes and answers as an RPC error does. A Dynamic class's
// instance implements it (a JavaScript fetch that throws).
type FetchTurner interface {
	FetchTurn(ctx *Ctx, r *http.Request) (*Response, error)
}

// Begin starts a transaction nested in s without a callback, for callers
// whose transaction body does not run on the Go stack (a JavaScript async
// function). Until Commit or Rollback it is the turn's innermost
// transaction, as inside Storage.Transaction's fn: SQL statements run in a
// savepoint of it and their changes join its writes, messages sent join
// it, and calls to other objects are refused (ErrCallInTransaction). Only
// the innermost open transaction may begin another, and transactions end
// innermost first; one still open when the turn ends is rolled back.
func (s *Storage) Begin() (*Storage, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	t := s.t
	if s.ws != t.current() {
		return nil, fmt.Errorf("%w: storage.transaction() beside an open transaction (begin it inside that one, or after it ends)", ErrBadInput)
	}
	child := newWriteSet(s.ws)
	tx := &Storage{t: t, ws: child, begun: &begun{outer: t.tx, hadSQL: t.sqlTurn}}
	tx.begun.savepoint = t.sqlTxBegin(child)
	t.inTx, t.tx = t.inTx+1, child
	t.begun = append(t.begun, tx)
	return tx, nil
}

// begun is what Begin changed in the turn, for Commit or Rollback to put
// back.
type begun struct {
	outer     *writeSet // the turn's innermost transaction before
	hadSQL    bool      // the turn's SQL savepoint was open before
	savepoint string    // the transaction's SQL savepoint ("" if none)
}

// Commit joins the writes (and SQL changes, and messages) of tx, from
// s.Begin, to s.
func (s *Storage) Commit(tx *Storage) error {
	if err := s.check(); err != nil {
		return err
	}
	if tx.ws.parent != s.ws || tx.begun == nil {
		return errors.New("objects: Commit of a transaction not begun on this storage")
	}
	if err := s.t.endBegun(tx, true); err != nil {
		return err
	}
	s.ws.absorb(tx.ws)
	return nil
}

// Rollback discards the writes of tx, from s.Begin, and rolls back its SQL
// changes.
func (s *Storage) Rollback(tx *Storage) error {
	if err := s.check(); err != nil {
		return err
	}
	if tx.ws.parent != s.ws || tx.begun == nil {
		return errors.New("objects: Rollback of a transaction not begun on this storage")
	}
	return s.t.endBegun(tx, false)
}

// endBegun ends tx, which must be the innermost open transaction.
func (t *turn) endBegun(tx *Storage, keep bool) error {
	n := len(t.begun)
	if n == 0 || t.begun[n-1] != tx {
		return fmt.Errorf("%w: a transaction ended while one begun inside it is still open", ErrBadInput)
	}
	t.begun = t.begun[:n-1]
	b := tx.begun
	tx.begun = nil
	t.inTx, t.tx = t.inTx-1, b.outer
	t.sqlTxEnd(b.savepoint, b.hadSQL, keep)
	return nil
}

// rollbackBegun rolls back the transactions from Begin the turn left open.
func (t *turn) rollbackBegun() {
	for len(t.begun) > 0 {
		t.endBegun(t.begun[len(t.begun)-1], false)
	}
}
