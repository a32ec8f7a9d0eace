package classes

import (
	"encoding/json"
	"fmt"

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
		v, err := objects.SQLParamFromJSON(p)
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
			out[i] = objects.SQLValueForJSON(v)
		}
		res.Rows = append(res.Rows, out)
	}
	return res, nil
}
