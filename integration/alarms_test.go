package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashAlarmsAllFire: SIGKILL a node with 1,000 session expiries
// pending, some due while it is down; after the restart every one fires (the
// session's data is gone), none is lost.
func TestCrashAlarmsAllFire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const sessions, workers = 1000, 32
	// Every expiry is due after lead, so that the kill comes while they
	// are pending. Setting them took 3.5s once with both cores busy
	// elsewhere, and 10.4s with seven other test suites on two cores: if
	// it takes longer than lead, the first few fire before the kill, and
	// the test asks only that most are still pending then.
	const lead = 12 * time.Second
	dir := t.TempDir()
	p := serve(t, dir)
	ctx := context.Background()
	var wg sync.WaitGroup
	var acked atomic.Int64
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				// Due from lead to lead+3s from now: the kill comes before
				// any, the restart after about half of them.
				ttl := lead + time.Duration(i)*3*time.Millisecond
				in := map[string]any{"ttl": ttl.String(), "data": map[string]int{"n": i}}
				if _, err := call(ctx, p.url, "session", fmt.Sprint("s", i), "touch", in, nil); err != nil {
					t.Errorf("touch s%d: %v", i, err)
					continue
				}
				acked.Add(1)
			}
		}()
	}
	start := time.Now()
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		return
	}
	if took := time.Since(start); took > lead {
		pending := pendingAlarms(t, p.url)
		if pending < sessions/2 {
			t.Fatalf("setting %d alarms took %s: only %d are pending at the kill, want most", sessions, took, pending)
		}
		t.Logf("setting %d alarms took %s: %d pending at the kill", sessions, took, pending)
	}
	p.kill()
	time.Sleep(time.Until(start.Add(lead + 1500*time.Millisecond))) // about half fall due while down
	p = serve(t, dir)

	// Without touching any object: the pending list drains as fires run.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := pendingAlarms(t, p.url)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d alarms still pending 30s after restart", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every acknowledged session has expired: its data is gone.
	active := 0
	for i := range sessions {
		var st struct{ Active bool }
		if _, err := call(ctx, p.url, "session", fmt.Sprint("s", i), "get", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Active {
			active++
		}
	}
	if active != 0 {
		t.Fatalf("%d of %d sessions never expired", active, acked.Load())
	}
}

func pendingAlarms(t *testing.T, base string) int {
	t.Helper()
	resp, err := client.Get(base + "/v1/alarms?class=session")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/alarms: %d", resp.StatusCode)
	}
	var out struct {
		Alarms []json.RawMessage `json:"alarms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return len(out.Alarms)
}
