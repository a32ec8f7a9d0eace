package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// SQLHistorian is what POST …/sql/query needs of the backend.
type SQLHistorian interface {
	QueryAt(ctx context.Context, ref objects.Ref, at objects.PastAt, query string, params []json.RawMessage) (*objects.SQLResult, uint64, error)
}

// sqlChange is one SQL change of a turn in GET …/history.
type sqlChange struct {
	Op        string   `json:"op"`
	Table     string   `json:"table,omitempty"`
	Statement string   `json:"statement,omitempty"`
	RowID     int64    `json:"rowid,omitempty"`
	NewRowID  int64    `json:"new_rowid,omitempty"`
	Columns   []string `json:"columns,omitempty"`
	Old       []any    `json:"old,omitempty"`
	New       []any    `json:"new,omitempty"`
	Text      string   `json:"text"`
}

// stateTable is one SQL table in GET …/state.
type stateTable struct {
	Name    string   `json:"name"`
	Schema  string   `json:"schema"`
	Columns []string `json:"columns"`
	RowIDs  []int64  `json:"rowids"`
	Rows    [][]any  `json:"rows"`
}

// stateObject is an index or a view in a state answer.
type stateObject struct {
	Type string `json:"type"`
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

func sqlValues(vs []any) []any {
	if vs == nil {
		return nil
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = objects.SQLValueForJSON(v)
	}
	return out
}

// sqlQuery answers POST …/sql/query[?version=N|at=RFC3339] with
// {"query": "...", "params": [...]}: a read-only query against the
// object's SQL database as of that moment (the present when neither is
// given), replayed from the log.
func (g *Gateway) sqlQuery(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) {
	h, ok := g.cfg.Backend.(SQLHistorian)
	if !ok {
		writeError(w, r, &routeError{http.StatusNotImplemented, "not_implemented", "this backend keeps no SQL history"})
		return
	}
	at, err := pastAt(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := g.readJSONBody(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in struct {
		Query  string            `json:"query"`
		Params []json.RawMessage `json:"params"`
	}
	if err := (jsonCodec{}).Decode(body, &in); err != nil {
		writeError(w, r, fmt.Errorf("%w: sql query: %w", objects.ErrBadInput, err))
		return
	}
	res, version, err := h.QueryAt(ctx, rt.ref, at, in.Query, in.Params)
	if err != nil {
		writeError(w, r, err)
		return
	}
	cols := res.Columns
	if cols == nil {
		cols = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": version, "columns": cols, "rows": objects.SQLRowsForJSON(res.Rows)})
}
