package objects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// TestGroupCommit: 32 concurrent callers on one object all get correct,
// distinct answers, and they share far fewer events than calls.
func TestGroupCommit(t *testing.T) {
	const callers, rounds = 32, 10
	h := newHarness(t)
	var wg sync.WaitGroup
	results := make(chan int, callers*rounds)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				v, err := h.add(context.Background(), "gc", 1)
				if err != nil {
					t.Error(err)
					return
				}
				results <- v
			}
		}()
	}
	wg.Wait()
	close(results)
	var got []int
	for v := range results {
		got = append(got, v)
	}
	sort.Ints(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("answers are not 1..%d: position %d holds %d", callers*rounds, i, v)
		}
	}
	events := h.lastVersion("tally", "gc")
	t.Logf("%d calls in %d events", len(got), events)
	if events == 0 || events > uint64(len(got))/2 {
		t.Fatalf("%d calls made %d events: group commit is not coalescing", len(got), events)
	}
}

// TestGroupCommitStalled makes the coalescing deterministic: the first
// append is held until every other caller's turn has run, so exactly two
// events hold all the turns.
func TestGroupCommitStalled(t *testing.T) {
	const callers = 32
	release := make(chan struct{})
	var first atomic.Bool
	h := newHarness(t, func(c *Config) {
		c.Hooks.BeforeAppend = func(class string, _ ID, v uint64) {
			if class == "tally" && first.CompareAndSwap(false, true) {
				<-release
			}
		}
	})
	start := tallyTurns.Load()
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.add(context.Background(), "stalled", 1); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "every turn to run", func() bool { return tallyTurns.Load()-start == callers })
	close(release)
	wg.Wait()
	if v := h.lastVersion("tally", "stalled"); v != 2 {
		t.Fatalf("%d turns made %d events, want 2 (one in flight, the rest coalesced)", callers, v)
	}
	rec, err := h.log.Last(context.Background(), "tally", IDFromName("tally", "stalled"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Event.Turns); n != callers-1 {
		t.Fatalf("second event holds %d turns, want %d", n, callers-1)
	}
}

// TestOutputGate: while an event's append is stalled, neither the turn that
// wrote it nor a later read-only turn answers; both answer after the ack.
func TestOutputGate(t *testing.T) {
	entered := make(chan uint64, 4)
	release := make(chan struct{})
	var acked atomic.Uint64
	h := newHarness(t, func(c *Config) {
		c.Hooks.BeforeAppend = func(class string, _ ID, v uint64) {
			if class == "scratch" && v == 2 {
				entered <- v
				<-release
			}
		}
		c.Hooks.Acked = func(class string, _ ID, v, _ uint64) {
			if class == "scratch" {
				acked.Store(v)
			}
		}
	})
	h.must("gate", put("k", "v1")) // version 1, not stalled

	type answer struct {
		out      any
		err      error
		ackedWas uint64
	}
	writeDone, readDone := make(chan answer, 1), make(chan answer, 1)
	go func() {
		out, err := h.do("gate", put("k", "v2"))
		writeDone <- answer{out, err, acked.Load()}
	}()
	<-entered // version 2 is being appended and held
	go func() {
		out, err := h.do("gate", get("k"))
		readDone <- answer{out, err, acked.Load()}
	}()
	// Give both turns every chance to answer early.
	time.Sleep(200 * time.Millisecond)
	select {
	case a := <-writeDone:
		t.Fatalf("write answered before its event was acknowledged: %+v", a)
	case a := <-readDone:
		t.Fatalf("read of unacknowledged data answered early: %+v", a)
	default:
	}
	close(release)
	w, r := <-writeDone, <-readDone
	if w.err != nil || r.err != nil {
		t.Fatal(w.err, r.err)
	}
	if w.ackedWas < 2 || r.ackedWas < 2 {
		t.Fatalf("answers left before the ack of version 2: write saw %d, read saw %d", w.ackedWas, r.ackedWas)
	}
	if r.out != "v2" {
		t.Fatalf("read %q, want v2", r.out)
	}
}

