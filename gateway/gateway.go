// Package gateway is Strata's HTTP edge: the only package that speaks JSON
// and serves HTTP. It turns requests into calls on the objects runtime and
// errors into one table of statuses (errors.go).
//
// Routes:
//
//	POST /v1/objects/{class}/{name}/rpc/{method}      JSON in, JSON out
//	POST /v1/objects/{class}/id/{hex}/rpc/{method}
//	ANY  /v1/objects/{class}/{name}/fetch/{path...}   the class's Fetch handler
//	ANY  /v1/objects/{class}/id/{hex}/fetch/{path...}
//	GET/PUT/DELETE /v1/objects/{class}/{name}/alarm  the object's alarms (alarm.go)
//	GET  /v1/objects/{class}/{name}/ws                WebSocket upgrade (websocket.go)
//	GET  /v1/objects/{class}/id/{hex}/ws
//	GET  /ui/chat                                     the chat room page
//	GET  /v1/objects/{class}?prefix=&limit=&cursor=           list objects
//	GET  /v1/objects/{class}/{name}/history?from=&to=&limit=   events as NDJSON
//	GET  /v1/objects/{class}/{name}/state?version=N | ?at=T    past storage
//	GET  /v1/objects/{class}/{name}/audit                      hash chain check
//	POST /v1/objects/{class}/{name}/restore {"version":N} | {"at":T}
//	GET  /v1/tail?class=                                       committed events, live, NDJSON
//	GET  /v1/cluster                                           nodes, their state, objects held (cluster.go)
//	GET  /v1/cluster/raft                                      NATS Raft leaders as this node sees them (raft.go)
//	GET  /healthz
//	GET  /, /console/, /metrics, /v1/classes, /v1/node  the console and its routes (console.go)
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/objects"
	"go.opentelemetry.io/otel/trace"
)

// Backend is what the gateway needs of the objects runtime. One node's
// *objects.Runtime is one; a cluster router is another.
type Backend interface {
	RefByName(class, name string) (objects.Ref, error)
	RefByID(class, hexID string) (objects.Ref, error)
	Call(ctx context.Context, ref objects.Ref, method string, body []byte, codec objects.Codec, cause objects.Cause) ([]byte, error)
	Fetch(ctx context.Context, ref objects.Ref, r *http.Request, cause objects.Cause) (*objects.Response, error)
	GetAlarms(ctx context.Context, ref objects.Ref, cause objects.Cause) (map[string]time.Time, error)
	SetAlarmAt(ctx context.Context, ref objects.Ref, name string, at time.Time, cause objects.Cause) (time.Time, error)
	DeleteAlarmAt(ctx context.Context, ref objects.Ref, name string, cause objects.Cause) (bool, error)
}

// Config configures a Gateway. Zero values take the documented defaults.
type Config struct {
	Backend Backend // required
	// BodyBytesMax bounds a request body; larger bodies get 413. Default
	// 2 MiB: a turn writes at most 1 MiB, and JSON adds escaping.
	BodyBytesMax int64
	// RequestTimeout bounds a request's wait for its turn and its
	// durability. Default 30s.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Alarms, if set, serves the operator's alarm routes (alarm.go).
	Alarms AlarmAdmin
	// Outbox, if set, serves the durable messages' routes (outbox.go).
	Outbox OutboxAdmin
	// WebSocket is the WebSocket protocol's configuration (websocket.go).
	WebSocket WebSocketConfig
	// Tokens, if set, turns auth on (auth.go): every route but /healthz
	// needs a bearer token with the route's scope. Nil: auth is off.
	Tokens TokenStore
	// Health, if set, is the node's health: non-nil makes /healthz 503 with
	// the reason, and refuses requests that could write (503 unhealthy)
	// rather than acknowledging writes the node cannot keep up with.
	Health func() error
	// StreamsMax caps the live tails and history follows of this gateway
	// together: each holds server-side consumers; past it, 503. Default 256.
	StreamsMax int
	// AllowedHosts lists the Host names served besides loopback ones
	// (guard.go): host names, "*.domain", IP addresses; an unspecified
	// address (0.0.0.0, ::) allows any IP address; "*" allows any Host.
	AllowedHosts []string
	// CORSOrigins lists the browser origins (scheme://host[:port]) other
	// than the gateway's own that may call it (guard.go).
	CORSOrigins []string
	// Raft, if set, answers GET /v1/cluster/raft (raft.go): the NATS
	// cluster's Raft leaders as this node's embedded server sees them.
	Raft func() (RaftStatus, error)
	// Classes, if set, serves the deployed-class routes (classes.go).
	Classes ClassAdmin
	// Metrics, if set, is served at GET /metrics (scope read); Observe,
	// if set, learns of every answered request (observe.go).
	Metrics http.Handler
	Observe Observer
	// Inspect and NodeStats serve the console's read routes /v1/classes
	// and /v1/node (console.go); nil: those answer 404.
	Inspect   Inspector
	NodeStats func() any
	// Tracer, if set, traces each request (trace.go): a span per request,
	// a child of the client's W3C traceparent if it sent one.
	Tracer trace.Tracer
}

