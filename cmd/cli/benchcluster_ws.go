package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/strata-objects/strata/cluster"
)

// WebSockets through a cluster node: one client on node 1, sequential
// round trips on a chat room node 1 owns (local) and on one another node
// owns (forwarded: each message is a NATS request to the owner, each frame
// back a publish). Two kinds of round trip: "ping", answered with "pong"
// by the auto-response without a turn (on node 1's gateway when local, on
// the owner when forwarded), and a posted message, a durable turn whose
// broadcast comes back to the sender.

// roomsOwnedBy asks base which node owns chat rooms prefix-0, prefix-1, …
// (the Strata-Node header of their members RPC) until it has one room
// owned by node and one owned by another.
func (b *bencher) roomsOwnedBy(ctx context.Context, prefix, node string) (local, remote string, err error) {
	for i := 0; local == "" || remote == ""; i++ {
		if i > 200 {
			return "", "", fmt.Errorf("placement: no local and remote chat rooms after %d tries", i)
		}
		name := fmt.Sprintf("%s-%d", prefix, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+"/v1/objects/chat/"+name+"/rpc/members", strings.NewReader("{}"))
		if err != nil {
			return "", "", err
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return "", "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ran := resp.Header.Get(cluster.NodeHeader)
		switch {
		case resp.StatusCode != http.StatusOK || ran == "":
			return "", "", fmt.Errorf("placement: chat %s: %s, %s %q", name, resp.Status, cluster.NodeHeader, ran)
		case ran == node && local == "":
			local = name
		case ran != node && remote == "":
			remote = name
		}
	}
	return local, remote, nil
}

// wsRoundTrips joins room through base and makes sequential round trips
// for the warm-up and the measured time: "ping" until "pong" if ping,
// else a posted message until its broadcast comes back.
func (b *bencher) wsRoundTrips(ctx context.Context, name, what, room string, ping bool) (benchResult, error) {
	url := "ws" + strings.TrimPrefix(b.base, "http") + "/v1/objects/chat/" + room + "/ws?name=bench"
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return benchResult{}, fmt.Errorf("%s: dial: %w", name, err)
	}
	defer conn.Close()
	start := time.Now()
	measureFrom := start.Add(b.cfg.warmup)
	end := measureFrom.Add(b.cfg.duration)
	var lat []time.Duration
	errs := 0
	for i := 0; ctx.Err() == nil; i++ {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		text := "ping"
		if !ping {
			text = fmt.Sprint("m", i)
		}
		conn.SetWriteDeadline(t0.Add(30 * time.Second))
		conn.SetReadDeadline(t0.Add(30 * time.Second))
		if err := conn.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
			return benchResult{}, fmt.Errorf("%s: write: %w", name, err)
		}
		if err := awaitEcho(conn, text, ping); err != nil {
			return benchResult{}, fmt.Errorf("%s: %w", name, err)
		}
		if t0.After(measureFrom) {
			lat = append(lat, time.Since(t0))
		}
	}
	return summarize(name, what, lat, errs, b.cfg.duration), nil
}

// awaitEcho reads frames until the answer to text: "pong" for a ping, the
// broadcast of the posted message otherwise (the welcome and joins come
// first).
func awaitEcho(conn *websocket.Conn, text string, ping bool) error {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if ping {
			if string(data) == "pong" {
				return nil
			}
			continue
		}
		var f struct {
			Type    string `json:"type"`
			Message *struct {
				Text string `json:"text"`
			} `json:"message"`
		}
		if json.Unmarshal(data, &f) == nil && f.Type == "message" && f.Message != nil && f.Message.Text == text {
			return nil
		}
	}
}
