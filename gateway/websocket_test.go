package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// wsroom is a test class that exposes the socket API through text
// commands; any other message is broadcast to every socket.
type wsroom struct{}

type sockInfo struct {
	ID         objects.SocketID `json:"id"`
	Tags       []string         `json:"tags"`
	Attachment string           `json:"attachment"`
	AutoAt     time.Time        `json:"auto_at"`
}

func info(ws *objects.WebSocket) sockInfo {
	return sockInfo{ID: ws.ID(), Tags: ws.Tags(), Attachment: string(ws.Attachment()), AutoAt: ws.AutoResponseAt()}
}

func (*wsroom) WebSocketConnect(ctx *objects.Ctx, ws *objects.WebSocket, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("reject") != "" {
		return objects.Errorf(http.StatusForbidden, "rejected", "not welcome")
	}
	if err := ws.SetTags(q["tag"]...); err != nil {
		return err
	}
	if err := ws.SetAttachment([]byte(q.Get("att"))); err != nil {
		return err
	}
	b, _ := json.Marshal(info(ws))
	return ws.Send("hello " + string(b))
}

func (*wsroom) WebSocketMessage(ctx *objects.Ctx, ws *objects.WebSocket, m objects.Message) error {
	cmd, arg, _ := strings.Cut(string(m.Data), " ")
	if !m.Binary {
		switch cmd {
		case "whoami":
			b, _ := json.Marshal(info(ws))
			return ws.Send(string(b))
		case "list":
			var out []sockInfo
			for _, s := range ctx.Sockets(arg) {
				out = append(out, info(s))
			}
			b, _ := json.Marshal(out)
			return ws.Send(string(b))
		case "auto":
			req, resp, _ := strings.Cut(arg, " ")
			if err := ctx.SetAutoResponse(req, resp); err != nil {
				return err
			}
			return ws.Send("auto set")
		case "close":
			code, _ := strconv.Atoi(arg)
			return ws.Close(code, "asked to")
		case "write":
			if err := ctx.Storage().Put("written", []byte(arg)); err != nil {
				return err
			}
			return ws.Send("wrote " + arg)
		case "fail":
			ctx.Storage().Put("never", []byte("x"))
			ws.Send("never sent")
			return errors.New("refused")
		}
	}
	for _, s := range ctx.Sockets("") {
		s.SendMessage(m)
	}
	return nil
}

func (*wsroom) WebSocketClose(ctx *objects.Ctx, ws *objects.WebSocket, code int, reason string) error {
	return ctx.Storage().Put(fmt.Sprintf("close:%d", ws.ID()), fmt.Appendf(nil, "%d %s", code, reason))
}

func (*wsroom) WebSocketError(ctx *objects.Ctx, ws *objects.WebSocket, err error) error {
	return ctx.Storage().Put(fmt.Sprintf("error:%d", ws.ID()), []byte(err.Error()))
}

// Get reads a key (for the test to see what the handlers wrote).
func (*wsroom) Get(ctx *objects.Ctx, key string) (string, error) {
	v, _, err := ctx.Storage().Get(key)
	return string(v), err
}

type wsFixture struct {
	t         *testing.T
	node      *testnode.Node
	gw        *gateway.Gateway
	url       string // http://host:port
	evictions atomic.Int64
}

func startWS(t *testing.T, idle time.Duration, wc gateway.WebSocketConfig) *wsFixture {
	return startWSWith(t, wc, func(c *objects.Config) { c.IdleTimeout = idle })
}

func startWSWith(t *testing.T, wc gateway.WebSocketConfig, edit func(*objects.Config)) *wsFixture {
	f := &wsFixture{t: t}
	cls := append(classes.All(), objects.Define("wsroom", func() *wsroom { return &wsroom{} }))
	f.node = testnode.Start(t, cls, func(c *objects.Config) {
		edit(c)
		c.Hooks.Evicted = func(string, objects.ID) { f.evictions.Add(1) }
	})
	gw, err := gateway.New(gateway.Config{Backend: f.node.Runtime, WebSocket: wc})
	if err != nil {
		t.Fatal(err)
	}
	f.gw = gw
	srv := httptest.NewServer(gw)
	f.url = srv.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.CloseWebSockets(ctx); err != nil {
			t.Errorf("close websockets: %v", err)
		}
		srv.Close()
	})
	return f
}

