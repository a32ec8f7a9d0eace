package jsclass

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// ErrLimit is a turn stopped because it ran past its class's CPU-time
// limit or the engine's memory limit; the activation's JavaScript state is
// discarded and the next turn starts afresh.
var ErrLimit = errors.New("turn interrupted")

// instance is one activation's JavaScript: a goja runtime holding one
// instance of the class at one version. Only the activation's goroutine
// uses it.
type instance struct {
	reg   *Registry
	class string
	name  string // the object's name ("" for a unique id)
	id    string

	vm      *goja.Runtime
	obj     *goja.Object // the class instance
	version uint64
	code    *compiled
	broken  bool         // the runtime was interrupted: build a new one next turn
	host    *goja.Object // __host
	sqlObj  *goja.Object // ctx.storage.sql, made on first use
	storage *goja.Object // ctx.storage, made on first use
	outbox  goja.Value   // ctx.outbox, made on first use
	replay  bool         // a replay: SQL on the replay's database, calls answer from the record
	// replaySkip: the replayed turn did what replay cannot reproduce.
	replaySkip bool

	// The current turn.
	c        *objects.Ctx // nil outside a turn and in replay
	st       store
	now      time.Time
	rng      *mrand.ChaCha8
	turnSock map[objects.SocketID]*objects.WebSocket
	conn     *objects.WebSocket // the socket a connect turn decides on
	accepted bool
	sockOut  []string // replay: what sockets were sent
	txDepth  int      // open storage.transaction()s: no SQL or calls inside
	env      turnEnv  // the turn's clock and seed
	input    []byte   // the turn's input, as recorded
	w        *watcher // the running guard's limits
	// Calls to other objects (calls.go): the answers so far, live.
	answers   []log.CodeCall
	callErr   []error
	keptBytes int
	// Replay: the recorded calls and answers, and the differences met.
	callN         int // answers given back so far
	sentN         int // of them, calls that had left (replayCalls used)
	replayCalls   []log.Call
	replayAnswers []log.CodeCall
	replayLines   []string
	replaySends   []log.Message // the messages the replayed turn sent
	replaySQL     *replaySQL

	sockets map[objects.SocketID]*goja.Object // JS wrappers by socket
}

// turnEnv is what a turn observes: its clock and its random seed.
type turnEnv struct {
	now  time.Time
	seed [32]byte
}

func newTurnEnv(now time.Time) turnEnv {
	var e turnEnv
	e.now = now.Truncate(time.Millisecond)
	rand.Read(e.seed[:])
	return e
}

// begin prepares a turn: the newest code, the turn's clock and randomness,
// and the storage it may use. cv is the version to run.
func (in *instance) begin(cv *compiled, st store, env turnEnv) error {
	in.st, in.now = st, env.now
	in.rng = mrand.NewChaCha8(env.seed)
	in.turnSock, in.conn, in.accepted, in.txDepth = nil, nil, false, 0
	in.env, in.answers, in.callErr, in.keptBytes, in.callN, in.sentN = env, nil, nil, 0, 0, 0
	if in.vm != nil && !in.broken && in.version == cv.version {
		return nil
	}
	in.vm, in.obj, in.broken, in.sockets, in.sqlObj = nil, nil, false, map[objects.SocketID]*goja.Object{}, nil
	in.storage, in.outbox = nil, nil
	in.version, in.code = cv.version, cv
	return in.construct()
}

func (in *instance) end() {
	in.st, in.c, in.turnSock, in.conn, in.input, in.answers, in.callErr = nil, nil, nil, nil, nil, nil, nil
}

// construct builds the runtime and runs the class's constructor (within
// the turn that needs it, like a Durable Object's constructor).
func (in *instance) construct() error {
	vm := goja.New()
	vm.SetTimeSource(func() time.Time { return in.now })
	vm.SetRandSource(func() float64 {
		if in.rng == nil {
			return 0
		}
		return float64(in.rng.Uint64()>>11) / (1 << 53)
	})
	vm.SetFieldNameMapper(goja.UncapFieldNameMapper())
	in.vm = vm
	if err := vm.Set("__host", in.hostObject()); err != nil {
		return err
	}
	_, err := in.guard(in.code.timeout, func() (goja.Value, error) {
		if _, err := vm.RunProgram(in.reg.prelude); err != nil {
			return nil, err
		}
		if err := in.defineGlobals(in.code.globals); err != nil {
			return nil, err
		}
		if _, err := vm.RunProgram(in.code.prog); err != nil {
			return nil, err
		}
		exports := vm.Get(exportsGlobal)
		if exports == nil || goja.IsUndefined(exports) {
			return nil, fmt.Errorf("the module exports nothing")
		}
		cls := exports.ToObject(vm).Get(in.code.export)
		ctor, ok := goja.AssertConstructor(cls)
		if !ok {
			return nil, fmt.Errorf("the module exports no class %q", in.code.export)
		}
		obj, err := ctor(nil, in.ctxObject(), in.envObject())
		if err != nil {
			return nil, err
		}
		in.obj = obj
		return goja.Undefined(), nil
	})
	if err != nil {
		in.vm, in.broken = nil, true
		return fmt.Errorf("class %s v%d: constructor: %w", in.class, in.version, err)
	}
	return nil
}

