package gateway_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/gateway"
)

// openTail starts GET path and returns the response once its headers are
// in.
func (f *fixture) openTail(ctx context.Context, path string) *http.Response {
	f.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// waitConsumers polls the log's consumer count until it is want.
func (f *fixture) waitConsumers(want int) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := f.node.Log.ConsumerCount(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d consumers on the log streams, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTailsLeaveNoConsumers: a thousand tails and follows opened and
// dropped by their clients leave no server-side consumer behind, and tail
// still works after them.
func TestTailsLeaveNoConsumers(t *testing.T) {
	f := start(t)
	if code, body := f.post("/v1/objects/kv/t/rpc/put", `{"key":"a","value":1}`); code != 200 {
		t.Fatal(code, body)
	}
	paths := []string{"/v1/tail", "/v1/tail?class=kv", "/v1/objects/kv/t/history?follow=true"}
	for i := 0; i < 1000; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		resp := f.openTail(ctx, paths[i%len(paths)])
		if resp.StatusCode != 200 {
			t.Fatalf("tail %d: %d", i, resp.StatusCode)
		}
		if i%10 == 0 {
			// Some wait for their consumers to exist before hanging up.
			f.waitConsumersAtLeast(1)
		}
		cancel()
		resp.Body.Close()
	}
	f.waitConsumers(0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := f.openTail(ctx, "/v1/tail?class=kv")
	defer resp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The headers come once the tail is subscribed: one write after them
	// is seen.
	if code, body := f.post("/v1/objects/kv/t/rpc/put", `{"key":"b","value":2}`); code != 200 {
		t.Fatal(code, body)
	}
	select {
	case l := <-lines:
		if !strings.Contains(l, `"class":"kv"`) || !strings.Contains(l, `"key":"b"`) {
			t.Fatalf("tail line %s", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the tail missed a write made after its headers")
	}
}

func (f *fixture) waitConsumersAtLeast(n int) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := f.node.Log.ConsumerCount(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d consumers, want at least %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamsMax: past the cap a tail or follow gets 503 overloaded; a
// place comes back when a client leaves.
func TestStreamsMax(t *testing.T) {
	f := startWith(t, func(c *gateway.Config) { c.StreamsMax = 2 })
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	a := f.openTail(ctx1, "/v1/tail")
	defer a.Body.Close()
	b := f.openTail(ctx2, "/v1/objects/kv/m/history?follow=true")
	defer b.Body.Close()
	if a.StatusCode != 200 || b.StatusCode != 200 {
		t.Fatal(a.StatusCode, b.StatusCode)
	}
	for _, p := range []string{"/v1/tail", "/v1/objects/kv/m/history?follow=true"} {
		if code, ecode, h := f.send(http.MethodGet, p, "", nil); code != 503 || ecode != "overloaded" || h.Get("Retry-After") == "" {
			t.Fatalf("GET %s past the cap: %d %s", p, code, ecode)
		}
	}
	// History without follow holds no place.
	if code, ecode, _ := f.send(http.MethodGet, "/v1/objects/kv/m/history", "", nil); code != 200 {
		t.Fatalf("history: %d %s", code, ecode)
	}
	cancel1()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithCancel(context.Background())
		resp := f.openTail(ctx, "/v1/tail")
		code := resp.StatusCode
		cancel()
		resp.Body.Close()
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a client left: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