func (f *wsFixture) dial(path string) *websocket.Conn {
	f.t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(f.url, "http")+path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		f.t.Fatalf("dial %s: %v (status %d)", path, err, status)
	}
	f.t.Cleanup(func() { c.Close() })
	return c
}

func (f *wsFixture) call(class, name, method, in string) string {
	f.t.Helper()
	resp, err := http.Post(f.url+"/v1/objects/"+class+"/"+name+"/rpc/"+method, "application/json", strings.NewReader(in))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("%s.%s: %d %s", class, method, resp.StatusCode, out)
	}
	return string(bytes.TrimSpace(out))
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func hello(t *testing.T, c *websocket.Conn) sockInfo {
	t.Helper()
	msg := read(t, c)
	js, ok := strings.CutPrefix(msg, "hello ")
	if !ok {
		t.Fatalf("first message %q, want hello", msg)
	}
	var si sockInfo
	if err := json.Unmarshal([]byte(js), &si); err != nil {
		t.Fatal(err)
	}
	return si
}

func ask(t *testing.T, c *websocket.Conn, cmd string) string {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	return read(t, c)
}

func (f *wsFixture) waitEvicted(before int64) {
	f.t.Helper()
	waitFor(f.t, "the object's eviction", func() bool {
		return f.evictions.Load() > before && f.node.Runtime.Stats().Live == 0
	})
}

// TestWebSocketHibernation: idle sockets outlive their object's
// activation; the next message activates it again, and its sockets are
// there with their tags and attachments.
func TestWebSocketHibernation(t *testing.T) {
	f := startWS(t, 200*time.Millisecond, gateway.WebSocketConfig{})
	var conns []*websocket.Conn
	want := map[objects.SocketID]sockInfo{}
	for i, tags := range []string{"tag=red&tag=all", "tag=blue&tag=all", "tag=red"} {
		c := f.dial(fmt.Sprintf("/v1/objects/wsroom/h/ws?%s&att=member-%d", tags, i))
		si := hello(t, c)
		want[si.ID] = si
		conns = append(conns, c)
	}
	if got := ask(t, conns[0], "write before"); got != "wrote before" {
		t.Fatalf("write: %q", got)
	}
	acts := f.node.Runtime.Stats().Activations
	f.waitEvicted(0) // idle past the timeout, sockets still open

	// A message wakes it; the new activation sees the same sockets.
	var got []sockInfo
	if err := json.Unmarshal([]byte(ask(t, conns[1], "list red")), &got); err != nil {
		t.Fatal(err)
	}
	if st := f.node.Runtime.Stats(); st.Activations != acts+1 {
		t.Fatalf("activations %d, want %d: the message did not re-activate the evicted object", st.Activations, acts+1)
	}
	if len(got) != 2 {
		t.Fatalf("sockets tagged red after hibernation: %+v", got)
	}
	for _, si := range got {
		w := want[si.ID]
		if strings.Join(si.Tags, ",") != strings.Join(w.Tags, ",") || si.Attachment != w.Attachment || si.Attachment == "" {
			t.Fatalf("socket %d after hibernation: %+v, want %+v", si.ID, si, w)
		}
	}
	if err := json.Unmarshal([]byte(ask(t, conns[2], "list all")), &got); err != nil || len(got) != 2 {
		t.Fatalf("sockets tagged all: %+v %v", got, err)
	}
	// Nothing lost: storage and broadcast both work after waking.
	if v := f.call("wsroom", "h", "get", `"written"`); v != `"before"` {
		t.Fatalf("stored value after hibernation: %s", v)
	}
	conns[0].WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	for _, c := range conns {
		if m := read(t, c); m != "\x01\x02\x03" {
			t.Fatalf("broadcast after wake: %q", m)
		}
	}
}