// Gateway is an http.Handler.
type Gateway struct {
	cfg     Config
	mux     *http.ServeMux
	log     *slog.Logger
	guard   guardConfig
	handler http.Handler // the mux behind the guard

	streams     context.Context // ends long-lived responses at shutdown
	stopStreams context.CancelFunc
	ws          *wsHub

	patterns    []string     // every registered route (auth.go, handle)
	routeErrs   []error      // routes registered without a row in routeAccess
	liveStreams atomic.Int64 // tails and follows running
}

// New returns a Gateway serving cfg.Backend.
func New(cfg Config) (*Gateway, error) {
	if cfg.Backend == nil {
		return nil, errors.New("gateway: Config.Backend is required")
	}
	if cfg.BodyBytesMax <= 0 {
		cfg.BodyBytesMax = 2 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StreamsMax <= 0 {
		cfg.StreamsMax = 256
	}
	gc, err := newGuardConfig(cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, guard: gc}
	g.handler = g.guard.guard(g.authorizeThen(strictQuery(g.mux)))
	g.streams, g.stopStreams = context.WithCancel(context.Background())
	g.handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := g.health(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	g.handle("/v1/objects/{class}/{rest...}", g.objectRoute)
	g.handle("GET /v1/objects/{class}", g.listObjects)
	g.handle("GET /v1/tail", g.tail)
	g.handle("GET /v1/cluster", g.cluster)
	g.handle("GET /v1/cluster/raft", g.raft)
	if cfg.Alarms != nil {
		g.alarmAdminRoutes()
	}
	if cfg.Outbox != nil {
		g.outboxAdminRoutes()
	}
	g.tokenRoutes()
	if cfg.Classes != nil {
		g.classRoutes()
	}
	g.consoleRoutes()
	g.initWebSockets(cfg.WebSocket)
	g.handle("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "no route for " + r.Method + " " + r.URL.Path})
	})
	if err := errors.Join(g.routeErrs...); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gateway) health() error {
	if g.cfg.Health == nil {
		return nil
	}
	return g.cfg.Health()
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := r.Header.Get("X-Request-Id")
	if !validRequestID(reqID) {
		reqID = newRequestID()
	}
	w.Header().Set("X-Request-Id", reqID)
	r = r.WithContext(context.WithValue(r.Context(), reqIDKey{}, reqID))
	var end func(code int)
	r, end = g.startTrace(r)
	if g.cfg.Observe != nil || end != nil {
		observe(g.cfg.Observe, end, g.handler, w, r)
		return
	}
	g.handler.ServeHTTP(w, r)
}

// strictQuery refuses a query string the gateway would read ambiguously:
// a parameter given twice (a proxy may check one and the gateway use the
// other) or a pair that does not decode. Fetch and WebSocket routes are
// exempt: their query belongs to the object (Fetch, WebSocketConnect).
func strictQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// objectRoute checks its own, knowing which are the object's.
		rest, isObject := strings.CutPrefix(r.URL.Path, "/v1/objects/")
		if r.URL.RawQuery != "" && !(isObject && strings.Contains(rest, "/")) {
			if err := checkQuery(r.URL.RawQuery); err != nil {
				writeError(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func checkQuery(raw string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return fmt.Errorf("%w: query: %w", objects.ErrBadInput, err)
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return fmt.Errorf("%w: query parameter %q given %d times", objects.ErrBadInput, truncateReason(k), len(vs))
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) {
			return fmt.Errorf("%w: query parameter %q is not valid UTF-8", objects.ErrBadInput, truncateReason(k))
		}
	}
	return nil
}

type reqIDKey struct{}

// IdempotencyKeyHeader names the key that makes an RPC call, a fetch or an
// alarm write exactly-once: a retry with the same key gets the first
// attempt's answer without running again (objects/idempotency.go).
const IdempotencyKeyHeader = "Idempotency-Key"

// ReplayedHeader is set ("true") on an answer given from an
// Idempotency-Key's record, without running the request again.
const ReplayedHeader = "Idempotent-Replayed"

// setReplayed sets ReplayedHeader if the request made with ctx (a
// objects.TrackReplay context) was answered from its key's record.
func setReplayed(ctx context.Context, w http.ResponseWriter) {
	if objects.Replayed(ctx) {
		w.Header().Set(ReplayedHeader, "true")
	}
}

// route is a parsed /v1/objects/... path.
type route struct {
	ref    objects.Ref
	action string // "rpc" or "fetch"
	rest   string // the method, or the fetch path
}

// objectPath is a /v1/objects/... path split in its parts.
type objectPath struct {
	class  string
	byID   bool   // /v1/objects/{class}/id/{hex}/...
	object string // the name, or the hex id when byID
	action string // "" when the path has no action segment
	rest   string // after the action; the whole remainder without one
}

// splitObjectPath splits /v1/objects/{class}/{name}/{action}/{rest} and
// /v1/objects/{class}/id/{hex}/{action}/{rest}. Segments are unescaped one
// by one so a name may hold an escaped slash.
func splitObjectPath(r *http.Request) (objectPath, error) {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/v1/objects/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return objectPath{}, fmt.Errorf("%w: bad escape in path: %w", objects.ErrBadInput, err)
		}
		segs[i] = u
	}
	if len(segs) < 3 {
		return objectPath{}, &routeError{http.StatusNotFound, "not_found", "want /v1/objects/{class}/{name}/rpc/{method} or …/fetch/{path}"}
	}
	op := objectPath{class: segs[0]}
	if segs[1] == "id" && len(segs) >= 4 && isAction(segs[3]) {
		op.byID, op.object, segs = true, segs[2], segs[3:]
	} else {
		op.object, segs = segs[1], segs[2:]
	}
	if isAction(segs[0]) {
		op.action, segs = segs[0], segs[1:]
	}
	op.rest = strings.Join(segs, "/")
	return op, nil
}

