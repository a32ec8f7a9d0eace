package jsclass

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/dop251/goja"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

//go:embed prelude.js
var preludeSource string

// Defaults of Config.
const (
	DefaultTurnTimeout = 30 * time.Second
	DefaultMemoryLimit = 256 << 20
	// DeployCheckTimeout bounds loading a module at deploy time.
	DeployCheckTimeout = 5 * time.Second
	// SourceBytesMax bounds an uploaded module.
	SourceBytesMax = 2 << 20
)

// refreshesPerSecond bounds the reads of the class store that requests
// for unknown class names cause.
const refreshesPerSecond = 20

// Errors a deploy is refused with, besides ErrCompile.
var (
	ErrNameTaken = fmt.Errorf("%w: class name taken by a built-in class", objects.ErrBadInput)
	ErrBadDeploy = fmt.Errorf("%w: bad deploy", objects.ErrBadInput)
)

// Config configures a Registry.
type Config struct {
	Classes *log.Classes // the replicated class store (required)
	// Log is read by replays (replay.go); nil: no replay.
	Log *log.Log
	// Builtin reports whether a name belongs to a class compiled into the
	// binary; such a name cannot be deployed.
	Builtin func(name string) bool
	// TurnTimeout is the default CPU-time limit of one turn (a deploy may
	// set its own). Default 30s.
	TurnTimeout time.Duration
	// MemoryLimit bounds how much a running turn may grow the heap before
	// it is interrupted. Default 256 MiB.
	MemoryLimit int64
	Logger      *slog.Logger
	Now         func() time.Time
}

// Registry serves the deployed classes of a node.
type Registry struct {
	cfg     Config
	logger  *slog.Logger
	prelude *goja.Program

	mu struct {
		sync.Mutex
		lister  func(class, namePrefix, cursor string, limit int) ([]objects.ObjectSummary, string, error)
		classes map[string]*objects.Class
		code    map[string]*compiled // by class; the newest compiled
		missed  map[string]time.Time // names refreshed from the store and not found
		window  time.Time            // start of the second lookups counts in
		lookups int
	}
}

// compiled is one class version, ready to run.
type compiled struct {
	version uint64
	prog    *goja.Program
	export  string
	timeout time.Duration
	globals []string // the Web API globals the code mentions (globalNames)
}

