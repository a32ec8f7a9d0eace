package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// echo writes what it is given and answers it, as JSON: its answers can be
// compared byte for byte between a first attempt and a retry.
type echo struct{}

var echoTurns atomic.Int64

type echoIn struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Fail  bool   `json:"fail,omitempty"`  // refuse with a 409 after writing
	Sync  bool   `json:"sync,omitempty"`  // Sync the write before answering
	Read  bool   `json:"read,omitempty"`  // write nothing
	Pad   int    `json:"pad,omitempty"`   // bytes of padding in the answer
	Turns int64  `json:"turns,omitempty"` // ignored: makes bodies differ
}

type echoOut struct {
	Value string `json:"value"`
	Turn  int64  `json:"turn"` // which turn answered: a replay repeats it
	Pad   string `json:"pad,omitempty"`
}

func (e *echo) Put(c *Ctx, in echoIn) (echoOut, error) {
	n := echoTurns.Add(1)
	if !in.Read {
		if err := c.Storage().Put(in.Key, []byte(in.Value)); err != nil {
			return echoOut{}, err
		}
	}
	if in.Sync {
		if err := c.Storage().Sync(); err != nil {
			return echoOut{}, err
		}
	}
	if in.Fail {
		return echoOut{}, Errorf(409, "refused", "refused at turn %d", n)
	}
	return echoOut{Value: in.Value, Turn: n, Pad: strings.Repeat("p", in.Pad)}, nil
}

type jsonTestCodec struct{}

func (jsonTestCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonTestCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func (h *harness) echo(ctx context.Context, name, key string, in echoIn) (string, error) {
	body, _ := json.Marshal(in)
	out, err := h.rt.Call(ctx, h.ref("echo", name), "put", body, jsonTestCodec{}, Cause{IdemKey: key})
	return string(out), err
}

func TestIdempotentCallRunsOnce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	first, err := h.echo(ctx, "a", "k1", echoIn{Key: "x", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	turns := echoTurns.Load()
	again, err := h.echo(ctx, "a", "k1", echoIn{Key: "x", Value: "1"})
	if err != nil || again != first {
		t.Fatalf("retry answered %s, %v; want %s", again, err, first)
	}
	if echoTurns.Load() != turns || h.lastVersion("echo", "a") != 1 {
		t.Fatalf("the retry ran: %d turns, log at v%d", echoTurns.Load()-turns+1, h.lastVersion("echo", "a"))
	}
	// Answered from the snapshot's index once the projector has it.
	h.flush()
	if again, err = h.echo(ctx, "a", "k1", echoIn{Key: "x", Value: "1"}); err != nil || again != first {
		t.Fatalf("retry after projection answered %s, %v; want %s", again, err, first)
	}
	// The same key on another object, or another key, runs.
	if _, err := h.echo(ctx, "b", "k1", echoIn{Key: "x", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.echo(ctx, "a", "k2", echoIn{Key: "x", Value: "2"}); err != nil {
		t.Fatal(err)
	}
	if echoTurns.Load() != turns+2 || h.lastVersion("echo", "a") != 2 {
		t.Fatalf("other keys: %d turns, log at v%d; want 2 more turns, v2", echoTurns.Load()-turns, h.lastVersion("echo", "a"))
	}
	rec, err := h.log.Last(ctx, "echo", IDFromName("echo", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if c := rec.Event.Turns[0].Cause; c.IdemKey != "k2" || c.Outcome == nil || c.Outcome.Status != 200 || len(c.IdemHash) != 32 {
		t.Fatalf("the event's cause is %+v, want key k2 with its outcome", c)
	}
}

func TestIdempotencyKeyReused(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "2"})
	if !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyKeyReused", err)
	}
	body, _ := json.Marshal(echoIn{Key: "x", Value: "1"})
	if _, err := h.rt.Call(ctx, h.ref("tally", "a"), "add", []byte("1"), jsonTestCodec{}, Cause{IdemKey: "k"}); err != nil {
		t.Fatalf("the same key on another object: %v", err)
	}
	if h.lastVersion("echo", "a") != 1 {
		t.Fatal("a refused retry wrote")
	}
	for _, bad := range []string{"", strings.Repeat("k", log.IdemKeyBytesMax+1), "a\nb", "\xff", "tab\there"} {
		_, err := h.rt.Call(ctx, h.ref("echo", "a"), "put", body, jsonTestCodec{}, Cause{IdemKey: bad})
		if bad == "" {
			continue // no key: an ordinary call
		}
		if !errors.Is(err, ErrInvalidIdempotencyKey) {
			t.Fatalf("key %q: %v, want ErrInvalidIdempotencyKey", bad, err)
		}
	}
	if _, err := h.echo(ctx, "a", strings.Repeat("é", log.IdemKeyBytesMax/2), echoIn{Key: "x", Value: "3"}); err != nil {
		t.Fatalf("a 256-byte UTF-8 key: %v", err)
	}
}

// TestIdempotencyKeyIsThePrincipals: a key belongs to the principal that
// used it first; another principal's request with the same key and body is
// refused and does not get the first answer.
func TestIdempotencyKeyIsThePrincipals(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	body, _ := json.Marshal(echoIn{Key: "x", Value: "1"})
	call := func(principal string) (string, error) {
		out, err := h.rt.Call(ctx, h.ref("echo", "a"), "put", body, jsonTestCodec{}, Cause{IdemKey: "k", Principal: principal})
		return string(out), err
	}
	first, err := call("tok-alice")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := call("tok-alice"); err != nil || again != first {
		t.Fatalf("alice's retry: %s %v, want %s", again, err, first)
	}
	if out, err := call("tok-mallory"); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("mallory with alice's key: %s %v, want ErrIdempotencyKeyReused", out, err)
	}
	if out, err := call(""); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("no principal with alice's key: %s %v, want ErrIdempotencyKeyReused", out, err)
	}
	if h.lastVersion("echo", "a") != 1 {
		t.Fatal("a refused request wrote")
	}
}

// TestIdempotentRetryWhileInFlight: retries that arrive while the first
// attempt's event is still being appended run nothing and get its answer.
func TestIdempotentRetryWhileInFlight(t *testing.T) {
	release := make(chan struct{})
	var stalled atomic.Bool
	var replays atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.Hooks.BeforeAppend = func(class string, _ ID, _ uint64) {
			if class == "echo" && stalled.CompareAndSwap(false, true) {
				<-release
			}
		}
		c.Hooks.Replayed = func(string, ID) { replays.Add(1) }
	})
	ctx := context.Background()
	turns := echoTurns.Load()
	const n = 8
	answers := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"})
		}()
	}
	waitFor(t, "the first attempt's append", stalled.Load)
	// The others find the first attempt's record while its event is still
	// being appended; their answers wait for its acknowledgement.
	waitFor(t, "the retries to find the record", func() bool { return replays.Load() == n-1 })
	if done := h.lastVersion("echo", "a"); done != 0 {
		t.Fatalf("the stalled append is in the log (v%d) before its release", done)
	}
	close(release)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || answers[i] != answers[0] {
			t.Fatalf("attempt %d: %s, %v; want %s", i, answers[i], errs[i], answers[0])
		}
	}
	if echoTurns.Load() != turns+1 || h.lastVersion("echo", "a") != 1 || replays.Load() != n-1 {
		t.Fatalf("%d turns ran, %d replays, log at v%d; want 1, %d, v1", echoTurns.Load()-turns, replays.Load(), h.lastVersion("echo", "a"), n-1)
	}
}

