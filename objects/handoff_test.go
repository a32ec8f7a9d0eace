package objects

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestHandoff: two nodes share one log; each claims an object by asking
// the other to release it before loading. The object moves back and forth
// without a fence (no stale activation is ever left to write) and no write
// is lost; the releasing side's activation is gone once Release returns.
func TestHandoff(t *testing.T) {
	srv := startServer(t)
	var a, b *harness
	claimFrom := func(other **harness) harnessOpt {
		return func(c *Config) {
			c.Claim = func(ctx context.Context, class string, id ID) error {
				if _, err := (*other).rt.Release(ctx, class, id); err != nil {
					t.Errorf("release: %v", err)
				}
				return nil
			}
		}
	}
	a = newHarnessOn(t, srv, claimFrom(&b))
	b = newHarnessOn(t, srv, claimFrom(&a))
	ctx := context.Background()
	want := 0
	for round := range 4 {
		for _, h := range []*harness{a, b} {
			want++
			got, err := h.add(ctx, "moving", 1)
			if err != nil || got != want {
				t.Fatalf("round %d: add = %d, %v; want %d", round, got, err, want)
			}
			other := a
			if h == a {
				other = b
			}
			if live := other.rt.Stats().Live; live != 0 {
				t.Fatalf("round %d: the other node still holds %d activations", round, live)
			}
		}
	}
	if f := a.fences.Load() + b.fences.Load(); f != 0 {
		t.Fatalf("%d fences: an activation was left behind", f)
	}
	// ReleaseIf picks by object; Release of an object not active is a no-op.
	if n := a.rt.ReleaseIf(func(string, ID) bool { return true }); n != 0 {
		t.Fatalf("ReleaseIf released %d on a node without activations", n)
	}
	if n := b.rt.ReleaseIf(func(class string, _ ID) bool { return class == "tally" }); n != 1 {
		t.Fatalf("ReleaseIf released %d, want 1", n)
	}
	waitFor(t, "release", func() bool { return b.rt.Stats().Live == 0 })
	if ok, err := b.rt.Release(ctx, "tally", IDFromName("tally", "moving")); ok || err != nil {
		t.Fatalf("release of a released object: %v %v", ok, err)
	}
}

// sockroom accepts sockets and echoes messages.
type sockroom struct{}

func (*sockroom) WebSocketMessage(c *Ctx, ws *WebSocket, m Message) error {
	return ws.Send("echo " + string(m.Data))
}

// recordingConn is a SocketConn that records what reaches the gateway.
type recordingConn struct {
	mu  sync.Mutex
	ops []string
}

func (r *recordingConn) Send(m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, "send "+string(m.Data))
	return nil
}

func (r *recordingConn) Close(code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, fmt.Sprint("close ", code))
}

func (r *recordingConn) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// TestReleaseClosesSockets: an object released to another node closes its
// sockets here with 1012 after what its last turns sent, whether its
// activation is live or it hibernates, and forgets them.
func TestReleaseClosesSockets(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("sockroom", func() *sockroom { return &sockroom{} }))
		c.IdleTimeout = 50 * time.Millisecond
	})
	ctx := context.Background()
	req := httptest.NewRequest("GET", "/ws", nil)
	connect := func(name string) (Ref, SocketID, *recordingConn) {
		ref := h.ref("sockroom", name)
		conn := &recordingConn{}
		id, err := h.rt.WebSocketConnect(ctx, ref, req, conn, Cause{})
		if err != nil {
			t.Fatal(err)
		}
		return ref, id, conn
	}

	// Live: the echo of the last turn leaves before the close.
	live, liveID, liveConn := connect("live")
	if err := h.rt.WebSocketMessage(ctx, live, liveID, Message{Data: []byte("hi")}, Cause{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.rt.Release(ctx, "sockroom", live.ID); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if got := liveConn.got(); !slices.Equal(got, []string{"send echo hi", "close 1012"}) {
		t.Fatalf("live object's socket saw %q", got)
	}
	if err := h.rt.WebSocketMessage(ctx, live, liveID, Message{Data: []byte("again")}, Cause{}); !errors.Is(err, ErrSocketClosed) {
		t.Fatalf("message after the release: %v, want ErrSocketClosed", err)
	}

	// Hibernating: no activation, the socket is still in the hub.
	_, _, sleepConn := connect("sleeping")
	_, _, stayConn := connect("staying")
	waitFor(t, "eviction", func() bool { return h.rt.Stats().Live == 0 })
	if n := h.rt.ReleaseIf(func(_ string, id ID) bool { return id == IDFromName("sockroom", "sleeping") }); n != 1 {
		t.Fatalf("ReleaseIf released %d objects, want 1", n)
	}
	if got := sleepConn.got(); !slices.Equal(got, []string{"close 1012"}) {
		t.Fatalf("hibernating object's socket saw %q", got)
	}
	if got := stayConn.got(); len(got) != 0 {
		t.Fatalf("an object that stays saw %q", got)
	}
}

// TestClaimRefusedFailsTheLoad: while Claim fails (another node still
// holds the object), the activation does not load and its requests fail
// with the claim's error, having run nothing; once Claim succeeds the
// object loads with nothing lost.
func TestClaimRefusedFailsTheLoad(t *testing.T) {
	var (
		mu     sync.Mutex
		refuse = true
		claims int
	)
	h := newHarness(t, func(c *Config) {
		c.Claim = func(ctx context.Context, class string, id ID) error {
			mu.Lock()
			defer mu.Unlock()
			claims++
			if refuse {
				return fmt.Errorf("%w: n2 did not release it in time", ErrMoved)
			}
			return nil
		}
	})
	ctx := context.Background()
	if _, err := h.add(ctx, "held", 1); !errors.Is(err, ErrMoved) {
		t.Fatalf("add while the claim is refused: %v, want ErrMoved", err)
	}
	mu.Lock()
	refuse = false
	// The refused add may have claimed twice: an activation that ends
	// before it admits the request bounces it to the next one.
	refused := claims
	mu.Unlock()
	got, err := h.add(ctx, "held", 1)
	if err != nil || got != 1 {
		t.Fatalf("add after the claim went through = %d, %v; want 1 (the refused one must not have run)", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused < 1 || claims-refused != 1 {
		t.Fatalf("%d claims while refused, %d after; want at least one, then one for the load", refused, claims-refused)
	}
}
