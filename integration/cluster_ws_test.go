package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WebSockets in a three-process cluster: a client's socket stays on the
// node it connected to, the room's turns run on the room's owner, and
// frames travel between the two over NATS.

// chatFrame is what a chat room sends (classes/chat.go).
type chatFrame struct {
	Type    string    `json:"type"`
	Name    string    `json:"name"`
	Members []string  `json:"members"`
	History []chatMsg `json:"history"`
	Message *chatMsg  `json:"message"`
	Error   string    `json:"error"`
}

// wsClient is one chat member's socket and the node it went through.
type wsClient struct {
	name  string
	via   int    // the node it connected to
	owner string // Strata-Node of the upgrade: the node that ran the connect turn
	c     *websocket.Conn
	hello chatFrame // the welcome
}

// roomOwner asks node via which node owns chat/room (the Strata-Node of an
// RPC).
func roomOwner(t *testing.T, c *testCluster, via int, room string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.URL(via)+"/v1/objects/chat/"+room+"/rpc/members", strings.NewReader("{}"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strata-Node") == "" {
		t.Fatalf("members of %s through %s: %s, Strata-Node %q", room, c.Name(via), resp.Status, resp.Header.Get("Strata-Node"))
	}
	return resp.Header.Get("Strata-Node")
}

// joinChat connects name to room through node via, retrying refusals
// (a 5xx while the room moves or its streams elect leaders) until
// timeout, and reads the welcome.
func joinChat(t *testing.T, c *testCluster, via int, room, name string, timeout time.Duration) *wsClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(c.URL(via), "http") + "/v1/objects/chat/" + room + "/ws?name=" + name
	deadline := time.Now().Add(timeout)
	for {
		conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			w := &wsClient{name: name, via: via, owner: resp.Header.Get("Strata-Node"), c: conn}
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if err := conn.ReadJSON(&w.hello); err != nil || w.hello.Type != "welcome" {
				t.Fatalf("%s through %s: welcome %+v, %v", name, c.Name(via), w.hello, err)
			}
			t.Cleanup(func() { conn.Close() })
			return w
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if time.Now().After(deadline) || (status != 0 && status < 500) {
			t.Fatalf("%s through %s: dial: status %d, %v\n%s", name, c.Name(via), status, err, c.Logs(via))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readMessage reads frames until a chat message (skipping joins and
// leaves, and failing on anything else).
func (w *wsClient) readMessage() (chatMsg, error) {
	for {
		w.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var f chatFrame
		if err := w.c.ReadJSON(&f); err != nil {
			return chatMsg{}, fmt.Errorf("%s: read: %w", w.name, err)
		}
		switch f.Type {
		case "message":
			return *f.Message, nil
		case "join", "leave":
		default:
			return chatMsg{}, fmt.Errorf("%s: unexpected frame %+v", w.name, f)
		}
	}
}

// waitClose reads until the socket ends and returns how, with the time it
// took from start.
func (w *wsClient) waitClose(limit time.Duration) (int, error) {
	w.c.SetReadDeadline(time.Now().Add(limit))
	for {
		if _, _, err := w.c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, nil
			}
			return 0, err
		}
	}
}

// others returns the nodes other than skip, in order.
func others(c *testCluster, skip int) []int {
	var out []int
	for i := range c.nodes {
		if i != skip {
			out = append(out, i)
		}
	}
	return out
}

// TestClusterWebSockets: three members of one room connect through the
// three nodes (two of them not the room's owner) and chat: every member
// sees every message once, in the room's order, and each member's own in
// the order sent; the auto-response answers through a node that is not
// the owner. Then the owner is killed: the sockets through the survivors
// are closed with 1012 (not left hanging), members reconnect through the
// survivors and find the room's history intact. Then it restarts and
// takes the room back: the sockets on the interim owner are closed with
// 1012 too, and reconnecting lands on it. Last, a member's node (not the
// owner) stops gracefully, then is killed: either way she leaves the room
// (the owner runs her WebSocketError turn).
func TestClusterWebSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	c := startCluster(t, 3)
	const room = "lobby"
	owner := c.Index(roomOwner(t, c, 0, room))
	rest := others(c, owner)
	t.Logf("room %s lives on %s; members connect through %s (owner), %s and %s", room, c.Name(owner), c.Name(owner), c.Name(rest[0]), c.Name(rest[1]))

	// Through every node; the welcome of each lists those before it.
	members := []*wsClient{
		joinChat(t, c, rest[0], room, "alice", 30*time.Second),
		joinChat(t, c, owner, room, "bob", 30*time.Second),
		joinChat(t, c, rest[1], room, "carol", 30*time.Second),
	}
	for i, m := range members {
		if m.owner != c.Name(owner) {
			t.Fatalf("%s's connect turn ran on %q, want the owner %s", m.name, m.owner, c.Name(owner))
		}
		if len(m.hello.Members) != i+1 {
			t.Fatalf("%s's welcome lists members %v, want %d", m.name, m.hello.Members, i+1)
		}
	}

	// GET /v1/cluster counts the sockets that span two nodes.
	for _, want := range []struct {
		node int
		stat string
		n    uint64
	}{{owner, "sockets_held", 2}, {owner, "sockets_remote", 0}, {rest[0], "sockets_remote", 1}, {rest[1], "sockets_remote", 1}, {rest[0], "sockets_held", 0}} {
		v, err := c.Status(want.node)
		if err != nil || v.Stats[want.stat] != want.n {
			t.Fatalf("%s's %s = %d (%v), want %d", c.Name(want.node), want.stat, v.Stats[want.stat], err, want.n)
		}
	}

	// The auto-response through a node that does not own the room.
	alice := members[0]
	if err := alice.c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	// Join frames may come first.
	for {
		alice.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := alice.c.ReadMessage()
		if err != nil {
			t.Fatalf("ping through %s: %v", c.Name(alice.via), err)
		}
		if string(data) == "pong" {
			break
		}
		var f chatFrame
		if json.Unmarshal(data, &f) != nil || (f.Type != "join" && f.Type != "leave") {
			t.Fatalf("ping through %s answered %q", c.Name(alice.via), data)
		}
	}

	// Everyone talks at once: many round trips through each node.
	const each = 25
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := m.c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "%s-%d", m.name, i)); err != nil {
					t.Errorf("%s: write: %v", m.name, err)
					return
				}
			}
		}()
	}
	seen := make([][]chatMsg, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range len(members) * each {
				msg, err := m.readMessage()
				if err != nil {
					t.Error(err)
					return
				}
				seen[i] = append(seen[i], msg)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first := seen[0][0].Seq
	for i, got := range seen {
		next := map[string]int{}
		for j, msg := range got {
			if msg.Seq != first+int64(j) {
				t.Fatalf("%s saw message %d at position %d, want %d: the room's order", members[i].name, msg.Seq, j, first+int64(j))
			}
			if msg != seen[0][j] {
				t.Fatalf("%s saw %+v where %s saw %+v", members[i].name, msg, members[0].name, seen[0][j])
			}
			if want := fmt.Sprintf("%s-%d", msg.Name, next[msg.Name]); msg.Text != want {
				t.Fatalf("%s saw %q from %s, want %q: a sender's order", members[i].name, msg.Text, msg.Name, want)
			}
			next[msg.Name]++
		}
	}
	posted := seen[0]
	t.Logf("%d messages seen by the 3 members in the same order, through the 3 nodes", len(posted))

	// SIGKILL the owner: the sockets through the survivors must end with
	// 1012, within a bound (the membership's TTL plus a margin).
	killed := time.Now()
	c.Kill(owner)
	for _, m := range []*wsClient{members[0], members[2]} {
		code, err := m.waitClose(30 * time.Second)
		if err != nil || code != websocket.CloseServiceRestart {
			t.Fatalf("%s through %s after the owner's kill: close %d, %v; want 1012", m.name, c.Name(m.via), code, err)
		}
		took := time.Since(killed)
		t.Logf("%s through %s closed with 1012 %s after the owner's SIGKILL", m.name, c.Name(m.via), took.Round(time.Millisecond))
		if took > 3*time.Second { // more than twice the TTL: say why
			for _, l := range strings.Split(c.Logs(m.via), "\n") {
				if strings.Contains(l, "component=cluster") || strings.Contains(l, "component=members") {
					t.Logf("%s: %s", c.Name(m.via), l)
				}
			}
		}
	}

	// Reconnect through the survivors until both members are on one
	// owner and hear each other. While the dead node's streams elect new
	// leaders, heartbeats stall and the survivors' views may part for a
	// moment: the room moves, and its sockets are closed with 1012 again,
	// which a client answers by reconnecting (that is the contract).
	pair, attempts := settledChat(t, c, room, []int{rest[0], rest[1]}, []string{"alice", "carol"}, "after the kill", 90*time.Second)
	alice, carol := pair[0], pair[1]
	t.Logf("the room settled on %s %s after the kill, in %d attempts", alice.owner, time.Since(killed).Round(time.Millisecond), attempts)
	if alice.owner == c.Name(owner) {
		t.Fatalf("after the kill the room ran on the dead node %s", alice.owner)
	}
	if got := carol.hello.History; len(got) < len(posted) || !slices.Equal(got[len(got)-len(posted):], posted) {
		// The welcome may also hold probes of earlier attempts, after the
		// posted messages.
		tail := got
		for len(tail) > 0 && strings.HasPrefix(tail[len(tail)-1].Text, "after the kill") {
			tail = tail[:len(tail)-1]
		}
		if len(tail) < len(posted) || !slices.Equal(tail[len(tail)-len(posted):], posted) {
			t.Fatalf("history after the kill: %d messages, not ending with the %d posted before it", len(got), len(posted))
		}
	}

	// The owner restarts and takes the room back: the interim owner
	// releases it and closes its sockets with 1012.
	interim := c.Index(alice.owner)
	c.Restart(owner)
	c.WaitLive(t, 3)
	for _, m := range []*wsClient{alice, carol} {
		code, err := m.waitClose(60 * time.Second)
		if err != nil || code != websocket.CloseServiceRestart {
			t.Fatalf("%s through %s when the room moved back: close %d, %v; want 1012\n%s", m.name, c.Name(m.via), code, err, c.Logs(interim))
		}
	}
	pair, attempts = settledChat(t, c, room, []int{rest[0], rest[1]}, []string{"alice", "carol"}, "back home", 90*time.Second)
	if pair[0].owner != c.Name(owner) {
		t.Fatalf("after the restart the room runs on %q, want %s", pair[0].owner, c.Name(owner))
	}
	if h := pair[1].hello.History; len(h) == 0 || !strings.HasPrefix(h[len(h)-1].Text, "after the kill") && !strings.HasPrefix(h[len(h)-1].Text, "back home") {
		t.Fatalf("history after the restart ends with %+v", h[len(h)-1:])
	}
	t.Logf("the room is back on %s, in %d attempts", pair[0].owner, attempts)

	// SIGTERM alice's node (not the owner): it closes her socket with 1001
	// (going away) and tells the owner, which runs her WebSocketError turn
	// without waiting for the node to leave its view.
	stopped := time.Now()
	stopErr := make(chan error, 1)
	go func() { stopErr <- c.stopNode(rest[0]) }()
	if code, err := pair[0].waitClose(60 * time.Second); err != nil || code != websocket.CloseGoingAway {
		t.Fatalf("alice through %s when it stopped: close %d, %v; want 1001", c.Name(rest[0]), code, err)
	}
	if err := <-stopErr; err != nil {
		t.Fatalf("SIGTERM %s: %v", c.Name(rest[0]), err)
	}
	waitLeft(t, c, owner, room, "alice", "SIGTERM", stopped)

	// Back, then SIGKILL: the owner ends the socket it held for her once
	// her node has been out of its view for the grace.
	c.Restart(rest[0])
	c.WaitLive(t, 3)
	settledChat(t, c, room, []int{rest[0], rest[1]}, []string{"alice", "carol"}, "again", 90*time.Second)
	killed = time.Now()
	c.Kill(rest[0])
	waitLeft(t, c, owner, room, "alice", "SIGKILL", killed)
}

// stopNode sends node i SIGTERM and waits for a clean exit.
func (c *testCluster) stopNode(i int) error {
	c.mu.Lock()
	p := c.nodes[i].p
	c.nodes[i].p = nil
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", c.nodes[i].name)
	}
	return p.stop()
}

