package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCrashLosesNoAcknowledgedWrite drives concurrent writes over HTTP,
// kills the server with SIGKILL mid-load, restarts it on the same folder,
// and checks that every write that got a 2xx is there. Several rounds on
// one folder, so recovery from a crash is itself crashed.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const workers, rounds = 16, 4
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))

	// What the clients were told, per worker: the highest counter value
	// acknowledged, and every kv key acknowledged.
	ackedCounter := make([]int64, workers)
	ackedKeys := make([]map[string]int, workers)
	for w := range ackedKeys {
		ackedKeys[w] = map[string]int{}
	}
	seq := make([]int, workers) // per worker write number, across rounds

	for round := 0; round < rounds; round++ {
		p := serve(t, dir)
		verify(t, p.url, round, ackedCounter, ackedKeys)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var mu sync.Mutex
		acks := 0
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					seq[w]++
					n := seq[w]
					var out struct{ Value int64 }
					if _, err := call(ctx, p.url, "counter", fmt.Sprint("c", w), "increment", map[string]int{"by": 1}, &out); err == nil {
						ackedCounter[w] = out.Value
						mu.Lock()
						acks++
						mu.Unlock()
					}
					key := fmt.Sprintf("k%05d", n)
					if _, err := call(ctx, p.url, "kv", fmt.Sprint("kv", w), "put", map[string]any{"key": key, "value": n}, nil); err == nil {
						ackedKeys[w][key] = n
						mu.Lock()
						acks++
						mu.Unlock()
					}
				}
			}()
		}
		// Kill at a random moment once the load is flowing.
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			a := acks
			mu.Unlock()
			if a >= 200 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
		mu.Lock()
		t.Logf("round %d: %d writes acknowledged before SIGKILL", round, acks)
		if acks < 200 {
			t.Fatalf("round %d: only %d writes acknowledged in 30s:\n%s", round, acks, p.output())
		}
		mu.Unlock()
	}
	p := serve(t, dir)
	verify(t, p.url, rounds, ackedCounter, ackedKeys)
	if err := p.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

// verify checks the restarted server against what clients were told. A
// counter may be one ahead of its last acknowledged value (the increment in
// flight at the kill may have landed), never behind.
func verify(t *testing.T, url string, round int, counters []int64, keys []map[string]int) {
	t.Helper()
	ctx := context.Background()
	for w := range counters {
		var out struct{ Value int64 }
		if _, err := call(ctx, url, "counter", fmt.Sprint("c", w), "get", nil, &out); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if out.Value < counters[w] || out.Value > counters[w]+1 {
			t.Fatalf("round %d: counter c%d is %d, acknowledged %d", round, w, out.Value, counters[w])
		}
		counters[w] = out.Value
		var list struct {
			Entries []struct {
				Key   string
				Value int
			}
		}
		if _, err := call(ctx, url, "kv", fmt.Sprint("kv", w), "list", map[string]any{}, &list); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		have := map[string]int{}
		for _, e := range list.Entries {
			have[e.Key] = e.Value
		}
		for k, v := range keys[w] {
			if have[k] != v {
				t.Fatalf("round %d: kv%d lost acknowledged key %s=%d (have %d entries)", round, w, k, v, len(have))
			}
		}
		// Writes in flight at the kill may have landed: adopt them.
		for k, v := range have {
			keys[w][k] = v
		}
	}
}

// TestDataFolderLocked: a second node on the same data folder refuses to
// start instead of sharing the JetStream store.
func TestDataFolderLocked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	first := serve(t, dir)
	out, err := exec.Command(strataBinary(t), "serve", "--data", dir, "--http", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another strata process") {
		t.Fatalf("second node on one folder: err %v, output:\n%s", err, out)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	second := serve(t, dir) // the lock went with the first process
	second.kill()
}