// TestWebSocketAutoResponseWhileEvicted: the gateway answers the
// auto-response pair without activating the object, and the object can
// read when it last did.
func TestWebSocketAutoResponseWhileEvicted(t *testing.T) {
	f := startWS(t, 200*time.Millisecond, gateway.WebSocketConfig{})
	c := f.dial("/v1/objects/wsroom/auto/ws")
	hello(t, c)
	if got := ask(t, c, "auto ping pong"); got != "auto set" {
		t.Fatalf("auto: %q", got)
	}
	f.waitEvicted(0)
	acts := f.node.Runtime.Stats().Activations
	for range 3 {
		if got := ask(t, c, "ping"); got != "pong" {
			t.Fatalf("auto-response: %q", got)
		}
	}
	if st := f.node.Runtime.Stats(); st.Activations != acts || st.Live != 0 {
		t.Fatalf("auto-response woke the object: %+v, activations before %d", st, acts)
	}
	var si sockInfo
	if err := json.Unmarshal([]byte(ask(t, c, "whoami")), &si); err != nil {
		t.Fatal(err)
	}
	if si.AutoAt.IsZero() {
		t.Fatal("the object cannot see the last auto-response time")
	}
}

// TestWebSocketOutputGate: a turn's sends leave only once its event is
// acknowledged, and a failing turn sends nothing.
func TestWebSocketOutputGate(t *testing.T) {
	var acked sync.Map // version → true
	f := startWSWith(t, gateway.WebSocketConfig{}, func(c *objects.Config) {
		// A slow append widens the window in which an ungated send would
		// overtake its event.
		c.Hooks.BeforeAppend = func(string, objects.ID, uint64) { time.Sleep(20 * time.Millisecond) }
		c.Hooks.Acked = func(_ string, _ objects.ID, v, _ uint64) { acked.Store(v, true) }
	})
	c := f.dial("/v1/objects/wsroom/gate/ws")
	hello(t, c)
	for v := uint64(1); v <= 5; v++ {
		got := ask(t, c, fmt.Sprintf("write %d", v))
		if _, ok := acked.Load(v); !ok {
			t.Fatalf("received %q before event %d was acknowledged", got, v)
		}
	}
	// The failing turn's send is dropped; the next message is answered.
	if err := c.WriteMessage(websocket.TextMessage, []byte("fail")); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, c, "write 6"); got != "wrote 6" {
		t.Fatalf("after a failing turn got %q", got)
	}
	if v := f.call("wsroom", "gate", "get", `"never"`); v != `""` {
		t.Fatalf("a failing turn's write was kept: %s", v)
	}
}

// TestWebSocketSlowConsumer: a client that stops reading is disconnected
// once its queue is full; the room goes on at full speed.
func TestWebSocketSlowConsumer(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{SendQueueLen: 4})
	slow := f.dial("/v1/objects/wsroom/slow/ws")
	slowID := hello(t, slow).ID // then it never reads again
	fast := f.dial("/v1/objects/wsroom/slow/ws")
	hello(t, fast)
	big := bytes.Repeat([]byte("x"), 256<<10)
	const n = 64 // 16 MiB: more than the kernel buffers between the server and the slow client
	for i := range n {
		big[0] = byte(i)
		if err := fast.WriteMessage(websocket.BinaryMessage, big); err != nil {
			t.Fatal(err)
		}
		fast.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := fast.ReadMessage()
		if err != nil || len(b) != len(big) || b[0] != byte(i) {
			t.Fatalf("fast client, message %d: %d bytes, %v", i, len(b), err)
		}
	}
	key := fmt.Sprintf(`"error:%d"`, slowID)
	waitFor(t, "the slow client's WebSocketError turn", func() bool {
		return f.call("wsroom", "slow", "get", key) != `""`
	})
	if got := f.call("wsroom", "slow", "get", key); !strings.Contains(got, "send queue full") {
		t.Fatalf("slow client's error: %s", got)
	}
	var socks []sockInfo
	json.Unmarshal([]byte(ask(t, fast, "list")), &socks)
	if len(socks) != 1 {
		t.Fatalf("sockets after the slow one was dropped: %+v", socks)
	}
}