// TestIdempotentRetryAfterRestart: a node that starts on the log alone (a
// crash lost its snapshot, or the object moved here) finds the record.
func TestIdempotentRetryAfterRestart(t *testing.T) {
	srv := startServer(t)
	h1 := newHarnessOn(t, srv)
	ctx := context.Background()
	first, err := h1.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	h1.close()
	h2 := newHarnessOn(t, srv)
	turns := echoTurns.Load()
	if again, err := h2.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"}); err != nil || again != first {
		t.Fatalf("retry on a new node: %s, %v; want %s", again, err, first)
	}
	if _, err := h2.echo(ctx, "a", "k", echoIn{Key: "x", Value: "9"}); !errors.Is(err, ErrIdempotencyKeyReused) {
		t.Fatalf("other body on a new node: %v, want ErrIdempotencyKeyReused", err)
	}
	if echoTurns.Load() != turns || h2.lastVersion("echo", "a") != 1 {
		t.Fatal("the retry ran on the new node")
	}
}

// TestIdempotencyWindow: after the class's window the key is forgotten:
// the request runs again, and the sweep drops the record from the snapshot.
func TestIdempotencyWindow(t *testing.T) {
	var skew atomic.Int64
	h := newHarness(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		c.IdempotencySweepEvery = 10 * time.Millisecond
	})
	ctx := context.Background()
	id := IDFromName("echo", "a")
	if _, err := h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	h.flush()
	skew.Store(int64(59 * time.Minute)) // inside the class's hour
	turns := echoTurns.Load()
	if _, err := h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "1"}); err != nil || echoTurns.Load() != turns {
		t.Fatalf("inside the window: %v, %d turns ran", err, echoTurns.Load()-turns)
	}
	if _, ok, _ := h.proj.Idem("echo", id, "k"); !ok {
		t.Fatal("the sweep dropped a record inside the window")
	}
	skew.Store(int64(time.Hour + time.Minute))
	if _, err := h.echo(ctx, "a", "k", echoIn{Key: "x", Value: "2"}); err != nil {
		t.Fatalf("after the window, other body: %v", err)
	}
	if echoTurns.Load() != turns+1 || h.lastVersion("echo", "a") != 2 {
		t.Fatal("after the window the request did not run again")
	}
	// The sweep keeps the longest window of the node's classes (the default
	// 24 h, for tally), so move past it too.
	skew.Store(int64(DefaultIdempotencyWindow + time.Hour))
	h.flush()
	waitFor(t, "the sweep", func() bool { _, ok, _ := h.proj.Idem("echo", id, "k"); return !ok })
}

