package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestClusterNoLeaseAnswersAtOnce: a node cut off from the majority (here
// the other two are paused with SIGSTOP, so its heartbeats are no longer
// stored) gives up its membership lease. From then on it answers every
// request, read or write, for an object it owned or one it forwarded, at
// once with a retryable 503 no_lease, and writes nothing; it used to hold
// each request for the whole request deadline. Once the others are back,
// it serves again and the refused writes left no trace.
func TestClusterNoLeaseAnswersAtOnce(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1 := c.URL(0)

	// One object n1 owns and one another node owns, both written through n1.
	owned := map[bool]string{} // ran on n1 -> name
	for i := 0; i < 200 && len(owned) < 2; i++ {
		name := fmt.Sprintf("lease-%d", i)
		code, ran, _, err := kvCall(ctx, n1, name, "put", map[string]any{"key": "k", "value": "before"})
		if err != nil || code != http.StatusOK {
			t.Fatalf("put through n1: %d %v", code, err)
		}
		if _, ok := owned[ran == c.Name(0)]; !ok {
			owned[ran == c.Name(0)] = name
		}
	}
	if len(owned) < 2 {
		t.Fatalf("200 objects, and not both one n1 owns and one it does not: %v", owned)
	}

	c.Pause(1)
	c.Pause(2)
	paused := true
	defer func() {
		if paused {
			c.Resume(1)
			c.Resume(2)
		}
	}()
	lapse := time.Now()
	// A read sent at once, most likely before the lapse: n1 forwards it to
	// the paused owner, who will not answer; it must end when n1's lease
	// runs out, not at the request deadline.
	type answer struct {
		code int
		ran  string
		body []byte
		err  error
		took time.Duration
	}
	admitted := make(chan answer, 1)
	go func() {
		start := time.Now()
		code, ran, body, err := rpc(ctx, n1, "kv", owned[false], "get", map[string]any{"key": "k"})
		admitted <- answer{code, ran, body, err, time.Since(start)}
	}()
	for {
		v, err := c.Status(0)
		if err == nil && !v.Leased {
			break
		}
		if time.Since(lapse) > time.Minute {
			t.Fatalf("n1 still holds its lease a minute after the others paused: %+v %v\n%s", v, err, c.Logs(0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("n1 gave up its lease %s after the others paused", time.Since(lapse).Round(time.Millisecond))
	a := <-admitted
	if a.err != nil || a.code != http.StatusServiceUnavailable || a.took > 10*time.Second {
		t.Fatalf("a read forwarded by n1 just before it lost its lease: %d %s %v in %s (ran on %q); want a 503 soon after the lapse\nn1's log:\n%s",
			a.code, a.body, a.err, a.took, a.ran, c.Logs(0))
	}
	t.Logf("a read forwarded just before the lapse: %d %s in %s", a.code, bytes.TrimSpace(a.body), a.took.Round(time.Millisecond))

	// The target is 100 ms; the bound leaves room for a loaded machine and
	// is far below the request deadline (30 s) the node used to hold for.
	const bound = 2 * time.Second
	for _, mine := range []bool{true, false} {
		for _, m := range []struct{ method, value string }{{"get", ""}, {"put", "refused"}} {
			in := map[string]any{"key": "k"}
			if m.value != "" {
				in["value"] = m.value
			}
			start := time.Now()
			code, _, body, err := rpc(ctx, n1, "kv", owned[mine], m.method, in)
			took := time.Since(start)
			var e errorReply
			json.Unmarshal(body, &e)
			if err != nil || code != http.StatusServiceUnavailable || e.Error.Code != "no_lease" || !e.Error.Retryable {
				t.Fatalf("%s of an object n1 owns=%v, through n1 without its lease: %d %s %v (in %s); want 503 no_lease, retryable",
					m.method, mine, code, body, err, took)
			}
			if took > bound {
				t.Fatalf("%s (n1 owns=%v) without the lease answered in %s, want under %s", m.method, mine, took, bound)
			}
			t.Logf("%s (n1 owns=%v) without the lease: 503 no_lease in %s", m.method, mine, took.Round(time.Microsecond))
		}
	}

	c.Resume(1)
	c.Resume(2)
	paused = false
	// Serving again through n1; the refused puts wrote nothing.
	for _, name := range owned {
		for {
			code, _, out, err := kvCall(ctx, n1, name, "get", map[string]any{"key": "k"})
			if err == nil && code == http.StatusOK {
				if out["value"] != "before" {
					t.Fatalf("get %s after the lease is back: %v, want the value before the lapse (a refused put wrote)", name, out)
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("get %s through n1 after the others resumed: %d %v %v\n%s", name, code, out, err, c.Logs(0))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// errorReply is the gateway's error body.
type errorReply struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Retryable bool   `json:"retryable"`
	} `json:"error"`
}
