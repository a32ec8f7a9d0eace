package classes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"

	"github.com/strata-objects/strata/objects"
)

// sqlDB is a SQL database for any language over HTTP: each object has its
// own, as in Durable Objects (ctx.storage.sql).
type sqlDB struct{}

// SQL is the "sql" class: exec (one query) and batch (several, one turn:
// all or nothing).
func SQL() *objects.Class {
	return objects.Define("sql", func() *sqlDB { return &sqlDB{} })
}

type (
	// SQLQuery is one query with its bindings. JSON numbers bind as
	// integers when integral, else as floats; {"base64": "..."} binds a blob.
	SQLQuery struct {
		Query  string            `json:"query"`
		Params []json.RawMessage `json:"params"`
	}
	SQLBatch struct {
		Queries []SQLQuery `json:"queries"`
	}
	// SQLResult is a query's columns and rows; blobs come back as
	// {"base64": "..."}.
	SQLResult struct {
		Columns     []string `json:"columns"`
		Rows        [][]any  `json:"rows"`
		RowsRead    int64    `json:"rows_read"`
		RowsWritten int64    `json:"rows_written"`
	}
	SQLBatchResult struct {
		Results []SQLResult `json:"results"`
	}
)

func (s *sqlDB) Exec(ctx *objects.Ctx, in SQLQuery) (SQLResult, error) {
	return runQuery(ctx, in)
}

func (s *sqlDB) Batch(ctx *objects.Ctx, in SQLBatch) (SQLBatchResult, error) {
	out := SQLBatchResult{Results: []SQLResult{}}
	for i, q := range in.Queries {
		r, err := runQuery(ctx, q)
		if err != nil {
			return SQLBatchResult{}, fmt.Errorf("query %d: %w", i, err)
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}

func runQuery(ctx *objects.Ctx, in SQLQuery) (SQLResult, error) {
	args := make([]any, len(in.Params))
	for i, p := range in.Params {
		v, err := jsonParam(p)
		if err != nil {
			return SQLResult{}, fmt.Errorf("%w: param %d: %w", objects.ErrBadInput, i+1, err)
		}
		args[i] = v
	}
	cur, err := ctx.SQL().Exec(in.Query, args...)
	if err != nil {
		return SQLResult{}, err
	}
	res := SQLResult{Columns: cur.Columns(), Rows: [][]any{}, RowsRead: cur.RowsRead(), RowsWritten: cur.RowsWritten()}
	if res.Columns == nil {
		res.Columns = []string{}
	}
	for _, row := range cur.Raw() {
		out := make([]any, len(row))
		for i, v := range row {
			out[i] = JSONValue(v)
		}
		res.Rows = append(res.Rows, out)
	}
	return res, nil
}

// JSONValue renders a SQL value for JSON: blobs as {"base64": …}, floats
// that JSON cannot hold as null.
func JSONValue(v any) any {
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

func jsonParam(p json.RawMessage) (any, error) {
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