// TestIdempotentOutcomes: what is recorded besides a plain answer.
func TestIdempotentOutcomes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	// A keyed turn that writes nothing leaves no event: a retry runs again.
	turns := echoTurns.Load()
	for range 2 {
		if _, err := h.echo(ctx, "read", "k", echoIn{Read: true}); err != nil {
			t.Fatal(err)
		}
	}
	if echoTurns.Load() != turns+2 || h.lastVersion("echo", "read") != 0 {
		t.Fatal("a keyed read was recorded")
	}

	// A refusal discards the writes and is not recorded either.
	if _, err := h.echo(ctx, "fail", "k", echoIn{Key: "x", Value: "1", Fail: true}); err == nil {
		t.Fatal("the refusal succeeded")
	}
	if h.lastVersion("echo", "fail") != 0 {
		t.Fatal("a refused turn wrote")
	}

	// A refusal after a Sync made writes durable is recorded with them.
	_, err := h.echo(ctx, "sync", "k", echoIn{Key: "x", Value: "1", Sync: true, Fail: true})
	var ce *ClientError
	if !errors.As(err, &ce) || ce.Status != 409 {
		t.Fatalf("synced refusal: %v", err)
	}
	turns = echoTurns.Load()
	_, again := h.echo(ctx, "sync", "k", echoIn{Key: "x", Value: "1", Sync: true, Fail: true})
	var ce2 *ClientError
	if !errors.As(again, &ce2) || *ce2 != *ce || echoTurns.Load() != turns {
		t.Fatalf("retry of a synced refusal: %v (ran %d turns), want %v replayed", again, echoTurns.Load()-turns, err)
	}

	// An answer too large to keep: the retry is told so, and runs nothing.
	in := echoIn{Key: "x", Value: "1", Pad: log.OutcomeBodyBytesMax}
	if _, err := h.echo(ctx, "big", "k", in); err != nil {
		t.Fatal(err)
	}
	turns = echoTurns.Load()
	if _, err := h.echo(ctx, "big", "k", in); !errors.Is(err, ErrOutcomeNotKept) || echoTurns.Load() != turns {
		t.Fatalf("retry of a large answer: %v, %d turns; want ErrOutcomeNotKept", err, echoTurns.Load()-turns)
	}
}

// TestIdempotentRetryFromCheckpoint: a node that loads the object from a
// checkpoint (its snapshot is far behind, or the class drops old events)
// skips the events that hold the keys' records; each checkpoint carries
// the records since the one before it, and the node indexes those of the
// window (k0-k3 from the first checkpoint, k4-k7 from the second), so
// retries are still answered.
func TestIdempotentRetryFromCheckpoint(t *testing.T) {
	const every = 4
	for _, retain := range []bool{false, true} {
		t.Run(fmt.Sprint("retain=", retain), func(t *testing.T) {
			srv := startServer(t)
			cfg := func(c *Config) {
				c.Checkpoints = CheckpointConfig{Every: every}
				if retain {
					c.Checkpoints.Retain = map[string]bool{"echo": true}
				}
			}
			lcfg := log.Config{AllowRetention: retain}
			h1 := newHarnessWith(t, srv, lcfg, cfg)
			ctx := context.Background()
			answers := map[string]string{}
			for i := range 2 * every {
				key := fmt.Sprint("k", i)
				out, err := h1.echo(ctx, "a", key, echoIn{Key: "x", Value: key})
				if err != nil {
					t.Fatal(err)
				}
				answers[key] = out
			}
			if err := h1.rt.FlushCheckpoints(ctx); err != nil {
				t.Fatal(err)
			}
			if s := h1.rt.CheckpointStats(); s.Written != 2 {
				t.Fatalf("checkpoints %+v, want 2 written", s)
			}
			h1.close()

			h2 := newHarnessWith(t, srv, lcfg, cfg)
			turns := echoTurns.Load()
			before := h2.log.Stats().Read
			for key, want := range answers {
				if got, err := h2.echo(ctx, "a", key, echoIn{Key: "x", Value: key}); err != nil || got != want {
					t.Fatalf("retry of %s on a node that loaded from the checkpoint: %s, %v; want %s", key, got, err, want)
				}
			}
			if reads := h2.log.Stats().Read - before; reads != 0 {
				t.Fatalf("the new node read %d events: it did not load from the checkpoint, so this proves nothing", reads)
			}
			if echoTurns.Load() != turns || h2.lastVersion("echo", "a") != 2*every {
				t.Fatalf("retries ran %d turns, log at v%d", echoTurns.Load()-turns, h2.lastVersion("echo", "a"))
			}
		})
	}
}
