package objects

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// autoroom sets an auto-response on every connect, as the chat class does.
type autoroom struct{}

func (*autoroom) WebSocketConnect(c *Ctx, ws *WebSocket, r *http.Request) error {
	return c.SetAutoResponse("ping", "pong")
}

// The socket hub forgets an object with its last socket, auto-response
// included: a node that saw many objects' sockets come and go keeps
// nothing of them.
func TestHubForgetsObjectsWithoutSockets(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Classes = append(c.Classes, Define("autoroom", func() *autoroom { return &autoroom{} }))
	})
	ctx := context.Background()
	req := httptest.NewRequest("GET", "/ws", nil)
	const objects = 20
	type sock struct {
		ref Ref
		id  SocketID
	}
	var socks []sock
	for i := 0; i < objects; i++ {
		ref := h.ref("autoroom", fmt.Sprint("room", i))
		for j := 0; j < 2; j++ {
			id, err := h.rt.WebSocketConnect(ctx, ref, req, &recordingConn{}, Cause{})
			if err != nil {
				t.Fatal(err)
			}
			socks = append(socks, sock{ref, id})
		}
	}
	if n := h.rt.Stats().SocketObjects; n != objects {
		t.Fatalf("hub holds %d objects with sockets open, want %d", n, objects)
	}
	if resp, ok := h.rt.WebSocketAutoResponse(socks[0].ref, socks[0].id, []byte("ping")); !ok || resp != "pong" {
		t.Fatalf("auto-response %q %v", resp, ok)
	}
	for i, s := range socks {
		if i%4 == 0 {
			h.rt.WebSocketDrop(s.ref, s.id) // the gateway lost it
			continue
		}
		if err := h.rt.WebSocketClose(ctx, s.ref, s.id, 1000, "bye", Cause{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.rt.Stats().SocketObjects; n != 0 {
		t.Fatalf("hub holds %d objects after every socket closed, want 0", n)
	}
	// Connecting again sets the pair again.
	id, err := h.rt.WebSocketConnect(ctx, socks[0].ref, req, &recordingConn{}, Cause{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, ok := h.rt.WebSocketAutoResponse(socks[0].ref, id, []byte("ping")); !ok || resp != "pong" {
		t.Fatalf("auto-response after a reconnect %q %v", resp, ok)
	}
}