// defineGlobals defines the Web API globals names (the prelude's lazy
// definitions; a name already defined stays).
func (in *instance) defineGlobals(names []string) error {
	if len(names) == 0 {
		return nil
	}
	fn, ok := goja.AssertFunction(in.host.Get("defineGlobals"))
	if !ok {
		return errors.New("prelude: no defineGlobals")
	}
	_, err := fn(goja.Undefined(), in.vm.ToValue(names))
	return err
}

// guard runs fn with the CPU-time and memory limits, then settles the
// promise it returned, if any (goja runs promise jobs when control leaves
// the runtime).
func (in *instance) guard(timeout time.Duration, fn func() (goja.Value, error)) (goja.Value, error) {
	vm := in.vm
	w := in.reg.watch(vm, timeout)
	in.w = w
	v, err := fn()
	in.w = nil
	reason := w.stop()
	if reason != nil {
		in.broken = true
		return nil, reason
	}
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		in.broken = true
		return nil, fmt.Errorf("%w: %v", ErrLimit, ie.Value())
	}
	if err != nil {
		return nil, jsError(err)
	}
	if p, ok := promiseOf(v); ok {
		switch p.State() {
		case goja.PromiseStateFulfilled:
			return p.Result(), nil
		case goja.PromiseStateRejected:
			return nil, thrown(p.Result())
		default:
			return nil, errors.New("the handler awaited something that does not settle within the turn (timers and outgoing fetch are not supported)")
		}
	}
	return v, nil
}

func promiseOf(v goja.Value) (*goja.Promise, bool) {
	if v == nil {
		return nil, false
	}
	p, ok := v.Export().(*goja.Promise)
	return p, ok
}

// JSError is an exception thrown by a class's code.
type JSError struct{ Message string }

func (e *JSError) Error() string { return e.Message }

func jsError(err error) error {
	var ex *goja.Exception
	if errors.As(err, &ex) {
		return thrown(ex.Value())
	}
	return err
}

// thrown turns a thrown or rejected value into an error. An Error with a
// numeric status 400..499 refuses the request with that status.
func thrown(v goja.Value) error {
	if v == nil {
		return &JSError{"undefined thrown"}
	}
	if o, ok := v.(*goja.Object); ok {
		if gv := o.Get("value"); gv != nil {
			if ge, ok := gv.Export().(error); ok {
				return ge // a host error (storage refused, limit reached) keeps its kind
			}
		}
		if st := o.Get("status"); st != nil && !goja.IsUndefined(st) {
			if n := st.ToInteger(); n >= 400 && n <= 499 {
				code := "refused"
				if c := o.Get("code"); c != nil && !goja.IsUndefined(c) {
					code = c.String()
				}
				return objects.Errorf(int(n), code, "%s", o.Get("message"))
			}
		}
	}
	return &JSError{v.String()}
}

// throw raises err as a JavaScript exception.
func (in *instance) throw(err error) {
	panic(in.vm.NewGoError(err))
}

func (in *instance) resolved(v goja.Value) goja.Value {
	p, resolve, _ := in.vm.NewPromise()
	resolve(v)
	return in.vm.ToValue(p)
}

func (in *instance) rejected(err error) goja.Value {
	p, _, reject := in.vm.NewPromise()
	reject(in.vm.NewGoError(err))
	return in.vm.ToValue(p)
}

// record attaches what the turn observed to its event.
func (in *instance) record(output []byte) {
	if in.c == nil {
		return
	}
	in.c.RecordCode(in.codeRecord(output, false))
}

