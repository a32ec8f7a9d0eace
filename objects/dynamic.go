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
// function): its writes join s at Commit, and are dropped if Commit is
// never called.
func (s *Storage) Begin() (*Storage, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return &Storage{t: s.t, ws: newWriteSet(s.ws)}, nil
}

// Commit joins the writes of tx, from s.Begin, to s.
func (s *Storage) Commit(tx *Storage) error {
	if err := s.check(); err != nil {
		return err
	}
	if tx.ws.parent != s.ws {
		return errors.New("objects: Commit of a transaction not begun on this storage")
	}
	s.ws.absorb(tx.ws)
	return nil
}
