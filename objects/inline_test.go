package objects

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// inlineStack reports whether the calling goroutine is running a turn
// inline (runInline on the caller's goroutine), and whether it is the
// activation's own goroutine (run).
func inlineStack() (inline, onRun bool) {
	st := goroutineStack()
	return strings.Contains(st, "(*activation).runInline"), strings.Contains(st, "(*activation).run(")
}

// goroutineStack is the calling goroutine's stack.
func goroutineStack() string {
	buf := make([]byte, 64<<10)
	return string(buf[:runtime.Stack(buf, false)])
}

// TestInlineTurn: a request that finds its activation idle runs on the
// caller's goroutine; one that arrives while a turn runs waits in the
// mailbox and runs after it, on the activation's goroutine: turns of one
// object still never overlap.
func TestInlineTurn(t *testing.T) {
	h := newHarness(t)
	type where struct {
		inline, onRun bool
		err           error
	}
	// One attempt on object name: the first turn blocks, a second request
	// queues behind it.
	attempt := func(name string) (w1, w2 where) {
		h.must(name, put("k", "v0")) // activated and loaded
		var inside atomic.Int32
		overlap := func() error {
			if inside.Add(1) != 1 {
				return errors.New("two turns of one object ran at once")
			}
			return nil
		}
		entered, release := make(chan struct{}), make(chan struct{})
		first, second := make(chan where, 1), make(chan where, 1)
		go func() {
			var w where
			_, err := h.do(name, func(c *Ctx, _ *scratch) (any, error) {
				w.inline, w.onRun = inlineStack()
				w.err = overlap()
				close(entered)
				<-release
				inside.Add(-1)
				return nil, c.Storage().Put("k", []byte("v1"))
			})
			w.err = errors.Join(w.err, err)
			first <- w
		}()
		<-entered
		go func() {
			var w where
			out, err := h.do(name, func(c *Ctx, _ *scratch) (any, error) {
				w.inline, w.onRun = inlineStack()
				w.err = overlap()
				defer inside.Add(-1)
				v, _, err := c.Storage().Get("k")
				return string(v), err
			})
			if err == nil && out != "v1" {
				err = errors.New("the second turn did not see the first's write: " + out.(string))
			}
			w.err = errors.Join(w.err, err)
			second <- w
		}()
		waitFor(t, "the second request to queue", func() bool {
			a := h.live("scratch", name)
			return a != nil && a.queued()
		})
		select {
		case w := <-second:
			t.Fatalf("the second turn answered while the first ran: %+v", w)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		w1, w2 = <-first, <-second
		if w1.err != nil || w2.err != nil {
			t.Fatal(w1.err, w2.err)
		}
		if w2.inline || !w2.onRun {
			t.Fatalf("the queued turn ran inline=%v on run=%v, want on the activation's goroutine", w2.inline, w2.onRun)
		}
		return w1, w2
	}
	// The first turn runs inline only if it finds the activation idle,
	// which a loaded machine may delay past the previous answer (its ack
	// still being handled): the inline path must be taken in a few
	// attempts.
	for i := 0; ; i++ {
		w1, _ := attempt(fmt.Sprint("in", i))
		if w1.inline && !w1.onRun {
			return
		}
		if i == 19 {
			t.Fatalf("in 20 attempts the first turn (idle activation) never ran on the caller's goroutine (last: inline=%v on run=%v)", w1.inline, w1.onRun)
		}
	}
}

// TestInlinePanic: a turn that panics on the caller's goroutine is
// contained there as on the activation's: the caller gets a HandlerError,
// the activation resets, and the next request runs on a fresh one.
func TestInlinePanic(t *testing.T) {
	h := newHarness(t)
	// The panicking turn runs inline only if it finds the activation
	// idle (see TestInlineTurn): a few attempts, each on its own object.
	for i := 0; ; i++ {
		name := fmt.Sprint("ip", i)
		h.must(name, put("k", "kept"))
		before := h.activations.Load()
		var inline bool
		_, err := h.do(name, func(c *Ctx, _ *scratch) (any, error) {
			inline, _ = inlineStack()
			panic("handler bug")
		})
		var he *HandlerError
		if !errors.As(err, &he) || !he.Panicked {
			t.Fatalf("panic gave %v, want a HandlerError that panicked", err)
		}
		if out := h.must(name, get("k")); out != "kept" {
			t.Fatalf("after the panic read %q, want kept", out)
		}
		if n := h.activations.Load() - before; n != 1 {
			t.Fatalf("%d new activations after the panic, want 1 (reset)", n)
		}
		if inline {
			return
		}
		if i == 19 {
			t.Fatal("in 20 attempts the panicking turn never ran inline: this test checks the inline path")
		}
	}
}

// live returns class/name's activation on h, nil if there is none.
func (h *harness) live(class, name string) *activation {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	return h.rt.mu.acts[actKey{class, IDFromName(class, name)}]
}

// TestInlineOutputGate: a write run inline on its caller's goroutine does
// not answer before its event is acknowledged, and a read that runs inline
// while that append is out (the lock is free meanwhile) waits for the same
// ack: the output gate holds for turns off the activation's goroutine.
func TestInlineOutputGate(t *testing.T) {
	// The append of version hold is held until release is closed.
	type gate struct{ entered, release chan struct{} }
	var cur atomic.Pointer[gate]
	var hold, acked atomic.Uint64
	h := newHarness(t, func(c *Config) {
		c.Hooks.BeforeAppend = func(class string, _ ID, v uint64) {
			if class == "scratch" && v == hold.Load() {
				g := cur.Load()
				g.entered <- struct{}{}
				<-g.release
			}
		}
		c.Hooks.Acked = func(class string, _ ID, v, _ uint64) {
			if class == "scratch" {
				acked.Store(v)
			}
		}
	})
	h.must("og", put("k", "v1")) // version 1, not held

	type answer struct {
		out      any
		err      error
		inline   bool
		ackedWas uint64
	}
	turn := func(fn turnFn, done chan<- answer) {
		var inline bool
		out, err := h.do("og", func(c *Ctx, s *scratch) (any, error) {
			inline, _ = inlineStack()
			return fn(c, s)
		})
		done <- answer{out, err, inline, acked.Load()}
	}
	// The write runs inline only if it finds the activation idle, which
	// a loaded machine may delay past the previous answer (the previous
	// ack still being handled, say): the gate is checked every time, and
	// the inline path must have been taken once in a few attempts.
	for v := uint64(2); ; v++ {
		g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
		cur.Store(g)
		hold.Store(v)
		want := fmt.Sprint("v", v)
		writeDone, readDone := make(chan answer, 1), make(chan answer, 1)
		go turn(put("k", want), writeDone)
		<-g.entered // version v is being appended, and held
		go turn(get("k"), readDone)
		select {
		case a := <-writeDone:
			t.Fatalf("the write answered before its event was acknowledged: %+v", a)
		case a := <-readDone:
			t.Fatalf("a read of the unacknowledged write answered early: %+v", a)
		case <-time.After(200 * time.Millisecond):
		}
		close(g.release)
		w, r := <-writeDone, <-readDone
		if w.err != nil || r.err != nil {
			t.Fatal(w.err, r.err)
		}
		if w.ackedWas < v || r.ackedWas < v || r.out != want {
			t.Fatalf("answers left before the ack of version %d (write saw %d, read saw %d) or the read missed it (%v)", v, w.ackedWas, r.ackedWas, r.out)
		}
		if w.inline && r.inline {
			return
		}
		if v == 21 {
			t.Fatalf("in 20 attempts the write and the read never both ran on their callers' goroutines (last: write %v, read %v)", w.inline, r.inline)
		}
	}
}
