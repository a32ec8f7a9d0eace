package log

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer runs an embedded server with fsync before every ack on a
// random port in a temporary directory.
func startServer(t testing.TB) *Server {
	t.Helper()
	srv, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return srv
}

// openLog opens a log on srv and closes it at the end of the test.
func openLog(t testing.TB, srv *Server, cfg Config) *Log {
	t.Helper()
	cfg.Server = srv
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// testEvent is event version v of object id of class "test", with one
// put of val.
func testEvent(id ID, v uint64, val string) *Event {
	return &Event{
		Format: FormatVersion, Class: "test", ID: id, Version: v, Time: int64(v),
		Turns: []Turn{{Cause: Cause{Via: ViaRPC, Method: "Set"}, Writes: []Write{{Op: OpPut, Key: "k", Value: []byte(val)}}}},
	}
}

func value(r Record) string { return string(r.Event.Turns[0].Writes[0].Value) }

// objID is a fixed id per i, spread over shards like real ids.
func objID(i int) ID {
	var id ID
	copy(id[:], fmt.Sprintf("%08x-object-%08d", uint32(i)*2654435761, i))
	return id
}

// checkFor polls f until it returns nil or total has passed.
func checkFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", total, err)
		}
		time.Sleep(interval)
	}
}

// readAll is every record Read returns from seq.
func readAll(t testing.TB, l *Log, class string, id ID, from uint64) []Record {
	t.Helper()
	var recs []Record
	if err := l.Read(context.Background(), class, id, from, func(r Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatalf("read %s from %d: %v", id, from, err)
	}
	return recs
}

// gate pauses the committers before their publishes while it is shut,
// so that a test can choose what one batch holds. It records the size of
// every publish.
type gate struct {
	mu    sync.Mutex
	shut  bool
	pass  chan struct{} // one publish through a shut gate per token
	sizes chan int
}

func newGate() *gate {
	return &gate{pass: make(chan struct{}, 16), sizes: make(chan int, 4096)}
}

func (g *gate) hooks() *hooks {
	return &hooks{beforePublish: func(ctx context.Context, _, n int) {
		g.sizes <- n
		g.mu.Lock()
		shut := g.shut
		g.mu.Unlock()
		if !shut {
			return
		}
		select {
		case <-g.pass:
		case <-ctx.Done():
		}
	}}
}

func (g *gate) setShut(shut bool) {
	g.mu.Lock()
	g.shut = shut
	g.mu.Unlock()
}

// nextSize is the size of the next publish that reaches the gate.
func (g *gate) nextSize(t testing.TB) int {
	t.Helper()
	select {
	case n := <-g.sizes:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no publish reached the gate")
		return 0
	}
}

// drain forgets the sizes recorded so far.
func (g *gate) drain() {
	for {
		select {
		case <-g.sizes:
		default:
			return
		}
	}
}

// queued waits until n appends wait in shard's committer queue.
func queued(t testing.TB, l *Log, shard, n int) {
	t.Helper()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		c := l.committers[shard]
		if got := len(c.in) + int(c.held.Load()); got < n {
			return fmt.Errorf("%d appends queued, want %d", got, n)
		}
		return nil
	})
}
