package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// retry says when an error is worth retrying.
type retry uint8

const (
	never     retry = iota
	always          // nothing ran: a retry is safe
	keyedOnly       // the outcome is unknown: only a read, or a retry with the same Idempotency-Key, is safe
)

// The one table from runtime errors to HTTP. Order matters: a handler error
// that wraps a sentinel (a Put refused as too large) reports the sentinel.
var errorTable = []struct {
	err       error
	status    int
	code      string
	retryable retry
}{
	{objects.ErrInvalidClass, http.StatusBadRequest, "invalid_class", never},
	{objects.ErrInvalidName, http.StatusBadRequest, "invalid_name", never},
	{objects.ErrInvalidID, http.StatusBadRequest, "invalid_id", never},
	{objects.ErrInvalidKey, http.StatusBadRequest, "invalid_key", never},
	{objects.ErrBadInput, http.StatusBadRequest, "bad_input", never},
	{objects.ErrBadRange, http.StatusBadRequest, "bad_range", never},
	{objects.ErrSQLRefused, http.StatusBadRequest, "sql_refused", never},
	{objects.ErrSQL, http.StatusBadRequest, "sql_error", never},
	{objects.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", never},
	{objects.ErrUnknownClass, http.StatusNotFound, "unknown_class", never},
	{objects.ErrUnknownMethod, http.StatusNotFound, "unknown_method", never},
	{objects.ErrNoEvent, http.StatusNotFound, "no_event", never},
	{objects.ErrCallCycle, http.StatusConflict, "call_cycle", never},
	{objects.ErrCallDepth, http.StatusBadRequest, "call_depth", never},
	{objects.ErrOutboxFull, http.StatusTooManyRequests, "outbox_full", always},
	{objects.ErrInvalidIdempotencyKey, http.StatusBadRequest, "invalid_idempotency_key", never},
	{objects.ErrIdempotencyKeyReused, http.StatusUnprocessableEntity, "idempotency_key_reused", never},
	{objects.ErrOutcomeNotKept, http.StatusConflict, "idempotency_outcome_not_kept", never},
	// Before the retryable rows: a corrupt log never heals by retrying.
	{objects.ErrCorruptLog, http.StatusInternalServerError, "corrupt_log", never},
	{objects.ErrFenced, http.StatusConflict, "fenced", always},
	{cluster.ErrNoLease, http.StatusServiceUnavailable, "no_lease", always},
	{objects.ErrOverloaded, http.StatusServiceUnavailable, "overloaded", always},
	{objects.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", keyedOnly},
	{objects.ErrClosed, http.StatusServiceUnavailable, "shutting_down", always},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, "timeout", keyedOnly},
	{log.ErrNoToken, http.StatusNotFound, "unknown_token", never},
	{log.ErrNoClassVersion, http.StatusNotFound, "unknown_class_version", never},
	{log.ErrTokenExists, http.StatusConflict, "token_exists", never},
	{errAuthOff, http.StatusNotFound, "auth_off", never},
}

// routeError is an error the gateway itself raises about a URL or method.
type routeError struct {
	status  int
	code    string
	message string
}

func (e *routeError) Error() string { return e.message }

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Retryable bool   `json:"retryable,omitempty"`
	} `json:"error"`
}

// writeError answers with {"error":{"code","message"}} and the status the
// table gives. Only a handler's own failure, or an error the table does not
// know, is a 500.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var body errorBody
	status := http.StatusInternalServerError
	body.Error.Code, body.Error.Message = "internal", err.Error()

	var re *routeError
	var ce *objects.ClientError
	var he *objects.HandlerError
	switch {
	case errors.As(err, &re):
		status, body.Error.Code = re.status, re.code
	case errors.As(err, &ce):
		status, body.Error.Code = ce.Status, ce.Code
	default:
		matched := false
		for _, row := range errorTable {
			if errors.Is(err, row.err) {
				status, body.Error.Code = row.status, row.code
				body.Error.Retryable = row.retryable == always || row.retryable == keyedOnly && (keyedRequest(r) || r.Method == http.MethodGet || r.Method == http.MethodHead)
				matched = true
				break
			}
		}
		if !matched && errors.As(err, &he) {
			body.Error.Code = "handler_error"
		}
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			status, body.Error.Code = 499, "client_closed" // nobody reads it; logs do
		}
	}
	if body.Error.Retryable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

type keyedKey struct{}

// withKey marks r as carrying an Idempotency-Key the route honours.
func withKey(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), keyedKey{}, true))
}

// keyedRequest reports whether r carries an Idempotency-Key its route
// honours: then an error whose outcome is unknown is safe to retry.
func keyedRequest(r *http.Request) bool {
	keyed, _ := r.Context().Value(keyedKey{}).(bool)
	return keyed
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
