package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/strata-objects/strata/objects"
)

// Historian is what the history routes need of the backend.
type Historian interface {
	History(ctx context.Context, ref objects.Ref, r objects.HistoryRange, fn func(objects.HistoryEntry) error) error
	StateAt(ctx context.Context, ref objects.Ref, at objects.PastAt) (objects.PastState, error)
	Verify(ctx context.Context, ref objects.Ref) (objects.AuditReport, error)
	Restore(ctx context.Context, ref objects.Ref, at objects.PastAt, cause objects.Cause) (objects.RestoreResult, error)
	ListObjects(class, namePrefix, cursor string, limit int) ([]objects.ObjectSummary, string, error)
}

func isPastAction(s string) bool {
	switch s {
	case "history", "state", "audit", "restore", "sql", "trace":
		return true
	}
	return false
}

// past serves the routes that read (or restore) an object's past.
func (g *Gateway) past(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	method := http.MethodGet
	if rt.action == "restore" || rt.action == "sql" {
		method = http.MethodPost
	}
	if rt.action == "sql" && r.Method == method && rt.rest == "query" {
		g.sqlQuery(ctx, w, r, rt)
		return
	}
	if rt.action == "sql" {
		w.Header().Set("Allow", method)
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "sql takes POST …/sql/query"})
		return
	}
	if r.Method != method || rt.rest != "" {
		w.Header().Set("Allow", method)
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", rt.action + " takes " + method + " and no further path"})
		return
	}
	switch rt.action {
	case "history":
		g.history(ctx, w, r, rt)
	case "state":
		g.state(ctx, w, r, rt)
	case "audit":
		g.audit(ctx, w, r, rt)
	case "restore":
		g.restore(ctx, w, r, rt, cause)
	case "trace":
		g.trace(ctx, w, r, rt)
	}
}