// New returns a Registry over cfg.Classes.
func New(cfg Config) (*Registry, error) {
	if cfg.Classes == nil {
		return nil, errors.New("jsclass: Config.Classes is required")
	}
	if cfg.Builtin == nil {
		cfg.Builtin = func(string) bool { return false }
	}
	if cfg.TurnTimeout <= 0 {
		cfg.TurnTimeout = DefaultTurnTimeout
	}
	if cfg.MemoryLimit <= 0 {
		cfg.MemoryLimit = DefaultMemoryLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := goja.Compile("prelude.js", preludeSource, true)
	if err != nil {
		return nil, fmt.Errorf("jsclass: prelude: %w", err)
	}
	r := &Registry{cfg: cfg, logger: cfg.Logger.With("component", "jsclass"), prelude: p}
	r.mu.classes = map[string]*objects.Class{}
	r.mu.code = map[string]*compiled{}
	r.mu.missed = map[string]time.Time{}
	return r, nil
}

// Resolve is objects.Config.Resolve: the deployed class name, if any. A
// name this node has not heard of is looked up in the store itself (at
// most once a second per name), so a call right after a deploy on another
// node finds the class even before the watch delivers it.
func (r *Registry) Resolve(name string) (*objects.Class, error) {
	if _, ok := r.cfg.Classes.Latest(name); !ok {
		r.mu.Lock()
		last, seen := r.mu.missed[name]
		now := time.Now()
		if now.Sub(r.mu.window) >= time.Second {
			r.mu.window, r.mu.lookups = now, 0
		}
		// Unknown names may come from anyone: at most refreshesPerSecond
		// reads of the store a second, whatever the names.
		busy := r.mu.lookups >= refreshesPerSecond
		if !busy && !(seen && now.Sub(last) < time.Second) {
			r.mu.lookups++
		}
		r.mu.Unlock()
		if busy || seen && now.Sub(last) < time.Second {
			return nil, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := r.cfg.Classes.Refresh(ctx, name)
		cancel()
		if _, ok := r.cfg.Classes.Latest(name); !ok {
			r.mu.Lock()
			if len(r.mu.missed) > 4096 {
				clear(r.mu.missed)
			}
			r.mu.missed[name] = time.Now()
			r.mu.Unlock()
			if err != nil {
				r.logger.Warn("class lookup failed", "class", name, "err", err)
			}
			return nil, nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.mu.classes[name]; ok {
		return c, nil
	}
	c, err := objects.DefineDynamic(name, func() *live { return &live{reg: r, in: &instance{reg: r, class: name}} })
	if err != nil {
		return nil, err
	}
	r.mu.classes[name] = c
	return c, nil
}

// current returns the newest version of class, compiled.
func (r *Registry) current(class string) (*compiled, error) {
	cv, ok := r.cfg.Classes.Latest(class)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not deployed", objects.ErrUnknownClass, class)
	}
	r.mu.Lock()
	c, ok := r.mu.code[class]
	r.mu.Unlock()
	if ok && c.version == cv.Version {
		return c, nil
	}
	c, err := r.compile(cv)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if have, ok := r.mu.code[class]; !ok || have.version < c.version {
		r.mu.code[class] = c
	}
	r.mu.Unlock()
	return c, nil
}

func (r *Registry) compile(cv *log.ClassVersion) (*compiled, error) {
	prog, err := goja.Compile(fmt.Sprintf("%s.v%d.js", cv.Class, cv.Version), string(cv.Code), false)
	if err != nil {
		return nil, fmt.Errorf("class %s v%d: %w", cv.Class, cv.Version, err)
	}
	timeout := r.cfg.TurnTimeout
	if cv.TurnTimeoutMs > 0 {
		timeout = time.Duration(cv.TurnTimeoutMs) * time.Millisecond
	}
	return &compiled{version: cv.Version, prog: prog, export: cv.Export, timeout: timeout, globals: globalNames(string(cv.Code))}, nil
}

// DeployRequest is one deploy.
type DeployRequest struct {
	Class    string
	Filename string // decides the loader: .ts is TypeScript
	Source   []byte
	Export   string // the exported class; "" picks it (see FindExport)
	By       string
	// TurnTimeout overrides the node's default CPU-time limit per turn.
	TurnTimeout time.Duration
}

// Check compiles and loads a module the way Deploy does, without storing
// it, and returns the script and the exported class's name.
func (r *Registry) Check(class, filename string, source []byte, export string) (string, string, error) {
	if err := objects.ValidateClassName(class); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrBadDeploy, err)
	}
	if r.cfg.Builtin(class) {
		return "", "", fmt.Errorf("%w: %q", ErrNameTaken, class)
	}
	if len(source) > SourceBytesMax {
		return "", "", fmt.Errorf("%w: source of %d bytes, at most %d", ErrBadDeploy, len(source), SourceBytesMax)
	}
	if len(source) == 0 {
		return "", "", fmt.Errorf("%w: empty source", ErrBadDeploy)
	}
	script, err := Compile(filename, source)
	if err != nil {
		return "", "", err
	}
	export, err = r.findExport(class, script, export)
	if err != nil {
		return "", "", err
	}
	return script, export, nil
}

// Deploy compiles, checks and stores req as the class's next version.
func (r *Registry) Deploy(ctx context.Context, req DeployRequest) (*log.ClassVersion, error) {
	script, export, err := r.Check(req.Class, req.Filename, req.Source, req.Export)
	if err != nil {
		return nil, err
	}
	if req.TurnTimeout < 0 || req.TurnTimeout > time.Hour {
		return nil, fmt.Errorf("%w: turn timeout %s, want 0..1h", ErrBadDeploy, req.TurnTimeout)
	}
	sum := sha256.Sum256(req.Source)
	cv, err := r.cfg.Classes.Deploy(ctx, log.ClassVersion{
		Class: req.Class, Kind: "js", Code: []byte(script), Source: req.Filename, SourceHash: sum[:],
		CreatedAt: r.cfg.Now().UnixNano(), CreatedBy: req.By, Export: export,
		TurnTimeoutMs: req.TurnTimeout.Milliseconds(),
	})
	if err != nil {
		return nil, err
	}
	r.logger.Info("class deployed", "class", cv.Class, "version", cv.Version, "export", export, "by", req.By)
	return cv, nil
}

// Rollback deploys the code of an earlier version as the next version.
func (r *Registry) Rollback(ctx context.Context, class string, version uint64, by string) (*log.ClassVersion, error) {
	if err := r.cfg.Classes.Refresh(ctx, class); err != nil {
		return nil, err
	}
	old, ok := r.cfg.Classes.Version(class, version)
	if !ok {
		return nil, fmt.Errorf("%w: %s v%d", log.ErrNoClassVersion, class, version)
	}
	cv := *old
	cv.Version, cv.CreatedAt, cv.CreatedBy, cv.RollbackOf = 0, r.cfg.Now().UnixNano(), by, old.Version
	out, err := r.cfg.Classes.Deploy(ctx, cv)
	if err != nil {
		return nil, err
	}
	r.logger.Info("class rolled back", "class", class, "version", out.Version, "code_of", version, "by", by)
	return out, nil
}

// findExport loads script in a scratch engine and picks the exported
// class: the one named export, else the only exported class, else the one
// whose name in kebab case is the class name.
func (r *Registry) findExport(class, script, export string) (string, error) {
	in := &instance{reg: r, class: class}
	in.vm = goja.New()
	in.sockets = map[objects.SocketID]*goja.Object{}
	if err := in.vm.Set("__host", in.hostObject()); err != nil {
		return "", err
	}
	prog, err := goja.Compile(class+".js", script, false)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrCompile, err)
	}
	var names []string
	_, err = in.guard(DeployCheckTimeout, func() (goja.Value, error) {
		if _, err := in.vm.RunProgram(r.prelude); err != nil {
			return nil, err
		}
		if err := in.defineGlobals(globalNames(script)); err != nil {
			return nil, err
		}
		if _, err := in.vm.RunProgram(prog); err != nil {
			return nil, err
		}
		ex := in.vm.Get(exportsGlobal)
		if ex == nil || goja.IsUndefined(ex) {
			return goja.Undefined(), nil
		}
		o := ex.ToObject(in.vm)
		for _, k := range o.Keys() {
			if _, ok := goja.AssertConstructor(o.Get(k)); ok && k != "DurableObject" {
				names = append(names, k)
			}
		}
		return goja.Undefined(), nil
	})
	if err != nil {
		return "", fmt.Errorf("%w: loading the module: %v", ErrCompile, err)
	}
	sort.Strings(names)
	if export != "" {
		for _, n := range names {
			if n == export {
				return export, nil
			}
		}
		return "", fmt.Errorf("%w: the module exports no class %q (it exports %v)", ErrCompile, export, names)
	}
	switch {
	case len(names) == 1:
		return names[0], nil
	case len(names) == 0:
		return "", fmt.Errorf("%w: the module exports no class", ErrCompile)
	}
	for _, n := range names {
		if kebab(n) == class {
			return n, nil
		}
	}
	return "", fmt.Errorf("%w: the module exports %v; name one with --export", ErrCompile, names)
}