// TestWebSocketOversizeMessage: a message over the read limit closes the
// socket with 1009 and the object learns of it.
func TestWebSocketOversizeMessage(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{})
	c := f.dial("/v1/objects/wsroom/big/ws")
	id := hello(t, c).ID
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20+1)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("after an oversize message: %v, want close 1009", err)
	}
	key := fmt.Sprintf(`"error:%d"`, id)
	waitFor(t, "the WebSocketError turn", func() bool { return f.call("wsroom", "big", "get", key) != `""` })
	// A message at the limit is fine.
	c2 := f.dial("/v1/objects/wsroom/big/ws")
	hello(t, c2)
	if err := c2.WriteMessage(websocket.BinaryMessage, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if m := read(t, c2); len(m) != 1<<20 {
		t.Fatalf("echo of a message at the limit: %d bytes", len(m))
	}
}

// TestWebSocketCloseHandshake: close codes travel both ways.
func TestWebSocketCloseHandshake(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{})
	c := f.dial("/v1/objects/wsroom/cl/ws")
	id := hello(t, c).ID
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 4001) {
		t.Fatalf("close reply: %v", err)
	}
	key := fmt.Sprintf(`"close:%d"`, id)
	waitFor(t, "the WebSocketClose turn", func() bool { return f.call("wsroom", "cl", "get", key) != `""` })
	if got := f.call("wsroom", "cl", "get", key); got != `"4001 bye"` {
		t.Fatalf("WebSocketClose saw %s", got)
	}

	// The object closes: the client gets its code, and the socket leaves.
	c2 := f.dial("/v1/objects/wsroom/cl/ws")
	hello(t, c2)
	c2.WriteMessage(websocket.TextMessage, []byte("close 4002"))
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c2.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4002 || ce.Text != "asked to" {
		t.Fatalf("object's close: %v", err)
	}
	c3 := f.dial("/v1/objects/wsroom/cl/ws")
	hello(t, c3)
	var socks []sockInfo
	json.Unmarshal([]byte(ask(t, c3, "list")), &socks)
	if len(socks) != 1 {
		t.Fatalf("sockets after two closes: %+v", socks)
	}
}