// codeRecord is the turn's record: continued for the part of a turn that
// a call stages (the turn goes on), else the whole record with the answer
// and the calls' answers.
func (in *instance) codeRecord(output []byte, continued bool) *log.CodeRecord {
	// The seed is copied: the event is encoded while the next turn's begin
	// overwrites in.env (its append runs after this turn returns).
	seed := in.env.seed
	rec := &log.CodeRecord{ClassVersion: in.version, Time: in.env.now.UnixMilli(), Seed: seed[:], Continued: continued}
	rec.Input, rec.InputBytes, rec.InputHash = log.KeepBytes(in.input)
	if continued {
		return rec
	}
	rec.Output, rec.OutputBytes, rec.OutputHash = log.KeepBytes(output)
	if len(in.answers) > 0 {
		rec.Calls = append([]log.CodeCall(nil), in.answers...)
		if len(rec.Calls) > log.CodeCallsMax {
			// Too many to keep: the record says so by keeping none of
			// them past the limit's worth (replay skips the turn).
			rec.Calls = rec.Calls[:log.CodeCallsMax]
			rec.Calls[len(rec.Calls)-1] = log.CodeCall{Code: "not_kept", OutputBytes: 1, OutputHash: make([]byte, 32)}
		}
	}
	return rec
}

// pauseWatch stops the turn's clock while a call waits on another object
// (its time is the callee's); resumeWatch starts it again.
func (in *instance) pauseWatch() {
	if in.w != nil {
		in.w.pause()
	}
}

func (in *instance) resumeWatch() {
	if in.w != nil {
		in.w.resume()
	}
}

// --- the entry points (objects.Dynamic and friends) ---

// entryPoints are not RPC methods.
var entryPoints = map[string]bool{
	"constructor": true, "fetch": true, "alarm": true, "webSocketMessage": true,
	"webSocketClose": true, "webSocketError": true, "ctx": true, "env": true,
}

// callMethod runs method with args (a JSON array or one JSON value) and
// returns its result as JSON.
func (in *instance) callMethod(method string, body []byte) ([]byte, error) {
	if entryPoints[method] || strings.HasPrefix(method, "_") {
		return nil, fmt.Errorf("%w: %s has no RPC method %q", objects.ErrUnknownMethod, in.class, method)
	}
	fn, ok := goja.AssertFunction(in.obj.Get(method))
	if !ok {
		return nil, fmt.Errorf("%w: %s has no method %q", objects.ErrUnknownMethod, in.class, method)
	}
	var args []goja.Value
	if len(strings.TrimSpace(string(body))) > 0 {
		v, err := in.parseJSON(body)
		if err != nil {
			return nil, fmt.Errorf("%w: arguments: %v", objects.ErrBadInput, err)
		}
		if o, ok := v.(*goja.Object); ok && o.ClassName() == "Array" {
			n := int(o.Get("length").ToInteger())
			for i := 0; i < n; i++ {
				args = append(args, o.Get(fmt.Sprint(i)))
			}
		} else {
			args = []goja.Value{v}
		}
	}
	v, err := in.guard(in.code.timeout, func() (goja.Value, error) { return fn(in.obj, args...) })
	if err != nil {
		return nil, err
	}
	return in.toJSON(v)
}

func (in *instance) parseJSON(b []byte) (goja.Value, error) {
	parse, _ := goja.AssertFunction(in.vm.Get("JSON").ToObject(in.vm).Get("parse"))
	v, err := parse(goja.Undefined(), in.vm.ToValue(string(b)))
	if err != nil {
		return nil, jsError(err)
	}
	return v, nil
}

func (in *instance) toJSON(v goja.Value) ([]byte, error) {
	if v == nil || goja.IsUndefined(v) {
		return []byte("null"), nil
	}
	str, _ := goja.AssertFunction(in.vm.Get("JSON").ToObject(in.vm).Get("stringify"))
	s, err := str(goja.Undefined(), v)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", jsError(err))
	}
	if goja.IsUndefined(s) {
		return []byte("null"), nil
	}
	return []byte(s.String()), nil
}