// parseRoute resolves a /v1/objects/... path to its object and action.
func (g *Gateway) parseRoute(r *http.Request) (route, error) {
	op, err := splitObjectPath(r)
	if err != nil {
		return route{}, err
	}
	var ref objects.Ref
	if op.byID {
		ref, err = g.cfg.Backend.RefByID(op.class, op.object)
	} else {
		ref, err = g.cfg.Backend.RefByName(op.class, op.object)
	}
	if err != nil {
		return route{}, err
	}
	if op.action == "" {
		seg, _, _ := strings.Cut(op.rest, "/")
		return route{}, &routeError{http.StatusNotFound, "not_found", fmt.Sprintf("unknown action %q: want rpc, fetch, alarm, ws, outbox, history, state, audit, restore, sql, trace or live", seg)}
	}
	return route{ref: ref, action: op.action, rest: op.rest}, nil
}

func isAction(s string) bool {
	return s == "rpc" || s == "fetch" || s == "alarm" || s == "ws" || s == "outbox" || s == "live" || isPastAction(s)
}

func (g *Gateway) objectRoute(w http.ResponseWriter, r *http.Request) {
	rt, err := g.parseRoute(r)
	if err == nil && rt.action != "fetch" && rt.action != "ws" && r.URL.RawQuery != "" {
		err = checkQuery(r.URL.RawQuery)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if !(r.Method == http.MethodGet && (isPastAction(rt.action) || rt.action == "live")) {
		if err := g.health(); err != nil {
			writeError(w, r, &routeError{http.StatusServiceUnavailable, "unhealthy", "this node refuses writes: " + err.Error()})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	cause := objects.Cause{RequestID: requestID(r), Principal: principal(r), TraceID: traceID(r)}
	if vs, ok := r.Header[IdempotencyKeyHeader]; ok && (rt.action == "rpc" || rt.action == "fetch" || rt.action == "alarm") {
		if len(vs) != 1 {
			writeError(w, r, fmt.Errorf("%w: %d %s headers, want one", objects.ErrInvalidIdempotencyKey, len(vs), IdempotencyKeyHeader))
			return
		}
		if err := objects.ValidateIdempotencyKey(vs[0]); err != nil {
			writeError(w, r, err)
			return
		}
		cause.IdemKey = vs[0]
		ctx = objects.TrackReplay(ctx)
		r = withKey(r)
	}
	r.Body = http.MaxBytesReader(w, r.Body, g.cfg.BodyBytesMax)
	switch rt.action {
	case "rpc":
		g.rpc(ctx, w, r, rt, cause)
	case "fetch":
		g.fetch(ctx, w, r, rt, cause)
	case "history", "state", "audit", "restore", "sql", "trace":
		g.past(ctx, w, r, rt, cause)
	case "alarm":
		g.alarm(ctx, w, r, rt, cause)
	case "outbox":
		g.outbox(w, r, rt)
	case "ws":
		g.webSocket(ctx, w, r, rt, cause)
	case "live":
		g.live(w, r, rt)
	}
}

func (g *Gateway) rpc(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "RPC takes POST"})
		return
	}
	if rt.rest == "" || strings.Contains(rt.rest, "/") {
		writeError(w, r, &routeError{http.StatusNotFound, "unknown_method", fmt.Sprintf("bad method %q", rt.rest)})
		return
	}
	body, err := g.readJSONBody(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ctx = cluster.TrackNode(ctx)
	out, err := g.cfg.Backend.Call(ctx, rt.ref, rt.rest, body, jsonCodec{}, cause)
	setReplayed(ctx, w)
	if err != nil {
		writeError(w, r, err)
		return
	}
	setRanOn(ctx, w)
	if out == nil {
		out = []byte("{}")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
	w.Write([]byte("\n"))
}

func (g *Gateway) fetch(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	body, err := g.readBody(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// The object sees its own path, not the gateway's prefix.
	in := r.Clone(ctx)
	in.URL.Path = "/" + rt.rest
	in.URL.RawPath = ""
	in.RequestURI = ""
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.ContentLength = int64(len(body))
	ctx = cluster.TrackNode(ctx)
	resp, err := g.cfg.Backend.Fetch(ctx, rt.ref, in, cause)
	setReplayed(ctx, w)
	if err != nil {
		writeError(w, r, err)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	setRanOn(ctx, w)
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// setRanOn names the node that ran the turn in the Strata-Node header, in
// a cluster.
func setRanOn(ctx context.Context, w http.ResponseWriter) {
	if node := cluster.RanOn(ctx); node != "" {
		w.Header().Set(cluster.NodeHeader, node)
	}
}

// readJSONBody reads a JSON request body whole. Invalid UTF-8 is refused:
// the JSON decoder would turn each bad byte into U+FFFD, so two different
// keys would become one, and stored strings would not be what was sent.
func (g *Gateway) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := g.readBody(w, r)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: the JSON body is not valid UTF-8", objects.ErrBadInput)
	}
	if at := loneSurrogate(body); at >= 0 {
		return nil, fmt.Errorf("%w: the JSON body escapes a lone UTF-16 surrogate at byte %d (not a character; it would be stored as U+FFFD)", objects.ErrBadInput, at)
	}
	return body, nil
}

// loneSurrogate is the offset of the first \uXXXX escape in a JSON
// string of body that names half of a UTF-16 surrogate pair without its
// other half, or -1. encoding/json decodes such an escape to U+FFFD, so
// "\ud800" and "\udfff" would become one key. body is valid UTF-8; its
// JSON syntax is checked later, by the decoder.
func loneSurrogate(body []byte) int {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range body[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	inString := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString:
			r, ok := hex4(i)
			switch {
			case !ok:
				i++ // a short escape (\n, \", \\): skip what it escapes
			case 0xD800 <= r && r < 0xDC00:
				if lo, ok := hex4(i + 6); !ok || lo < 0xDC00 || lo > 0xDFFF {
					return i
				}
				i += 11 // the pair
			case 0xDC00 <= r && r <= 0xDFFF:
				return i
			default:
				i += 5
			}
		}
	}
	return -1
}

// readBody reads a request body whole, within RequestTimeout of now: a
// client that trickles its body cannot hold the request (and its
// goroutine and buffer) past it. The deadline is lifted once the body is
// in, so it does not cut the response.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(g.cfg.RequestTimeout)) == nil
	body, err := io.ReadAll(r.Body)
	if deadline && err == nil {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if isTimeout(err) {
			// The rest of the body is never read: the connection ends
			// with the answer.
			w.Header().Set("Connection", "close")
			return nil, &routeError{http.StatusRequestTimeout, "request_timeout", fmt.Sprintf("the request body did not arrive within %s", g.cfg.RequestTimeout)}
		}
		return nil, bodyError(err)
	}
	return body, nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: request body over %d bytes", objects.ErrTooLarge, mbe.Limit)
	}
	return fmt.Errorf("%w: read body: %w", objects.ErrBadInput, err)
}

// jsonCodec is the one place RPC values become JSON.
type jsonCodec struct{}

func (jsonCodec) Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(reqIDKey{}).(string)
	return id
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