func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// --- limits ---

// watcher interrupts a runtime that runs past its time or grows the heap
// past the memory limit. It costs a timer per turn; the heap is sampled
// every watchTick while the turn runs.
type watcher struct {
	mu      sync.Mutex
	vm      *goja.Runtime
	start   time.Time
	timeout time.Duration
	limit   int64
	base    int64
	t       *time.Timer
	stopped bool
	paused  bool
	elapsed time.Duration // at the pause
	reason  error
}

const watchTick = 10 * time.Millisecond

func (r *Registry) watch(vm *goja.Runtime, timeout time.Duration) *watcher {
	w := &watcher{vm: vm, start: time.Now(), timeout: timeout, limit: r.cfg.MemoryLimit, base: -1}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(min(watchTick, timeout), w.check)
	return w
}

func heapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func (w *watcher) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.paused {
		return
	}
	if el := time.Since(w.start); el >= w.timeout {
		w.reason = fmt.Errorf("%w: the turn ran for %s, past its limit of %s", ErrLimit, el.Round(time.Millisecond), w.timeout)
		w.vm.Interrupt(w.reason)
		return
	}
	h := heapBytes()
	if w.base < 0 {
		w.base = h
	} else if h-w.base > w.limit {
		w.reason = fmt.Errorf("%w: the turn grew the heap by %d MiB, past the limit of %d MiB", ErrLimit, (h-w.base)>>20, w.limit>>20)
		w.vm.Interrupt(w.reason)
		return
	}
	w.t.Reset(min(watchTick, w.timeout-time.Since(w.start)+time.Millisecond))
}

// pause stops the clock and the heap watch (a call waits on another
// object, whose allocations are not this turn's).
func (w *watcher) pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.paused {
		return
	}
	w.paused, w.elapsed = true, time.Since(w.start)
	w.t.Stop()
}

// resume starts the clock again where pause left it.
func (w *watcher) resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || !w.paused {
		return
	}
	w.paused, w.start, w.base = false, time.Now().Add(-w.elapsed), -1
	w.t.Reset(min(watchTick, max(w.timeout-w.elapsed, time.Millisecond)))
}

// stop ends the watch; non-nil if it interrupted the runtime.
func (w *watcher) stop() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
	return w.reason
}

// --- the activation's side ---