// TestFencing: two runtimes (two nodes) on one log both activate an object.
// The second writer is fenced, its caller gets ErrFenced, and a retry on a
// fresh activation catches up: no write lost or duplicated.
func TestFencing(t *testing.T) {
	srv := startServer(t)
	a, b := newHarnessOn(t, srv), newHarnessOn(t, srv)
	ctx := context.Background()
	if v, err := a.add(ctx, "x", 1); err != nil || v != 1 {
		t.Fatal(v, err)
	}
	if v, err := b.add(ctx, "x", 10); err != nil || v != 11 { // b activates after a's write: sees it
		t.Fatal(v, err)
	}
	// a's activation is now stale: its next append must be refused.
	_, err := a.add(ctx, "x", 100)
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("stale writer: err %v, want ErrFenced", err)
	}
	if a.fences.Load() != 1 {
		t.Fatalf("fenced hook ran %d times", a.fences.Load())
	}
	// Retrying goes to a new activation that catches up from the log.
	v, err := a.add(ctx, "x", 100)
	if err != nil || v != 111 {
		t.Fatalf("retry after fencing: %d, %v; want 111", v, err)
	}
	if v, err := b.add(ctx, "x", 1000); !errors.Is(err, ErrFenced) {
		t.Fatalf("b is stale now too: %d, %v", v, err)
	}
	// The log holds exactly the three acknowledged writes, versions 1..3.
	var versions []uint64
	var values []int
	err = a.log.Read(ctx, "tally", IDFromName("tally", "x"), 1, func(rec log.Record) error {
		versions = append(versions, rec.Event.Version)
		var n int
		fmt.Sscan(string(rec.Event.Turns[0].Writes[0].Value), &n)
		values = append(values, n)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(versions, values) != "[1 2 3] [1 11 111]" {
		t.Fatalf("log holds versions %v values %v", versions, values)
	}
}

// TestFencedConcurrent drives both nodes at once: every acknowledged
// increment is in the final value exactly once.
func TestFencedConcurrent(t *testing.T) {
	srv := startServer(t)
	nodes := []*harness{newHarnessOn(t, srv), newHarnessOn(t, srv)}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, n := range nodes {
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					_, err := n.add(context.Background(), "contended", 1)
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrFenced):
					default:
						t.Error(err)
					}
				}
			}()
		}
	}
	wg.Wait()
	final, err := nodes[0].add(context.Background(), "contended", 0)
	for errors.Is(err, ErrFenced) {
		final, err = nodes[0].add(context.Background(), "contended", 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	if int64(final) != ok.Load() {
		t.Fatalf("final value %d, acknowledged increments %d", final, ok.Load())
	}
	t.Logf("%d of 200 increments acknowledged, fences: %d and %d", ok.Load(), nodes[0].fences.Load(), nodes[1].fences.Load())
}

// TestPanicResets: a panicking handler fails its turn, the activation is
// reset (in-memory state gone, storage kept) and the runtime goes on.
func TestPanicResets(t *testing.T) {
	h := newHarness(t)
	h.must("p", func(c *Ctx, s *scratch) (any, error) {
		s.mem["n"] = 7
		return nil, c.Storage().Put("k", []byte("kept"))
	})
	_, err := h.do("p", func(c *Ctx, s *scratch) (any, error) {
		c.Storage().Put("k", []byte("lost"))
		panic("handler bug")
	})
	var he *HandlerError
	if !errors.As(err, &he) || !he.Panicked {
		t.Fatalf("panic gave %v, want a HandlerError that panicked", err)
	}
	out := h.must("p", func(c *Ctx, s *scratch) (any, error) {
		v, _, err := c.Storage().Get("k")
		return fmt.Sprint(s.mem["n"], " ", string(v)), err
	})
	if out != "0 kept" {
		t.Fatalf("after panic: %q, want memory reset and storage kept", out)
	}
	if n := h.activations.Load(); n != 2 {
		t.Fatalf("%d activations, want 2 (reset after the panic)", n)
	}
}

// TestEviction: an idle activation is evicted; memory goes, storage stays.
func TestEviction(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	h.must("e", func(c *Ctx, s *scratch) (any, error) {
		s.mem["n"] = 1
		return nil, c.Storage().Put("k", []byte("v"))
	})
	waitFor(t, "eviction", func() bool { return h.evictions.Load() == 1 })
	if h.rt.Stats().Live != 0 {
		t.Fatalf("%d activations live after eviction", h.rt.Stats().Live)
	}
	out := h.must("e", func(c *Ctx, s *scratch) (any, error) {
		v, _, err := c.Storage().Get("k")
		return fmt.Sprint(s.mem["n"], string(v)), err
	})
	if out != "0v" || h.activations.Load() != 2 {
		t.Fatalf("after eviction: %q with %d activations", out, h.activations.Load())
	}
}

// TestCatchUp: a node whose snapshot is behind the log (here: empty) serves
// the object's full state, caught up from the log on activation.
func TestCatchUp(t *testing.T) {
	srv := startServer(t)
	a := newHarnessOn(t, srv)
	for i := 0; i < 20; i++ {
		a.must("c", put(fmt.Sprint("k", i), fmt.Sprint(i)))
	}
	a.must("c", func(c *Ctx, _ *scratch) (any, error) { _, err := c.Storage().Delete("k3"); return nil, err })
	want := a.must("c", list(ListOptions{}))

	b := newHarnessOn(t, srv) // empty snapshot, same log
	if got := b.must("c", list(ListOptions{})); got != want {
		t.Fatalf("caught-up state %q, want %q", got, want)
	}
	b.flush()
	meta, err := b.proj.Meta("scratch", IDFromName("scratch", "c"))
	if err != nil || meta.Version != 21 {
		t.Fatalf("projector after catch-up: %+v %v, want version 21", meta, err)
	}
}

// TestRebuildEqualsLive: a snapshot rebuilt from the log equals the live one.
func TestRebuildEqualsLive(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	for o := 0; o < 8; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("obj", o)
			for i := 0; i < 30; i++ {
				h.must(name, func(c *Ctx, _ *scratch) (any, error) {
					s := c.Storage()
					if i%13 == 12 {
						s.DeleteAll()
					}
					s.Delete(fmt.Sprint("k", (i+5)%7))
					return nil, s.Put(fmt.Sprint("k", i%7), []byte(fmt.Sprint(i)))
				})
			}
		}()
	}
	wg.Wait()
	h.flush()
	fresh, err := projector.Open(projector.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	n, err := Rebuild(context.Background(), h.log, fresh, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("rebuild replayed no events")
	}
	// The rebuilt snapshot also holds the shards' watermarks, which sort
	// after every state, meta and alarm key.
	live, rebuilt := dump(t, h.proj), dump(t, fresh)
	if !bytesHavePrefix(rebuilt, live) {
		t.Fatalf("rebuilt snapshot differs from the live one (%d vs %d bytes)", len(rebuilt), len(live))
	}
	for _, line := range strings.Fields(string(rebuilt[len(live):])) {
		if !strings.HasPrefix(line, "77") { // 'w': a watermark key
			t.Fatalf("rebuilt snapshot has an extra key: %s", line)
		}
	}
	// The rebuild left watermarks at the log's end: a start replays nothing.
	if n, err := CatchUp(context.Background(), h.log, fresh, nil); err != nil || n != 0 {
		t.Fatalf("catch-up after rebuild read %d events (%v), want 0", n, err)
	}
}

