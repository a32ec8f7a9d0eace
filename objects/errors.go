package objects

import (
	"errors"
	"fmt"
)

// Sentinel errors. The gateway keeps the one table from these to HTTP
// statuses; callers branch with errors.Is.
var (
	// Bad input: the caller's fault, nothing was written.
	ErrInvalidClass  = errors.New("invalid class name")
	ErrInvalidName   = errors.New("invalid object name")
	ErrInvalidID     = errors.New("invalid object id")
	ErrInvalidKey    = errors.New("invalid key")
	ErrBadInput      = errors.New("bad input")
	ErrTooLarge      = errors.New("too large")
	ErrUnknownClass  = errors.New("unknown class")
	ErrUnknownMethod = errors.New("unknown method")

	// Calls between objects (calls.go), refused before they leave.
	// ErrCallCycle: the call would wait on an object that is already
	// waiting in the call's chain (or on the caller itself): it would
	// deadlock, so it fails at once. ErrCallDepth: the chain of waiting
	// calls is CallDepthMax objects long. ErrCallInTransaction: a call
	// inside Storage.Transaction (the call is a commit point, and the
	// transaction's writes may still be undone): a programming error.
	ErrCallCycle         = errors.New("call cycle")
	ErrCallDepth         = errors.New("call chain too deep")
	ErrCallInTransaction = errors.New("call inside Storage.Transaction")
	// ErrOutboxFull: the sender has OutboxPendingMax messages not yet
	// delivered; the turn that sends more fails (retry later).
	ErrOutboxFull = errors.New("outbox full")

	// Retryable: the request did not run, or its outcome is not known and a
	// retry is safe to reason about (the object reloads from the log).
	ErrFenced      = errors.New("object was written by another activation; retry")
	ErrOverloaded  = errors.New("object overloaded; retry later")
	ErrUnavailable = errors.New("log unavailable; outcome unknown, retry")
	ErrClosed      = errors.New("runtime closed")

	// ErrCorruptLog: the object's log holds a message that is not the next
	// valid event of its chain (garbage, a forged or misplaced event). The
	// object cannot load until an operator repairs its log; retrying does
	// not help, and other objects are not affected. The error names the
	// message's stream sequence (log.CorruptError).
	ErrCorruptLog = errors.New("corrupt log")
)

// HandlerError is a failure of the class's own code: an error it returned or
// a panic. Its message is the handler's; Unwrap exposes the handler's error
// so sentinels it wraps (ErrTooLarge from a Put, say) keep their meaning.
type HandlerError struct {
	Class, Method string
	Err           error
	Panicked      bool
}

func (e *HandlerError) Error() string {
	if e.Panicked {
		return fmt.Sprintf("%s.%s panicked: %v", e.Class, e.Method, e.Err)
	}
	return e.Err.Error()
}

func (e *HandlerError) Unwrap() error { return e.Err }

// ClientError is an error a handler returns to refuse a request with a 4xx
// status of its choosing; nothing the turn wrote is kept.
type ClientError struct {
	Status  int    // 400..499
	Code    string // short machine-readable code, e.g. "not_found"
	Message string
}

func (e *ClientError) Error() string { return e.Message }

// Errorf builds a ClientError.
func Errorf(status int, code, format string, args ...any) error {
	if status < 400 || status > 499 {
		status = 400
	}
	return &ClientError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}
