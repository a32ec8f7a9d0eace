package objects

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/sqlstore"
)

// SQL values at the JSON edge (the sql class, time-travel queries).

// SQLResult is a query's materialized answer.
type SQLResult = sqlstore.Result

// SQLTable is one table of a past state.
type SQLTable = sqlstore.Table

// SQLValueForJSON renders a SQL value for JSON: blobs as {"base64": …},
// floats JSON cannot hold as null.
func SQLValueForJSON(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]string{"base64": base64.StdEncoding.EncodeToString(x)}
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil
		}
	}
	return v
}

// SQLRowsForJSON renders rows with SQLValueForJSON.
func SQLRowsForJSON(rows [][]any) [][]any {
	out := make([][]any, 0, len(rows))
	for _, r := range rows {
		o := make([]any, len(r))
		for i, v := range r {
			o[i] = SQLValueForJSON(v)
		}
		out = append(out, o)
	}
	return out
}

// SQLParamFromJSON reads one binding: null, a number (integral ones bind
// as integers), a string, a boolean (0 or 1) or {"base64": …} for a blob.
func SQLParamFromJSON(p json.RawMessage) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil, string:
		return x, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s", x)
		}
		return f, nil
	case map[string]any:
		if s, ok := x["base64"].(string); ok && len(x) == 1 {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("base64: %w", err)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("a binding is null, a number, a string, a boolean or {\"base64\": …}")
}

// QueryAt runs a read-only query against ref's SQL database as of a past
// version or time (replayed in memory from the log), and returns the
// version it ran against.
func (rt *Runtime) QueryAt(ctx context.Context, ref Ref, at PastAt, query string, params []json.RawMessage) (*SQLResult, uint64, error) {
	if _, err := rt.Class(ref.Class); err != nil {
		return nil, 0, err
	}
	args := make([]any, len(params))
	for i, p := range params {
		v, err := SQLParamFromJSON(p)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: param %d: %w", ErrBadInput, i+1, err)
		}
		args[i] = v
	}
	res, v, err := history.QueryAt(ctx, rt.log, ref.Class, ref.ID, at, query, args...)
	return res, v, corruptLog(err)
}
