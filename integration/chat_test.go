package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type chatMsg struct {
	Seq  int64  `json:"seq"`
	Name string `json:"name"`
	Text string `json:"text"`
}

// TestChatCrashKeepsEveryDeliveredMessage: members chat while the server is
// killed with SIGKILL; after a restart the room's log holds every message
// any member received, with the same number and text. A message reaches
// members only after its event is durable, so none can be lost.
func TestChatCrashKeepsEveryDeliveredMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const members = 5
	dir := t.TempDir()
	p := serve(t, dir)
	base := "ws" + strings.TrimPrefix(p.url, "http") + "/v1/objects/chat/crash/ws?name="

	var mu sync.Mutex
	got := map[int64]chatMsg{} // every message any member received
	var wg sync.WaitGroup
	for i := range members {
		c, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("%sm%d", base, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(2)
		go func() { // reader: until the connection dies with the server
			defer wg.Done()
			for {
				var f struct {
					Type    string   `json:"type"`
					Message *chatMsg `json:"message"`
				}
				if err := c.ReadJSON(&f); err != nil {
					return
				}
				if f.Type == "message" {
					mu.Lock()
					if prev, ok := got[f.Message.Seq]; ok && prev != *f.Message {
						t.Errorf("message %d received as %+v and as %+v", f.Message.Seq, prev, *f.Message)
					}
					got[f.Message.Seq] = *f.Message
					mu.Unlock()
				}
			}
		}()
		go func() { // writer: until the connection dies
			defer wg.Done()
			for j := 0; ; j++ {
				if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "m%d-%d", i, j)); err != nil {
					return
				}
				time.Sleep(time.Millisecond) // pace, so the kill lands mid-conversation
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages delivered in 30s:\n%s", n, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.kill()
	wg.Wait()

	p = serve(t, dir)
	resp, err := http.Get(p.url + "/v1/objects/chat/crash/history")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	logged := map[int64]chatMsg{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			Turns []struct {
				Changes []struct {
					Op  string          `json:"op"`
					Key string          `json:"key"`
					New json.RawMessage `json:"new"`
				} `json:"changes"`
			} `json:"turns"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("history line %q: %v", sc.Text(), err)
		}
		for _, tn := range e.Turns {
			for _, ch := range tn.Changes {
				if ch.Op == "put" && strings.HasPrefix(ch.Key, "msg:") {
					var m chatMsg
					json.Unmarshal(ch.New, &m)
					logged[m.Seq] = m
				}
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for seq, m := range got {
		if logged[seq] != m {
			t.Fatalf("message %d was delivered as %+v; the log after the crash has %+v", seq, m, logged[seq])
		}
	}
	t.Logf("%d messages delivered before the kill, %d in the log", len(got), len(logged))

	// The room goes on where the log ends.
	base = "ws" + strings.TrimPrefix(p.url, "http") + "/v1/objects/chat/crash/ws?name="
	c, _, err := websocket.DefaultDialer.Dial(base+"after", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var welcome struct {
		History []chatMsg `json:"history"`
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&welcome); err != nil || len(welcome.History) != 100 {
		t.Fatalf("welcome after restart: %d messages, %v", len(welcome.History), err)
	}
	if last := welcome.History[99].Seq; last != int64(len(logged)) {
		t.Fatalf("newest message after restart is %d, the log holds %d", last, len(logged))
	}
}