// TestWebSocketBadUpgrades: refusals are JSON errors, and reach no object
// when the request is not a WebSocket handshake at all.
func TestWebSocketBadUpgrades(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{AllowedOrigins: []string{"chat.example"}})
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	cases := []struct {
		name, method, path string
		header             http.Header
		status             int
		code               string
	}{
		{"plain GET", "GET", "/v1/objects/wsroom/x/ws", http.Header{}, 400, "bad_upgrade"},
		{"no Upgrade header", "GET", "/v1/objects/wsroom/x/ws", hdr("Upgrade", ""), 400, "bad_upgrade"},
		{"bad version", "GET", "/v1/objects/wsroom/x/ws", hdr("Sec-Websocket-Version", "8"), 400, "bad_upgrade"},
		{"bad key", "GET", "/v1/objects/wsroom/x/ws", hdr("Sec-Websocket-Key", "short"), 400, "bad_upgrade"},
		{"POST", "POST", "/v1/objects/wsroom/x/ws", hdr(), 405, "method_not_allowed"},
		{"foreign origin", "GET", "/v1/objects/wsroom/x/ws", hdr("Origin", "http://evil.example"), 403, "forbidden_origin"},
		{"object refuses", "GET", "/v1/objects/wsroom/x/ws?reject=1", hdr(), 403, "rejected"},
		{"bad tag", "GET", "/v1/objects/wsroom/x/ws?tag=", hdr(), 400, "bad_input"},
		{"class without sockets", "GET", "/v1/objects/counter/x/ws", hdr(), 404, "unknown_method"},
		{"unknown class", "GET", "/v1/objects/nope/x/ws", hdr(), 404, "unknown_class"},
		{"bad id", "GET", "/v1/objects/wsroom/id/zz/ws", hdr(), 400, "invalid_id"},
		{"path after ws", "GET", "/v1/objects/wsroom/x/ws/more", hdr(), 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, f.url+tc.path, nil)
			req.Header = tc.header
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error struct{ Code string } }
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || body.Error.Code != tc.code {
				t.Fatalf("status %d code %q, want %d %q", resp.StatusCode, body.Error.Code, tc.status, tc.code)
			}
		})
	}
	// An allowed origin and the id form both connect.
	ref, _ := f.node.Runtime.RefByName("wsroom", "x")
	d := websocket.Dialer{}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(f.url, "http")+"/v1/objects/wsroom/id/"+ref.ID.String()+"/ws", http.Header{"Origin": {"https://chat.example"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello(t, c)
	if n := f.node.Runtime.Stats().Activations; n != 1 {
		t.Fatalf("%d activations: refused upgrades must not all reach the object", n)
	}
}

// TestWebSocketShutdown: CloseWebSockets says goodbye with 1001.
func TestWebSocketShutdown(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{})
	c := f.dial("/v1/objects/wsroom/bye/ws")
	hello(t, c)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.gw.CloseWebSockets(ctx)
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("at shutdown: %v, want 1001", err)
	}
}

// TestWebSocketKeepAlive: the server pings; a client that answers stays,
// one that does not is dropped and its object is told.
func TestWebSocketKeepAlive(t *testing.T) {
	// A client has two ping intervals to answer: 200ms leaves the one
	// that answers time to be scheduled on a loaded machine (at 50ms it
	// was once dropped with both cores busy elsewhere).
	f := startWS(t, time.Minute, gateway.WebSocketConfig{PingInterval: 200 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	alive := f.dial("/v1/objects/wsroom/ka/ws")
	aliveID := hello(t, alive).ID
	var pings atomic.Int64
	alive.SetPingHandler(func(data string) error {
		pings.Add(1)
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	replies := make(chan string, 1)
	go func() {
		for {
			_, b, err := alive.ReadMessage() // answers pings while it waits
			if err != nil {
				close(replies)
				return
			}
			replies <- string(b)
		}
	}()
	silent := f.dial("/v1/objects/wsroom/ka/ws")
	silentID := hello(t, silent).ID // never reads again: never answers a ping

	key := fmt.Sprintf(`"error:%d"`, silentID)
	waitFor(t, "the silent client's WebSocketError turn", func() bool { return f.call("wsroom", "ka", "get", key) != `""` })
	if got := f.call("wsroom", "ka", "get", key); !strings.Contains(got, "pong") {
		t.Fatalf("silent client's error: %s", got)
	}
	waitFor(t, "ten pings", func() bool { return pings.Load() >= 10 })
	if got := f.call("wsroom", "ka", "get", fmt.Sprintf(`"error:%d"`, aliveID)); got != `""` {
		t.Fatalf("the client that answers pings was dropped: %s", got)
	}
	alive.WriteMessage(websocket.TextMessage, []byte("list"))
	var socks []sockInfo
	if err := json.Unmarshal([]byte(<-replies), &socks); err != nil || len(socks) != 1 || socks[0].ID != aliveID {
		t.Fatalf("sockets after the silent one was dropped: %+v %v", socks, err)
	}
}

// TestChatPage: /ui/chat serves the page that talks to the chat class.
func TestChatPage(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{})
	resp, err := http.Get(f.url + "/ui/chat")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte("/v1/objects/chat/")) {
		t.Fatalf("GET /ui/chat: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}