// live is one activation of a deployed class (objects.Dynamic).
type live struct {
	reg *Registry
	in  *instance
}

func (l *live) start(c *objects.Ctx, input []byte) error {
	env := newTurnEnv(l.reg.cfg.Now())
	cv, err := l.reg.current(l.in.class)
	if err != nil {
		return err
	}
	l.in.name, l.in.id = c.Name(), c.ID().String()
	l.in.c, l.in.input = c, input // before begin: a constructor may call other objects
	if err := l.in.begin(cv, liveStore{c.Storage()}, env); err != nil {
		l.in.end()
		return err
	}
	return nil
}

// Call runs an RPC method.
func (l *live) Call(c *objects.Ctx, method string, body []byte) ([]byte, error) {
	if err := l.start(c, body); err != nil {
		return nil, err
	}
	defer l.in.end()
	out, err := l.in.callMethod(method, body)
	if err != nil {
		return nil, err
	}
	l.in.record(out)
	return out, nil
}

// Fetch is never called: FetchTurn is (objects.FetchTurner).
func (l *live) Fetch(c *objects.Ctx, w http.ResponseWriter, r *http.Request) {
	http.Error(w, "unreachable", http.StatusInternalServerError)
}

// FetchTurn runs fetch(request).
func (l *live) FetchTurn(c *objects.Ctx, r *http.Request) (*objects.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	fi := fetchInputOf(r, body)
	if err := l.start(c, mustJSON(fi)); err != nil {
		return nil, err
	}
	defer l.in.end()
	resp, err := l.in.runFetch(fi)
	if err != nil {
		return nil, err
	}
	l.in.record(encodeFetchOutput(resp))
	return resp, nil
}

// Alarm runs alarm(info).
func (l *live) Alarm(c *objects.Ctx, info objects.AlarmInfo) error {
	if err := l.start(c, mustJSON(info)); err != nil {
		return err
	}
	defer l.in.end()
	if err := l.in.runAlarm(info); err != nil {
		return err
	}
	l.in.record(nil)
	return nil
}

// WebSocketConnect runs fetch(request) with Upgrade: websocket; the class
// accepts with ctx.acceptWebSocket(server) and returns a 101 Response.
func (l *live) WebSocketConnect(c *objects.Ctx, ws *objects.WebSocket, r *http.Request) error {
	fi := fetchInputOf(r, nil)
	fi.Header.Set("Upgrade", "websocket")
	if err := l.start(c, mustJSON(fi)); err != nil {
		return err
	}
	defer l.in.end()
	l.in.conn = ws
	resp, err := l.in.runFetch(fi)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusSwitchingProtocols || !l.in.accepted {
		status := resp.Status
		if status < 400 || status > 499 {
			status = http.StatusBadRequest
		}
		return objects.Errorf(status, "websocket_refused", "%s", strings.TrimSpace(string(resp.Body))+" (the class did not accept the WebSocket)")
	}
	l.in.record([]byte("101"))
	return nil
}

// WebSocketMessage runs webSocketMessage(ws, message).
func (l *live) WebSocketMessage(c *objects.Ctx, ws *objects.WebSocket, m objects.Message) error {
	if err := l.start(c, m.Data); err != nil {
		return err
	}
	defer l.in.end()
	l.in.turnSock = map[objects.SocketID]*objects.WebSocket{ws.ID(): ws}
	for _, s := range c.Sockets("") {
		l.in.turnSock[s.ID()] = s
	}
	if err := l.in.socketMessage(l.in.socketObject(ws.ID()), m); err != nil {
		return err
	}
	l.in.record(nil)
	return nil
}

// WebSocketClose runs webSocketClose(ws, code, reason, wasClean).
func (l *live) WebSocketClose(c *objects.Ctx, ws *objects.WebSocket, code int, reason string) error {
	if err := l.start(c, mustJSON(map[string]any{"code": code, "reason": reason})); err != nil {
		return err
	}
	defer l.in.end()
	o := l.in.socketObject(ws.ID())
	delete(l.in.sockets, ws.ID())
	if err := l.in.socketClose(o, code, reason); err != nil {
		return err
	}
	l.in.record(nil)
	return nil
}

// WebSocketError runs webSocketError(ws, error).
func (l *live) WebSocketError(c *objects.Ctx, ws *objects.WebSocket, sockErr error) error {
	if err := l.start(c, []byte(sockErr.Error())); err != nil {
		return err
	}
	defer l.in.end()
	o := l.in.socketObject(ws.ID())
	delete(l.in.sockets, ws.ID())
	if err := l.in.socketError(o, sockErr); err != nil {
		return err
	}
	l.in.record(nil)
	return nil
}
