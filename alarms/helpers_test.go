package alarms_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is one real node with alarms: embedded JetStream and Badger in
// folders that survive a restart of the node.
type node struct {
	t       testing.TB
	srv     *log.Server // nil when the node shares another's server
	log     *log.Log
	proj    *projector.Projector
	rt      *objects.Runtime
	svc     *alarms.Service
	stopped bool
}

type dirs struct{ nats, snap string }

func newDirs(t testing.TB) dirs { return dirs{t.TempDir(), t.TempDir()} }

// startNode starts a node; withAlarms false records alarms without
// scheduling them (as if every schedule publish were lost).
func startNode(t testing.TB, d dirs, withAlarms bool, classes ...*objects.Class) *node {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: d.nats, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeOn(t, srv, d.snap, withAlarms, classes...)
	n.srv = srv
	return n
}

// startServer runs an embedded server for the test's nodes to share (in
// process, as one node's log is reached).
func startServer(t testing.TB) *log.Server {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return srv
}

// startNodeOn starts a node on a running server: two such nodes share one
// log, as two nodes of a cluster do.
func startNodeOn(t testing.TB, srv *log.Server, snapDir string, withAlarms bool, classes ...*objects.Class) *node {
	t.Helper()
	return startNodeWith(t, srv, snapDir, withAlarms, nil, classes...)
}

// startNodeWith is startNodeOn whose alarms config tune changes (after
// the defaults of the other nodes are set), with the node it is for.
func startNodeWith(t testing.TB, srv *log.Server, snapDir string, withAlarms bool, tune func(*node, *alarms.Config), classes ...*objects.Class) *node {
	t.Helper()
	n := &node{t: t}
	d := dirs{snap: snapDir}
	var err error
	ctx := context.Background()
	if n.log, err = log.Open(ctx, log.Config{Server: srv, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	var rt *objects.Runtime
	n.proj, err = projector.Open(projector.Config{Dir: d.snap, Logger: quiet, OnApplied: func(b []projector.Applied) {
		if rt != nil {
			rt.OnApplied(b)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := objects.Config{Log: n.log, Projector: n.proj, Classes: classes, Logger: quiet}
	if withAlarms {
		acfg := alarms.Config{Log: n.log, Projector: n.proj, Logger: quiet, RetryDelay: 100 * time.Millisecond}
		if tune != nil {
			tune(n, &acfg)
		}
		n.svc, err = alarms.New(acfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Alarms = n.svc
	}
	if rt, err = objects.New(cfg); err != nil {
		t.Fatal(err)
	}
	n.rt = rt
	if n.svc != nil {
		if err := n.svc.Start(ctx, rt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if n.svc != nil {
		errs = append(errs, n.svc.StopFires(ctx))
	}
	errs = append(errs, n.rt.Close(ctx))
	if n.svc != nil {
		errs = append(errs, n.svc.Close(ctx))
	}
	errs = append(errs, n.proj.Close(ctx), n.log.Close(ctx))
	if n.srv != nil {
		errs = append(errs, n.srv.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		n.t.Errorf("stop node: %v", err)
	}
}

type jsonCodec struct{}

func (jsonCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// call runs an RPC method of the waker named name.
func (n *node) call(name, method string, in any) ([]byte, error) {
	n.t.Helper()
	ref, err := n.rt.RefByName("waker", name)
	if err != nil {
		n.t.Fatal(err)
	}
	b, err := json.Marshal(in)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return n.rt.Call(ctx, ref, method, b, jsonCodec{}, objects.Cause{})
}

func (n *node) mustCall(name, method string, in any) []byte {
	n.t.Helper()
	out, err := n.call(name, method, in)
	if err != nil {
		n.t.Fatalf("%s.%s: %v", name, method, err)
	}
	return out
}

// events returns the waker's events.
func (n *node) events(name string) []*log.Event {
	n.t.Helper()
	var out []*log.Event
	err := n.log.Read(context.Background(), "waker", objects.IDFromName("waker", name), 1, func(r log.Record) error {
		out = append(out, r.Event)
		return nil
	})
	if err != nil && !errors.Is(err, log.ErrNotFound) {
		n.t.Fatal(err)
	}
	return out
}

// The waker class: sets alarms on request and records every Alarm turn in
// a recorder named after the object, so each test has its own.
type Waker struct{}

type SetIn struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

func (w *Waker) Set(ctx *objects.Ctx, in SetIn) error {
	return ctx.Storage().SetAlarmNamed(in.Name, in.At)
}

func (w *Waker) Delete(ctx *objects.Ctx, in SetIn) (bool, error) {
	return ctx.Storage().DeleteAlarmNamed(in.Name)
}

func (w *Waker) List(ctx *objects.Ctx) (map[string]time.Time, error) {
	return ctx.Storage().Alarms()
}

func (w *Waker) Runs(ctx *objects.Ctx) (int, error) {
	n, _, err := objects.GetJSON[int](ctx.Storage(), "runs")
	return n, err
}

func (w *Waker) Alarm(ctx *objects.Ctx, info objects.AlarmInfo) error {
	rec := recorderOf(ctx.Name())
	if err := rec.record(info); err != nil {
		return err
	}
	n, _, err := objects.GetJSON[int](ctx.Storage(), "runs")
	if err != nil {
		return err
	}
	return objects.PutJSON(ctx.Storage(), "runs", n+1)
}

var wakerClass = objects.Define("waker", func() *Waker { return &Waker{} })

type fired struct {
	info objects.AlarmInfo
	at   time.Time
	err  bool
}

type recorder struct {
	mu    sync.Mutex
	fires []fired
	fail  int // attempts still to fail; -1: fail always
}

var recorders sync.Map // object name -> *recorder

func recorderOf(name string) *recorder {
	r, _ := recorders.LoadOrStore(name, &recorder{})
	return r.(*recorder)
}

func (r *recorder) record(info objects.AlarmInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	fail := r.fail != 0
	if r.fail > 0 {
		r.fail--
	}
	r.fires = append(r.fires, fired{info: info, at: time.Now(), err: fail})
	if fail {
		return errors.New("handler failed on purpose")
	}
	return nil
}

func (r *recorder) setFail(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = n
}

func (r *recorder) snapshot() []fired {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]fired(nil), r.fires...)
}

// waitFires polls until the recorder holds at least n fires.
func waitFires(t testing.TB, r *recorder, n int, within time.Duration) []fired {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		fs := r.snapshot()
		if len(fs) >= n {
			return fs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fires after %s, want %d", len(fs), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freshRecorder starts name's recorder over, so a test repeated with
// -count sees only its own fires.
func freshRecorder(name string) *recorder {
	r := &recorder{}
	recorders.Store(name, r)
	return r
}