func dump(t *testing.T, p *projector.Projector) []byte {
	var b bytes.Buffer
	err := p.Dump(func(k, v []byte) error {
		fmt.Fprintf(&b, "%x=%x\n", k, v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestLargestTurnFits: the largest write set a turn may make, plus the
// largest recorded answer and the event envelope, is accepted by the log
// end to end.
func TestLargestTurnFits(t *testing.T) {
	h := newHarness(t)
	if need := WriteSetBytesMax + turnOverheadBytes + outcomeBytesMax + eventEnvelopeBytes; h.log.MaxEventBytes() < need {
		t.Fatalf("log takes %d bytes, a full turn needs %d", h.log.MaxEventBytes(), need)
	}
	h.must("big", func(c *Ctx, _ *scratch) (any, error) {
		s := c.Storage()
		for i := 0; ; i++ {
			err := s.Put(fmt.Sprintf("key-%04d", i), bytes.Repeat([]byte{'x'}, 1000))
			if errors.Is(err, ErrTooLarge) {
				return nil, nil // the write set is full to the byte
			}
			if err != nil {
				return nil, err
			}
		}
	})
	if v := h.lastVersion("scratch", "big"); v != 1 {
		t.Fatalf("full turn appended %d events", v)
	}
}

// TestSyncMidTurn: Sync makes the turn's writes durable before it returns;
// a later error does not undo them.
func TestSyncMidTurn(t *testing.T) {
	h := newHarness(t)
	_, err := h.do("s", func(c *Ctx, _ *scratch) (any, error) {
		c.Storage().Put("synced", []byte("1"))
		if err := c.Storage().Sync(); err != nil {
			return nil, err
		}
		if v := h.lastVersion("scratch", "s"); v != 1 {
			return nil, fmt.Errorf("after Sync the log is at version %d", v)
		}
		c.Storage().Put("unsynced", []byte("1"))
		return nil, errors.New("fail after sync")
	})
	if err == nil || err.Error() != "fail after sync" {
		t.Fatalf("turn: %v", err)
	}
	out := h.must("s", func(c *Ctx, _ *scratch) (any, error) {
		kvs, err := c.Storage().List(ListOptions{})
		return render(kvs), err
	})
	if out != "synced=1" {
		t.Fatalf("state %q, want only the synced write", out)
	}
}