// fetchInput is a fetch turn's recorded input.
type fetchInput struct {
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// fetchOutput is a fetch turn's recorded answer.
type fetchOutput struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

func (in *instance) runFetch(fi fetchInput) (*objects.Response, error) {
	fn, ok := goja.AssertFunction(in.obj.Get("fetch"))
	if !ok {
		return nil, objects.Errorf(http.StatusNotFound, "unknown_method", "class %s has no fetch handler", in.class)
	}
	req, err := in.newRequest(fi)
	if err != nil {
		return nil, err
	}
	v, err := in.guard(in.code.timeout, func() (goja.Value, error) { return fn(in.obj, req) })
	if err != nil {
		return nil, err
	}
	return in.response(v)
}

func (in *instance) newRequest(fi fetchInput) (goja.Value, error) {
	if err := in.defineGlobals([]string{"Headers", "Request", "Response"}); err != nil {
		return nil, err
	}
	init := in.vm.NewObject()
	init.Set("method", fi.Method)
	h := in.vm.NewObject()
	for k, vs := range fi.Header {
		h.Set(k, strings.Join(vs, ", "))
	}
	init.Set("headers", h)
	if len(fi.Body) > 0 {
		init.Set("body", jsBytes(in.vm, fi.Body))
	}
	return in.vm.New(in.vm.Get("Request"), in.vm.ToValue(fi.URL), init)
}

// response reads a JavaScript Response.
func (in *instance) response(v goja.Value) (*objects.Response, error) {
	o, ok := v.(*goja.Object)
	if !ok || goja.IsUndefined(o.Get("status")) || goja.IsUndefined(o.Get("headers")) {
		return nil, errors.New("fetch did not return a Response")
	}
	resp := &objects.Response{Status: int(o.Get("status").ToInteger()), Header: http.Header{}}
	hs := o.Get("headers").ToObject(in.vm)
	forEach, ok := goja.AssertFunction(hs.Get("forEach"))
	if ok {
		_, err := forEach(hs, in.vm.ToValue(func(val, key goja.Value) {
			resp.Header.Add(key.String(), val.String())
		}))
		if err != nil {
			return nil, jsError(err)
		}
	}
	if b := o.Get("_body"); b != nil && !goja.IsNull(b) && !goja.IsUndefined(b) {
		raw, ok := b.Export().([]byte)
		if !ok {
			return nil, errors.New("fetch returned a Response with an unreadable body")
		}
		resp.Body = append([]byte(nil), raw...)
	}
	return resp, nil
}

func fetchInputOf(r *http.Request, body []byte) fetchInput {
	host := r.Host
	if host == "" {
		host = "object"
	}
	u := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	h := http.Header{}
	for k, vs := range r.Header {
		if k == "Authorization" || k == "Cookie" {
			continue // never into the log
		}
		h[k] = vs
	}
	return fetchInput{Method: r.Method, URL: u.String(), Header: h, Body: body}
}

func encodeFetchOutput(r *objects.Response) []byte {
	b, _ := json.Marshal(fetchOutput{Status: r.Status, Header: r.Header, Body: r.Body})
	return b
}

func (in *instance) runAlarm(info objects.AlarmInfo) error {
	fn, ok := goja.AssertFunction(in.obj.Get("alarm"))
	if !ok {
		return nil // no handler: the alarm is cleared, as a Go class without Alarm
	}
	ai := in.vm.NewObject()
	ai.Set("retryCount", info.RetryCount)
	ai.Set("isRetry", info.IsRetry)
	_, err := in.guard(in.code.timeout, func() (goja.Value, error) { return fn(in.obj, ai) })
	return err
}

func (in *instance) socketMessage(ws goja.Value, m objects.Message) error {
	fn, ok := goja.AssertFunction(in.obj.Get("webSocketMessage"))
	if !ok {
		return nil
	}
	var msg goja.Value
	if m.Binary {
		msg = in.vm.ToValue(in.vm.NewArrayBuffer(append([]byte(nil), m.Data...)))
	} else {
		if !utf8.Valid(m.Data) {
			return fmt.Errorf("%w: text message is not UTF-8", objects.ErrBadInput)
		}
		msg = in.vm.ToValue(string(m.Data))
	}
	_, err := in.guard(in.code.timeout, func() (goja.Value, error) { return fn(in.obj, ws, msg) })
	return err
}

func (in *instance) socketClose(ws goja.Value, code int, reason string) error {
	fn, ok := goja.AssertFunction(in.obj.Get("webSocketClose"))
	if !ok {
		return nil
	}
	_, err := in.guard(in.code.timeout, func() (goja.Value, error) {
		return fn(in.obj, ws, in.vm.ToValue(code), in.vm.ToValue(reason), in.vm.ToValue(true))
	})
	return err
}

func (in *instance) socketError(ws goja.Value, sockErr error) error {
	fn, ok := goja.AssertFunction(in.obj.Get("webSocketError"))
	if !ok {
		return nil
	}
	_, err := in.guard(in.code.timeout, func() (goja.Value, error) {
		return fn(in.obj, ws, in.vm.NewGoError(sockErr))
	})
	return err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