// waitLeft waits until name is no longer among room's members, as node
// via answers, and logs how long after since it took. (Other members may
// be closed with 1012 meanwhile, if their node's view lost the owner for
// a moment while the streams elected leaders.)
func waitLeft(t *testing.T, c *testCluster, via int, room, name, what string, since time.Time) {
	t.Helper()
	var names []string
	var err error
	gone := waitFor(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		names = nil
		if _, err = call(ctx, c.URL(via), "chat", room, "members", nil, &names); err != nil {
			return false
		}
		return !slices.Contains(names, name)
	})
	if !gone {
		t.Fatalf("%s is still a member %s after her node's %s: members %v, %v\n%s", name, time.Since(since).Round(time.Millisecond), what, names, err, c.Logs(via))
	}
	t.Logf("%s left the room %s after her node's %s", name, time.Since(since).Round(time.Millisecond), what)
}

// settledChat connects names through vias until every socket runs on one
// owner and a probe from the first reaches all of them, reconnecting
// after 1012 closes, until timeout. It returns the clients and the number
// of attempts.
func settledChat(t *testing.T, c *testCluster, room string, vias []int, names []string, probe string, timeout time.Duration) ([]*wsClient, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not settle in %s (%d attempts)", room, timeout, attempt-1)
		}
		var got []*wsClient
		for i, via := range vias {
			got = append(got, joinChat(t, c, via, room, names[i], time.Until(deadline)))
		}
		retry := func(why string) {
			t.Logf("attempt %d: %s; reconnecting", attempt, why)
			for _, w := range got {
				w.c.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
		if slices.ContainsFunc(got, func(w *wsClient) bool { return w.owner != got[0].owner }) {
			retry("the members' connect turns ran on different nodes")
			continue
		}
		text := fmt.Sprintf("%s #%d", probe, attempt)
		if err := got[0].c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			retry(fmt.Sprint("write: ", err))
			continue
		}
		ok := true
		for _, w := range got {
			msg, err := w.readMessage()
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce) && ce.Code == websocket.CloseServiceRestart:
				ok = false
			case err != nil:
				t.Fatalf("attempt %d: %v", attempt, err)
			case msg.Text != text:
				t.Fatalf("attempt %d: %s got %+v, want %q", attempt, w.name, msg, text)
			}
			if !ok {
				break
			}
		}
		if !ok {
			retry("a socket was closed with 1012: the room moved")
			continue
		}
		return got, attempt
	}
}