// restore answers POST …/restore {"version":N} or {"at":"RFC3339"}.
func (g *Gateway) restore(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	h, err := g.historian()
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := g.readJSONBody(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	at, err := restoreTarget(body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := h.Restore(ctx, rt.ref, at, cause)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := map[string]any{"restored_to_version": res.Version, "deleted": res.Deleted, "put": res.Put}
	if res.SQL > 0 {
		out["sql_statements"] = res.SQL
	}
	writeJSON(w, http.StatusOK, out)
}

// restoreTarget reads a restore body: exactly one of a version (from 1)
// or a representable time.
func restoreTarget(body []byte) (objects.PastAt, error) {
	var in struct {
		Version *uint64 `json:"version"`
		At      string  `json:"at"`
	}
	var at objects.PastAt
	if err := (jsonCodec{}).Decode(body, &in); err != nil {
		return at, fmt.Errorf("%w: restore: %w", objects.ErrBadInput, err)
	}
	var err error
	switch {
	case (in.Version == nil) == (in.At == ""):
		return at, fmt.Errorf("%w: restore takes exactly one of version and at", objects.ErrBadInput)
	case in.At != "":
		at.Time, err = parseTime("at", in.At)
	case *in.Version == 0:
		err = fmt.Errorf("%w: version 0 is before the first event: versions start at 1", objects.ErrBadRange)
	default:
		at.Version = *in.Version
	}
	return at, err
}

// listObjects answers GET /v1/objects/{class}?prefix=&limit=&cursor=.
func (g *Gateway) listObjects(w http.ResponseWriter, r *http.Request) {
	h, err := g.historian()
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit, err := uintParam(r, "limit")
	if err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	page, next, err := h.ListObjects(r.PathValue("class"), q.Get("prefix"), q.Get("cursor"), int(min(limit, 1<<20)))
	if err != nil {
		writeError(w, r, err)
		return
	}
	type item struct {
		ID      string    `json:"id"`
		Name    string    `json:"name,omitempty"`
		Version uint64    `json:"version"`
		Updated time.Time `json:"updated"`
		liveness
	}
	out := struct {
		Objects []item `json:"objects"`
		Cursor  string `json:"cursor,omitempty"`
	}{Objects: []item{}, Cursor: next}
	ids := make([]objects.ID, len(page))
	for i, o := range page {
		ids[i] = o.ID
	}
	live := g.livenessOf(r.Context(), r.PathValue("class"), ids, false)
	for i, o := range page {
		out.Objects = append(out.Objects, item{o.ID.String(), o.Name, o.Version, o.Updated, live[i]})
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) historian() (Historian, error) {
	h, ok := g.cfg.Backend.(Historian)
	if !ok {
		return nil, &routeError{http.StatusNotImplemented, "not_implemented", "this backend keeps no history"}
	}
	return h, nil
}

// historyEntry is one NDJSON line of GET …/history.
type historyEntry struct {
	Version uint64        `json:"version"`
	Seq     uint64        `json:"seq"`
	Time    time.Time     `json:"time"`
	Name    string        `json:"name,omitempty"`
	Turns   []historyTurn `json:"turns"`
}

type historyTurn struct {
	RequestID string `json:"request_id,omitempty"`
	Principal string `json:"principal,omitempty"`
	Method    string `json:"method,omitempty"`
	Via       string `json:"via"`
	TraceID   string `json:"trace_id,omitempty"`
	// IdempotencyKey and Status: a keyed turn's key and the status of the
	// answer recorded for its retries.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Status         int    `json:"status,omitempty"`
	// Caller: the object whose call ran this turn; Calls: the calls this
	// turn made (issue 16).
	Caller *historyCaller `json:"caller,omitempty"`
	Calls  []historyCall  `json:"calls,omitempty"`
	// Sends: the durable messages this turn sent; Settles: this object's
	// earlier messages it settled (objects/messages.go).
	Sends   []historySend   `json:"sends,omitempty"`
	Settles []historySettle `json:"settles,omitempty"`
	// ClassVersion: the deployed class version whose code ran the turn.
	ClassVersion uint64          `json:"class_version,omitempty"`
	Changes      []historyChange `json:"changes"`
	SQL          []sqlChange     `json:"sql,omitempty"`
}

type historyCaller struct {
	Class   string `json:"class"`
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	Turn    int    `json:"turn"`
	Index   int    `json:"index"`
	Kind    string `json:"kind,omitempty"` // "message" or "reply"; "" for a call
}

type historySend struct {
	Class  string `json:"class"`
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"` // the target's name, when the stub named it
	Method string `json:"method"`
	Reply  string `json:"reply,omitempty"`
}

type historySettle struct {
	Version uint64 `json:"version"`
	Turn    int    `json:"turn"`
	Index   int    `json:"index"`
	Dead    string `json:"dead,omitempty"`
	Retry   bool   `json:"retry,omitempty"`
}

type historyCall struct {
	Class  string `json:"class"`
	ID     string `json:"id"`
	Method string `json:"method"`
	Error  string `json:"error,omitempty"`
}

// historyTurnOf is what a history line (and a trace line) shows of a turn.
func historyTurnOf(t objects.HistoryTurn) historyTurn {
	ht := historyTurn{RequestID: t.Cause.RequestID, Principal: t.Cause.Principal, Method: t.Cause.Method, Via: t.Cause.Via.String(), TraceID: t.Cause.TraceID, IdempotencyKey: t.Cause.IdemKey, Changes: []historyChange{}}
	if o := t.Cause.Outcome; o != nil {
		ht.Status = o.Status
	}
	ht.Caller, ht.Calls = historyCallsOf(t)
	for _, m := range t.Sends {
		ht.Sends = append(ht.Sends, historySend{Class: m.Class, ID: m.ID.String(), Name: m.Name, Method: m.Method, Reply: m.Reply})
	}
	for _, s := range t.Settles {
		ht.Settles = append(ht.Settles, historySettle{Version: s.Version, Turn: s.Turn, Index: s.Index, Dead: s.Dead, Retry: s.Retry})
	}
	if c := t.Cause.Code; c != nil {
		ht.ClassVersion = c.ClassVersion
	}
	for _, c := range t.Changes {
		hc := historyChange{Op: c.Op, Key: c.Key, Old: jsonValue(c.Old), New: jsonValue(c.New)}
		if c.At != 0 {
			at := time.Unix(0, c.At).UTC()
			hc.At = &at
		}
		ht.Changes = append(ht.Changes, hc)
	}
	for _, c := range t.SQL {
		ht.SQL = append(ht.SQL, sqlChange{Op: c.Op, Table: c.Table, Statement: c.Stmt, RowID: c.RowID, NewRowID: c.NewRowID,
			Columns: c.Columns, Old: sqlValues(c.Old), New: sqlValues(c.New), Text: c.Text})
	}
	return ht
}

// historyCallsOf is what a history line shows of a turn's calls.
func historyCallsOf(t objects.HistoryTurn) (*historyCaller, []historyCall) {
	var caller *historyCaller
	if c := t.Cause.Caller; c != nil {
		caller = &historyCaller{Class: c.Class, ID: c.ID.String(), Version: c.Version, Turn: c.Turn, Index: c.Index, Kind: callerKind(c.Kind)}
	}
	var calls []historyCall
	for _, c := range t.Calls {
		calls = append(calls, historyCall{Class: c.Class, ID: c.ID.String(), Method: c.Method, Error: c.Error})
	}
	return caller, calls
}

// historyChange shows values as JSON when they are JSON (what kv and
// PutJSON store), else as a string.
type historyChange struct {
	Op  string          `json:"op"`
	Key string          `json:"key,omitempty"`
	Old json.RawMessage `json:"old,omitempty"`
	New json.RawMessage `json:"new,omitempty"`
	At  *time.Time      `json:"at,omitempty"`
}

func jsonValue(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// Times are kept as int64 nanoseconds since 1970: the representable range.
var (
	timeMin = time.Unix(0, math.MinInt64).UTC()
	timeMax = time.Unix(0, math.MaxInt64).UTC()
)

// parseTime reads an RFC 3339 time that nanoseconds since 1970 can hold
// (1677-09-21 to 2262-04-11); outside it the nanoseconds would wrap around
// to another time, so it is refused as bad_range.
func parseTime(field, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s=%q is not an RFC 3339 time", objects.ErrBadInput, field, v)
	}
	if t.Before(timeMin) || t.After(timeMax) {
		return time.Time{}, fmt.Errorf("%w: %s=%q is outside the representable times %s to %s", objects.ErrBadRange, field, v, timeMin.Format(time.RFC3339), timeMax.Format(time.RFC3339))
	}
	return t, nil
}

func uintParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a non-negative integer", objects.ErrBadInput, name, v)
	}
	return n, nil
}

// Follower is what GET …/history?follow=true needs of the backend.
type Follower interface {
	Follow(ctx context.Context, ref objects.Ref, after uint64, fn func(objects.HistoryEntry) error) error
}

// history streams GET …/history?from=&to=&limit=[&follow=true] as NDJSON.
// With follow, the stream goes on with each new event, flushed as it is
// committed, until the client goes away or the gateway stops.
func (g *Gateway) history(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) {
	h, err := g.historian()
	if err != nil {
		writeError(w, r, err)
		return
	}
	var hr objects.HistoryRange
	if hr.From, err = uintParam(r, "from"); err == nil {
		if hr.To, err = uintParam(r, "to"); err == nil {
			var limit uint64
			limit, err = uintParam(r, "limit")
			hr.Limit = int(min(limit, 1<<31))
		}
	}
	var follower Follower
	if err == nil {
		follower, err = g.follower(r, hr)
	}
	if err == nil && follower != nil {
		var release func()
		if release, err = g.holdStream(); err == nil {
			defer release()
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
	}
	var shown uint64
	emit := func(e objects.HistoryEntry) error {
		start()
		shown = e.Version
		line := historyEntry{Version: e.Version, Seq: e.Seq, Time: e.Time, Name: e.Name}
		for _, t := range e.Turns {
			line.Turns = append(line.Turns, historyTurnOf(t))
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
		if follower != nil && flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	err = h.History(ctx, rt.ref, hr, emit)
	if err == nil && follower != nil {
		start()
		if flusher != nil {
			flusher.Flush()
		}
		// Follow until the client goes away, the gateway stops or the
		// token is revoked; not until RequestTimeout, which bounds ctx
		// (objectRoute).
		fctx, stop := g.streamContext(r.Context(), r)
		defer stop()
		err = follower.Follow(fctx, rt.ref, max(shown, hr.From-min(hr.From, 1)), emit)
		if fctx.Err() != nil {
			endRevoked(fctx, enc)
			return
		}
	}
	if err != nil {
		if !started {
			writeError(w, r, err)
			return
		}
		// Mid-stream: the status is sent; end with an error line.
		var body errorBody
		body.Error.Code, body.Error.Message = "internal", err.Error()
		enc.Encode(body)
		return
	}
	start()
}

// follower is the backend's Follower if the request asks to follow.
func (g *Gateway) follower(r *http.Request, hr objects.HistoryRange) (Follower, error) {
	switch v := r.URL.Query().Get("follow"); v {
	case "", "false", "0":
		return nil, nil
	case "true", "1":
	default:
		return nil, fmt.Errorf("%w: follow=%q, want true or false", objects.ErrBadInput, v)
	}
	if hr.To != 0 || hr.Limit != 0 {
		return nil, fmt.Errorf("%w: follow goes on past the last event: it takes no to or limit", objects.ErrBadInput)
	}
	f, ok := g.cfg.Backend.(Follower)
	if !ok {
		return nil, &routeError{http.StatusNotImplemented, "not_implemented", "this backend cannot follow history"}
	}
	return f, nil
}

type stateBody struct {
	Version uint64                     `json:"version"`
	Time    time.Time                  `json:"time"`
	Keys    map[string]json.RawMessage `json:"keys"`
	Tables  []stateTable               `json:"tables,omitempty"`
	Objects []stateObject              `json:"indexes_and_views,omitempty"`
}

// pastAt reads which past a request asks for: ?version=N, ?at=RFC3339,
// or neither (the present, read from the log).
func pastAt(r *http.Request) (objects.PastAt, error) {
	var at objects.PastAt
	var err error
	q := r.URL.Query()
	if at.Version, err = uintParam(r, "version"); err != nil {
		return at, err
	}
	switch v := q.Get("at"); {
	case q.Has("version") && at.Version == 0:
		return at, fmt.Errorf("%w: version=0 is before the first event: versions start at 1 (leave version out for the present)", objects.ErrBadRange)
	case v != "" && at.Version != 0:
		return at, fmt.Errorf("%w: give version or at, not both", objects.ErrBadInput)
	case v != "":
		if at.Time, err = parseTime("at", v); err != nil {
			return at, err
		}
	case at.Version == 0:
		at.Time = time.Now()
	}
	return at, nil
}

// state answers GET …/state?version=N or ?at=RFC3339[&prefix=].
func (g *Gateway) state(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) {
	h, err := g.historian()
	if err != nil {
		writeError(w, r, err)
		return
	}
	at, err := pastAt(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	at.SQL = true
	st, err := h.StateAt(ctx, rt.ref, at)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body := stateBody{Version: st.Version, Time: st.Time, Keys: map[string]json.RawMessage{}}
	prefix := r.URL.Query().Get("prefix")
	keys := make([]string, 0, len(st.Keys))
	for k := range st.Keys {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		body.Keys[k] = jsonValue(st.Keys[k])
	}
	for _, t := range st.Tables {
		body.Tables = append(body.Tables, stateTable{Name: t.Name, Schema: t.Schema, Columns: t.Columns, RowIDs: t.RowIDs, Rows: objects.SQLRowsForJSON(t.Rows)})
	}
	for _, o := range st.Objects {
		body.Objects = append(body.Objects, stateObject(o))
	}
	writeJSON(w, http.StatusOK, body)
}

// audit answers GET …/audit with the verification of the hash chain.
func (g *Gateway) audit(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route) {
	h, err := g.historian()
	if err != nil {
		writeError(w, r, err)
		return
	}
	rep, err := h.Verify(ctx, rt.ref)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
