package classes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

type chatFrame struct {
	Type    string                `json:"type"`
	You     string                `json:"you"`
	Name    string                `json:"name"`
	Members []string              `json:"members"`
	Count   int                   `json:"count"`
	History []classes.ChatMessage `json:"history"`
	Message *classes.ChatMessage  `json:"message"`
	Error   string                `json:"error"`
}

func startChat(t *testing.T) (*testnode.Node, string) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.CloseWebSockets(ctx)
		srv.Close()
	})
	return n, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func joinChat(t *testing.T, base, room, name string) (*websocket.Conn, chatFrame) {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(base+"/v1/objects/chat/"+room+"/ws?name="+name, nil)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	f := readFrame(t, c)
	if f.Type != "welcome" || f.You != name {
		t.Fatalf("first frame for %s: %+v", name, f)
	}
	return c, f
}

func readFrame(t *testing.T, c *websocket.Conn) chatFrame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var f chatFrame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

// TestChatBroadcastOrder: 20 members each send 50 messages at once; every
// member receives all 1000 in one order, which is the order of the room's
// log, and a newcomer gets the last 100.
func TestChatBroadcastOrder(t *testing.T) {
	const clients, each = 20, 50
	n, base := startChat(t)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i], _ = joinChat(t, base, "order", fmt.Sprintf("c%d", i))
	}
	received := make([][]classes.ChatMessage, clients)
	errs := make(chan error, 2*clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(2)
		go func() { // reader
			defer wg.Done()
			for len(received[i]) < clients*each {
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				var f chatFrame
				if err := c.ReadJSON(&f); err != nil {
					errs <- fmt.Errorf("client %d after %d messages: %w", i, len(received[i]), err)
					return
				}
				if f.Type == "message" {
					received[i] = append(received[i], *f.Message)
				}
			}
		}()
		go func() { // writer: its own messages in its own order
			defer wg.Done()
			for j := range each {
				if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "c%d-%d", i, j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := received[0]
	for i, got := range received {
		for k := range got {
			if got[k].Seq != int64(k+1) || got[k].Text != want[k].Text || got[k].Name != want[k].Name {
				t.Fatalf("client %d message %d: %+v, client 0 got %+v", i, k, got[k], want[k])
			}
		}
	}
	// Each sender's messages keep its order.
	next := make([]int, clients)
	for _, m := range want {
		var c, j int
		fmt.Sscanf(m.Text, "c%d-%d", &c, &j)
		if m.Name != fmt.Sprintf("c%d", c) || j != next[c] {
			t.Fatalf("message %+v out of its sender's order (want c%d-%d)", m, c, next[c])
		}
		next[c]++
	}
	// The log holds the same messages in the same order.
	ref, _ := n.Runtime.RefByName("chat", "order")
	var logged []classes.ChatMessage
	err := n.Runtime.History(context.Background(), ref, objects.HistoryRange{}, func(e objects.HistoryEntry) error {
		for _, tn := range e.Turns {
			for _, ch := range tn.Changes {
				if ch.Op == "put" && strings.HasPrefix(ch.Key, "msg:") {
					var m classes.ChatMessage
					if err := json.Unmarshal(ch.New, &m); err != nil {
						return err
					}
					logged = append(logged, m)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(logged) != len(want) {
		t.Fatalf("log holds %d messages, clients got %d", len(logged), len(want))
	}
	for k := range logged {
		if logged[k].Seq != want[k].Seq || logged[k].Text != want[k].Text || !logged[k].At.Equal(want[k].At) {
			t.Fatalf("log message %d: %+v, clients got %+v", k, logged[k], want[k])
		}
	}

	// A newcomer gets the last 100 and the members, who learn of it.
	late, welcome := joinChat(t, base, "order", "late")
	if len(welcome.History) != 100 || welcome.History[0].Seq != 901 || welcome.History[99].Seq != 1000 {
		t.Fatalf("newcomer's history: %d messages from %d", len(welcome.History), welcome.History[0].Seq)
	}
	if len(welcome.Members) != clients+1 || welcome.Members[clients] != "late" {
		t.Fatalf("members: %v", welcome.Members)
	}
	if f := readFrame(t, conns[0]); f.Type != "join" || f.Name != "late" || f.Count != clients+1 {
		t.Fatalf("members saw %+v, want late's join", f)
	}
	// Leaving updates the member list.
	late.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	f := readFrame(t, conns[0])
	if f.Type != "leave" || f.Name != "late" || f.Count != clients {
		t.Fatalf("after late left: %+v", f)
	}
}

// TestChatRefusesBadInput: names and messages are checked; nothing is
// stored for a refused message.
func TestChatRefusesBadInput(t *testing.T) {
	_, base := startChat(t)
	if _, resp, err := websocket.DefaultDialer.Dial(base+"/v1/objects/chat/r/ws?name=", nil); err == nil || resp.StatusCode != 400 {
		t.Fatalf("join without a name: %v", err)
	}
	c, _ := joinChat(t, base, "r", "ann")
	c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 5000)))
	if f := readFrame(t, c); f.Type != "error" {
		t.Fatalf("oversize text: %+v", f)
	}
	c.WriteMessage(websocket.TextMessage, []byte("ok"))
	if f := readFrame(t, c); f.Type != "message" || f.Message.Seq != 1 {
		t.Fatalf("after a refused message: %+v", f)
	}
}
