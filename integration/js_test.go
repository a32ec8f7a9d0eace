package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// strataCLI runs the built binary with args and returns its stdout.
func strataCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(strataBinary(t), args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("strata %v: %v\n%s", args, err, msg)
	}
	return string(out)
}

func rpcRaw(t *testing.T, base, class, name, method, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/objects/%s/%s/rpc/%s", base, class, name, method), strings.NewReader(body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header.Get("Strata-Node"), strings.TrimSpace(b.String())
}

type jsChatFrame struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	From    string `json:"from"`
	Text    string `json:"text"`
	History []struct {
		From, Text string
	} `json:"history"`
}

func jsChatJoin(t *testing.T, base, room, name string) (*websocket.Conn, jsChatFrame) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/v1/objects/chatroom/" + room + "/ws?name=" + name
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, jsChatRead(t, c)
}

func jsChatRead(t *testing.T, c *websocket.Conn) jsChatFrame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var f jsChatFrame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

// TestJSClassesAcrossSIGKILL deploys Cloudflare's counter and hibernating
// chat room examples with the strata CLI, uses them over HTTP and
// WebSocket, kills the server with SIGKILL, and finds the classes, the
// counter and the chat history on restart.
func TestJSClassesAcrossSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	dir := t.TempDir()
	p := serve(t, dir)
	strataCLI(t, "deploy", "--url", p.url, "--class", "chatroom", "testdata/js/chat.js")
	// The built-in Go counter keeps its name: a JS class cannot take it.
	cmd := exec.Command(strataBinary(t), "deploy", "--url", p.url, "testdata/js/counter.ts")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "built-in") {
		t.Fatalf("deploy over the built-in counter: %v %s", err, out)
	}
	if out := strataCLI(t, "deploy", "--url", p.url, "--class", "jscounter", "testdata/js/counter.ts"); out != "class \"jscounter\" version 1 (export Counter, "+out[strings.LastIndex(out, ", ")+2:] {
		t.Fatalf("deploy: %q", out)
	}
	for i, want := range []string{"2", "4"} {
		if st, _, got := rpcRaw(t, p.url, "jscounter", "alice", "increment", "[2]"); st != 200 || got != want {
			t.Fatalf("increment %d: %d %s", i, st, got)
		}
	}
	a, f := jsChatJoin(t, p.url, "lobby", "ann")
	if f.Type != "welcome" || len(f.History) != 0 {
		t.Fatalf("welcome: %+v", f)
	}
	b, _ := jsChatJoin(t, p.url, "lobby", "bob")
	a.WriteMessage(websocket.TextMessage, []byte("hello"))
	for _, c := range []*websocket.Conn{a, b} {
		if m := jsChatRead(t, c); m.Type != "message" || m.From != "ann" || m.Text != "hello" {
			t.Fatalf("broadcast: %+v", m)
		}
	}
	// The auto-response is answered by the gateway.
	b.WriteMessage(websocket.TextMessage, []byte("ping"))
	b.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, msg, err := b.ReadMessage(); err != nil || string(msg) != "pong" {
		t.Fatalf("auto-response: %q %v", msg, err)
	}

	p.kill()
	p = serve(t, dir)
	if st, _, got := rpcRaw(t, p.url, "jscounter", "alice", "increment", "[1]"); st != 200 || got != "5" {
		t.Fatalf("after SIGKILL: %d %s", st, got)
	}
	c, f := jsChatJoin(t, p.url, "lobby", "cy")
	if len(f.History) != 1 || f.History[0].Text != "hello" {
		t.Fatalf("chat history after SIGKILL: %+v", f)
	}
	c.WriteMessage(websocket.TextMessage, []byte("back"))
	if m := jsChatRead(t, c); m.Text != "back" || m.From != "cy" {
		t.Fatalf("after restart: %+v", m)
	}
	out := strataCLI(t, "classes", "--url", p.url)
	if !strings.Contains(out, "chatroom") || !strings.Contains(out, "jscounter") {
		t.Fatalf("classes: %s", out)
	}
}

