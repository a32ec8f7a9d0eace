package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// TestStrictInput: each probe of issue 14 is refused with its 4xx and
// writes nothing.
func TestStrictInput(t *testing.T) {
	f := start(t)
	for i := 1; i <= 2; i++ {
		if code, body := f.post("/v1/objects/kv/s/rpc/put", `{"key":"a","value":`+string(rune('0'+i))+`}`); code != 200 {
			t.Fatal(code, body)
		}
	}
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		// Times outside 1678–2262 would wrap int64 nanoseconds.
		{"GET", "/v1/objects/kv/s/state?at=1442-05-18T00:00:00Z", "", 400, "bad_range"},
		{"GET", "/v1/objects/kv/s/state?at=2263-01-01T00:00:00Z", "", 400, "bad_range"},
		{"GET", "/v1/objects/kv/s/state?at=1677-09-21T00:12:43Z", "", 400, "bad_range"},
		{"POST", "/v1/objects/kv/s/restore", `{"at":"1442-05-18T00:00:00Z"}`, 400, "bad_range"},
		{"POST", "/v1/objects/kv/s/restore", `{"at":"9999-12-31T23:59:59Z"}`, 400, "bad_range"},
		{"PUT", "/v1/objects/kv/s/alarm", `{"at":"1442-05-18T00:00:00Z"}`, 400, "bad_range"},
		{"PUT", "/v1/objects/kv/s/alarm", `{"in":"2562047h"}`, 400, "bad_range"},
		// Version 0 is before the first event, not the present.
		{"GET", "/v1/objects/kv/s/state?version=0", "", 400, "bad_range"},
		{"POST", "/v1/objects/kv/s/restore", `{"version":0}`, 400, "bad_range"},
		// Invalid UTF-8: in a JSON body (a key, a value), a name.
		{"POST", "/v1/objects/kv/s/rpc/put", "{\"key\":\"\xff\",\"value\":1}", 400, "bad_input"},
		{"POST", "/v1/objects/kv/s/rpc/put", "{\"key\":\"a\",\"value\":\"\xfe\xff\"}", 400, "bad_input"},
		{"POST", "/v1/objects/kv/s/restore", "{\"at\":\"\xff\"}", 400, "bad_input"},
		{"PUT", "/v1/objects/kv/s/alarm", "{\"in\":\"1h\xff\"}", 400, "bad_input"},
		// A lone UTF-16 surrogate escaped in JSON: "\ud800" and "\udfff"
		// would both decode to U+FFFD, one key.
		{"POST", "/v1/objects/kv/s/rpc/put", `{"key":"\ud800","value":1}`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/s/rpc/put", `{"key":"a\udfff","value":1}`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/s/rpc/put", `{"key":"a","value":"\ud83dx"}`, 400, "bad_input"},
		{"POST", "/v1/objects/kv/%ff/rpc/put", `{"key":"a","value":1}`, 400, "invalid_name"},
		// Alarm names refuse control characters, as object names do.
		{"PUT", "/v1/objects/kv/s/alarm?name=a%01b", `{"in":"1h"}`, 400, "bad_input"},
		{"PUT", "/v1/objects/kv/s/alarm?name=a%0Ab", `{"in":"1h"}`, 400, "bad_input"},
		// A parameter given twice, or one that does not decode.
		{"GET", "/v1/objects/kv/s/state?version=1&version=2", "", 400, "bad_input"},
		{"GET", "/v1/objects/kv/s/history?from=1&from=2", "", 400, "bad_input"},
		{"PUT", "/v1/objects/kv/s/alarm?name=a&name=b", `{"in":"1h"}`, 400, "bad_input"},
		{"GET", "/v1/objects/kv?limit=1&limit=2", "", 400, "bad_input"},
		{"GET", "/v1/tail?class=kv&class=counter", "", 400, "bad_input"},
		{"GET", "/v1/objects/kv/s/state?at=%zz", "", 400, "bad_input"},
	}
	for _, c := range cases {
		code, ecode, _ := f.send(c.method, c.path, c.body, nil)
		if code != c.status || ecode != c.code {
			t.Errorf("%s %s %q: %d %s, want %d %s", c.method, c.path, c.body, code, ecode, c.status, c.code)
		}
	}
	if v := f.lastVersion("kv", "s"); v != 2 {
		t.Fatalf("refused input wrote: version %d, want 2", v)
	}
	// The good forms still answer; a fetch route keeps its repeated
	// parameters for the object.
	for _, p := range []string{"/v1/objects/kv/s/state?version=1", "/v1/objects/kv/s/state?at=2262-01-01T00:00:00Z", "/v1/objects/kv/s/state"} {
		if code, ecode, _ := f.send("GET", p, "", nil); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, ecode)
		}
	}
	if code, ecode, _ := f.send("GET", "/v1/objects/echo/e/fetch/x?t=1&t=2", "", nil); code != http.StatusAccepted {
		t.Errorf("fetch with a repeated parameter: %d %s", code, ecode)
	}
}

// TestWebSocketInvalidUTF8: a text frame that is not UTF-8 closes the
// socket with 1007; the object is not handed the frame but hears of the
// error.
func TestWebSocketInvalidUTF8(t *testing.T) {
	f := startWS(t, time.Minute, gateway.WebSocketConfig{})
	c := f.dial("/v1/objects/wsroom/u/ws")
	id := hello(t, c).ID
	if err := c.WriteMessage(websocket.TextMessage, []byte("write \xff\xfe")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("after an invalid UTF-8 text frame: %v, want close 1007", err)
	}
	if got := f.call("wsroom", "u", "get", `"written"`); got != `""` {
		t.Fatalf("the invalid frame reached the object: written=%s", got)
	}
	key := fmt.Sprintf(`"error:%d"`, id)
	waitFor(t, "the error turn", func() bool { return strings.Contains(f.call("wsroom", "u", "get", key), "UTF-8") })
}

// TestTrickledBodyCut: a body sent one byte at a time is not waited for
// past the request timeout: the client gets 408 while it is still
// sending, and nothing is written.
func TestTrickledBodyCut(t *testing.T) {
	f := startWith(t, func(c *gateway.Config) { c.RequestTimeout = 2 * time.Second })
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"key":"slow","value":"` + strings.Repeat("x", 200) + `"}`
	fmt.Fprintf(conn, "POST /v1/objects/kv/trickle/rpc/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	answered := make(chan string, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		answered <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	// The whole body would take 225 × 200 ms = 45 s; it must be answered
	// before it is sent whole.
	for i := 0; i < len(body); i++ {
		select {
		case got := <-answered:
			if !strings.HasPrefix(got, "408 ") || !strings.Contains(got, "request_timeout") {
				t.Fatalf("trickled body answered %q, want 408 request_timeout", got)
			}
			if _, err := f.node.Log.Last(context.Background(), "kv", objects.IDFromName("kv", "trickle")); !errors.Is(err, log.ErrNotFound) {
				t.Fatalf("the trickled request wrote (%v)", err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			break // the server closed the connection: read its answer
		}
	}
	t.Fatalf("the whole trickled body was read; answer %q", <-answered)
}
