package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// The one table from runtime errors to HTTP. Order matters: a handler error
// that wraps a sentinel (a Put refused as too large) reports the sentinel.
var errorTable = []struct {
	err       error
	status    int
	code      string
	retryable bool
}{
	{objects.ErrInvalidClass, http.StatusBadRequest, "invalid_class", false},
	{objects.ErrInvalidName, http.StatusBadRequest, "invalid_name", false},
	{objects.ErrInvalidID, http.StatusBadRequest, "invalid_id", false},
	{objects.ErrInvalidKey, http.StatusBadRequest, "invalid_key", false},
	{objects.ErrBadInput, http.StatusBadRequest, "bad_input", false},
	{objects.ErrBadRange, http.StatusBadRequest, "bad_range", false},
	{objects.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", false},
	{objects.ErrUnknownClass, http.StatusNotFound, "unknown_class", false},
	{objects.ErrUnknownMethod, http.StatusNotFound, "unknown_method", false},
	// Before the retryable rows: a corrupt log never heals by retrying.
	{objects.ErrCorruptLog, http.StatusInternalServerError, "corrupt_log", false},
	{objects.ErrFenced, http.StatusConflict, "fenced", true},
	{objects.ErrOverloaded, http.StatusServiceUnavailable, "overloaded", true},
	{objects.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", true},
	{objects.ErrClosed, http.StatusServiceUnavailable, "shutting_down", true},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, "timeout", true},
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
				status, body.Error.Code, body.Error.Retryable = row.status, row.code, row.retryable
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