// TestJSClusterDeployRedeployRollback: on three nodes, a deploy is served
// by every node without restart, a redeploy's next call runs the new code
// on every node, history shows both versions, and a rollback works.
func TestJSClusterDeployRedeployRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := startCluster(t, 3)
	strataCLI(t, "deploy", "--url", c.URL(0), "--class", "jscounter", "testdata/js/counter.ts")
	// Every node serves it: objects spread over the owners.
	value := map[string]int{}
	for i := range 3 {
		for j := range 4 {
			name := fmt.Sprintf("o%d", j)
			st, _, got := rpcRaw(t, c.URL(i), "jscounter", name, "increment", "[1]")
			if st != 200 {
				t.Fatalf("v1 via n%d: %d %s", i+1, st, got)
			}
			value[name]++
			if got != fmt.Sprint(value[name]) {
				t.Fatalf("v1 via n%d on %s: %s, want %d", i+1, name, got, value[name])
			}
		}
	}
	deployed := time.Now()
	out := strataCLI(t, "deploy", "--url", c.URL(1), "--class", "jscounter", "testdata/js/counter.v2.ts")
	if !strings.Contains(out, "version 2") {
		t.Fatalf("redeploy: %s", out)
	}
	// The next call runs v2 wherever it lands (a node learns of the deploy
	// through its watch: poll, with a deadline, for the first call only).
	deadline := time.Now().Add(30 * time.Second)
	for i := range 3 {
		for j := range 4 {
			name := fmt.Sprintf("o%d", j)
			for {
				st, _, got := rpcRaw(t, c.URL(i), "jscounter", name, "increment", "[1]")
				if st != 200 {
					t.Fatalf("v2 via n%d: %d %s", i+1, st, got)
				}
				if got == fmt.Sprint(value[name]+10) {
					value[name] += 10
					if j == 0 {
						// Reported, not asserted: docs/benchmarks.md.
						t.Logf("deploy to serving: n%d ran v2 %s after the deploy started", i+1, time.Since(deployed).Round(time.Millisecond))
					}
					break
				}
				value[name]++ // v1 still ran it
				if got != fmt.Sprint(value[name]) || time.Now().After(deadline) {
					t.Fatalf("via n%d on %s: %s; v2 not serving", i+1, name, got)
				}
			}
		}
	}
	// History names both versions.
	resp, err := client.Get(c.URL(2) + "/v1/objects/jscounter/o0/history")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	dec := json.NewDecoder(resp.Body)
	for {
		var e struct {
			Turns []struct {
				ClassVersion uint64 `json:"class_version"`
			} `json:"turns"`
		}
		if err := dec.Decode(&e); err != nil {
			break
		}
		for _, tu := range e.Turns {
			seen[tu.ClassVersion] = true
		}
	}
	resp.Body.Close()
	if !seen[1] || !seen[2] {
		t.Fatalf("history shows versions %v, want 1 and 2", seen)
	}
	out = strataCLI(t, "rollback", "--url", c.URL(2), "jscounter", "1")
	if !strings.Contains(out, "version 3") {
		t.Fatalf("rollback: %s", out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for i := range 3 {
		for {
			st, _, got := rpcRaw(t, c.URL(i), "jscounter", "o1", "increment", "[1]")
			if st != 200 {
				t.Fatalf("after rollback via n%d: %d %s", i+1, st, got)
			}
			if got == fmt.Sprint(value["o1"]+1) {
				value["o1"]++
				break
			}
			value["o1"] += 10
			if got != fmt.Sprint(value["o1"]) || time.Now().After(deadline) {
				t.Fatalf("after rollback via n%d: %s", i+1, got)
			}
		}
	}
	out = strataCLI(t, "classes", "--url", c.URL(0), "jscounter")
	if !strings.Contains(out, "rollback to v1") {
		t.Fatalf("classes: %s", out)
	}
}
