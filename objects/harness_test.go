package objects

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// A harness is one real node: an embedded JetStream server in a temporary
// folder, the log over it, a Badger snapshot and a runtime.
type harness struct {
	t    testing.TB
	srv  *log.Server
	log  *log.Log
	proj *projector.Projector
	rt   *Runtime

	activations atomic.Int64
	evictions   atomic.Int64
	fences      atomic.Int64
}

type harnessOpt func(*Config)

// quiet drops the runtime's logs: tests assert on behaviour, and fencing
// and panics are expected here.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startServer(t testing.TB) *log.Server {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	return newHarnessOn(t, startServer(t), opts...)
}

// newHarnessOn starts a node on an existing server: two harnesses on one
// server are two nodes sharing one log.
func newHarnessOn(t testing.TB, srv *log.Server, opts ...harnessOpt) *harness {
	t.Helper()
	return newHarnessWith(t, srv, log.Config{}, opts...)
}

// newHarnessWith is newHarnessOn with a log config (its server and logger are
// filled in).
func newHarnessWith(t testing.TB, srv *log.Server, lcfg log.Config, opts ...harnessOpt) *harness {
	t.Helper()
	return newHarnessProj(t, srv, lcfg, nil, opts...)
}

// newHarnessProj is newHarnessWith with edits to the projector's config.
func newHarnessProj(t testing.TB, srv *log.Server, lcfg log.Config, pedit func(*projector.Config), opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, srv: srv}
	ctx := context.Background()
	lcfg.Server, lcfg.Logger = srv, quiet
	l, err := log.Open(ctx, lcfg)
	if err != nil {
		t.Fatal(err)
	}
	h.log = l
	pcfg := projector.Config{Dir: t.TempDir(), Logger: quiet, Log: l, OnApplied: func(b []projector.Applied) {
		if h.rt != nil {
			h.rt.OnApplied(b)
		}
	}}
	if pedit != nil {
		pedit(&pcfg)
	}
	h.proj, err = projector.Open(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Log: l, Projector: h.proj, Classes: testClasses(), Logger: quiet,
		Hooks: Hooks{
			Activated: func(string, ID) { h.activations.Add(1) },
			Evicted:   func(string, ID) { h.evictions.Add(1) },
			Fenced:    func(string, ID) { h.fences.Add(1) },
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.rt, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.rt.Close(ctx); err != nil {
		h.t.Errorf("runtime close: %v", err)
	}
	if err := h.proj.Close(ctx); err != nil {
		h.t.Errorf("projector close: %v", err)
	}
	if err := h.log.Close(ctx); err != nil {
		h.t.Errorf("log close: %v", err)
	}
}

// scratch is a test class whose one method runs a Go function handed over
// through valueCodec, so tests can drive the storage API directly.
type scratch struct {
	mem map[string]int // in-memory state that lives as long as the activation
}

type fnInput struct {
	fn func(c *Ctx, s *scratch) (any, error)
}

func (s *scratch) Do(c *Ctx, in fnInput) (any, error) { return in.fn(c, s) }

// tally is a counter with no JSON: its value travels through valueCodec.
type tally struct{}

var tallyTurns atomic.Int64

func (t *tally) Add(c *Ctx, by int) (int, error) {
	tallyTurns.Add(1)
	v, _, err := GetJSON[int](c.Storage(), "n")
	if err != nil {
		return 0, err
	}
	v += by
	return v, PutJSON(c.Storage(), "n", v)
}

func testClasses() []*Class {
	return []*Class{
		Define("scratch", func() *scratch { return &scratch{mem: map[string]int{}} }),
		Define("tally", func() *tally { return &tally{} }),
		Define("echo", func() *echo { return &echo{} }).WithIdempotencyWindow(time.Hour),
	}
}

// valueCodec hands Go values to and from methods without encoding.
type valueCodec struct {
	in  any
	out any
}

func (c *valueCodec) Decode(_ []byte, v any) error {
	reflect.ValueOf(v).Elem().Set(reflect.ValueOf(c.in))
	return nil
}

func (c *valueCodec) Encode(v any) ([]byte, error) {
	c.out = v
	return []byte{}, nil
}

func (h *harness) ref(class, name string) Ref {
	h.t.Helper()
	r, err := h.rt.RefByName(class, name)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// do runs fn as one turn of scratch object name.
func (h *harness) do(name string, fn func(c *Ctx, s *scratch) (any, error)) (any, error) {
	codec := &valueCodec{in: fnInput{fn}}
	_, err := h.rt.Call(context.Background(), h.ref("scratch", name), "do", []byte("x"), codec, Cause{})
	return codec.out, err
}

// must runs fn and fails the test on error.
func (h *harness) must(name string, fn func(c *Ctx, s *scratch) (any, error)) any {
	h.t.Helper()
	out, err := h.do(name, fn)
	if err != nil {
		h.t.Fatalf("turn on %s: %v", name, err)
	}
	return out
}

func (h *harness) add(ctx context.Context, name string, by int) (int, error) {
	codec := &valueCodec{in: by}
	if _, err := h.rt.Call(ctx, h.ref("tally", name), "add", []byte("x"), codec, Cause{}); err != nil {
		return 0, err
	}
	return codec.out.(int), nil
}

// lastVersion is the object's newest version in the log.
func (h *harness) lastVersion(class, name string) uint64 {
	h.t.Helper()
	rec, err := h.log.Last(context.Background(), class, IDFromName(class, name))
	if errors.Is(err, log.ErrNotFound) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return rec.Event.Version
}

func (h *harness) flush() {
	h.t.Helper()
	if err := h.proj.Flush(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
