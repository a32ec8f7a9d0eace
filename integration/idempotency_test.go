package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyedIncrement posts one increment of counter/name with an
// Idempotency-Key on a new connection (a retrying client cannot trust the
// old one), and returns the status, the counter's value in the answer and
// the body. replayedAnswers counts answers given from a key's record.
func keyedIncrement(ctx context.Context, base, name, key string) (int, int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/objects/counter/"+name+"/rpc/increment", strings.NewReader(`{"by":1}`))
	if err != nil {
		return 0, 0, "", err
	}
	req.Close = true
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, 0, "", err
	}
	var out struct{ Value int64 }
	if resp.StatusCode == http.StatusOK {
		err = json.Unmarshal(b, &out)
	}
	if resp.Header.Get("Idempotent-Replayed") == "true" {
		replayedAnswers.Add(1)
	}
	return resp.StatusCode, out.Value, string(bytes.TrimSpace(b)), err
}

var replayedAnswers atomic.Int64

// retryingClients run workers that each make perWorker increments of one
// counter, every one under its own key, retrying each (same key, any node
// urls gives, backoff 50 ms) until it is answered 200. A 4xx is a failure
// of the test: no answer of a correct node to these requests is one.
type retryingClients struct {
	acks    atomic.Int64
	retries atomic.Int64
	mu      sync.Mutex
	answers map[string]int64 // key -> the value its 200 carried
	fails   []string
	wg      sync.WaitGroup
}

func startRetryingClients(ctx context.Context, urls func() []string, name string, workers, perWorker int) *retryingClients {
	rc := &retryingClients{answers: map[string]int64{}}
	for w := range workers {
		rc.wg.Add(1)
		go func() {
			defer rc.wg.Done()
			for i := range perWorker {
				key := fmt.Sprintf("w%02d-%03d", w, i)
				for attempt := 0; ctx.Err() == nil; attempt++ {
					us := urls()
					if len(us) == 0 {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					actx, cancel := context.WithTimeout(ctx, 20*time.Second)
					status, v, body, err := keyedIncrement(actx, us[(w+attempt)%len(us)], name, key)
					cancel()
					if err == nil && status == http.StatusOK {
						rc.mu.Lock()
						rc.answers[key] = v
						rc.mu.Unlock()
						rc.acks.Add(1)
						break
					}
					if err == nil && status >= 400 && status < 500 && status != http.StatusConflict && status != 499 {
						rc.mu.Lock()
						rc.fails = append(rc.fails, fmt.Sprintf("%s: %d %s", key, status, body))
						rc.mu.Unlock()
						return
					}
					rc.retries.Add(1)
					time.Sleep(50 * time.Millisecond) // the client's backoff
				}
			}
		}()
	}
	return rc
}

// check waits for the clients and checks that every key was answered once
// with its own value: the values are exactly 1..n, none twice.
func (rc *retryingClients) check(t *testing.T, n int) {
	t.Helper()
	rc.wg.Wait()
	if len(rc.fails) > 0 {
		t.Fatalf("%d requests failed for good, e.g. %v", len(rc.fails), rc.fails[:min(5, len(rc.fails))])
	}
	if len(rc.answers) != n {
		t.Fatalf("%d of %d keys answered", len(rc.answers), n)
	}
	seen := map[int64]string{}
	for k, v := range rc.answers {
		if v < 1 || v > int64(n) {
			t.Fatalf("key %s was answered %d, outside 1..%d: some increment ran twice", k, v, n)
		}
		if other, dup := seen[v]; dup {
			t.Fatalf("keys %s and %s were both answered %d: an answer is not its own", k, other, v)
		}
		seen[v] = k
	}
}

// finalValue reads the counter through base.
func finalValue(t *testing.T, base, name string) int64 {
	t.Helper()
	var out struct{ Value int64 }
	if _, err := call(context.Background(), base, "counter", name, "get", nil, &out); err != nil {
		t.Fatal(err)
	}
	return out.Value
}

// TestIdempotentRetriesAcrossSIGKILL: 32 clients retry every increment of
// one counter under its own key until answered, while the node is killed
// with SIGKILL mid-load and restarted on its folder. The counter ends at
// exactly the number of keys, and a late retry of an early key gets its
// first answer.
func TestIdempotentRetriesAcrossSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const workers, perWorker = 32, 20
	dir := t.TempDir()
	p := serve(t, dir)
	var url atomic.Value
	url.Store(p.url)
	urls := func() []string { return []string{url.Load().(string)} }

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc := startRetryingClients(ctx, urls, "idem", workers, perWorker)
	if !waitFor(60*time.Second, func() bool { return rc.acks.Load() >= 150 }) {
		t.Fatalf("only %d increments answered in 60s:\n%s", rc.acks.Load(), p.output())
	}
	p.kill()
	killedAt := rc.acks.Load()
	p = serve(t, dir)
	url.Store(p.url)
	rc.check(t, workers*perWorker)
	t.Logf("%d increments answered before SIGKILL, %d retries, %d answers replayed", killedAt, rc.retries.Load(), replayedAnswers.Load())
	if got := finalValue(t, p.url, "idem"); got != workers*perWorker {
		t.Fatalf("counter at %d after %d keyed increments", got, workers*perWorker)
	}
	// A retry long after, on the restarted node: the first answer again.
	status, v, body, err := keyedIncrement(context.Background(), p.url, "idem", "w00-000")
	if err != nil || status != http.StatusOK || v != rc.answers["w00-000"] {
		t.Fatalf("late retry of w00-000: %d %s %v, want its first answer %d", status, body, err, rc.answers["w00-000"])
	}
	if err := p.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

// TestClusterIdempotentRetriesOwnerDies: the same clients against a
// three-node cluster, sending through every live node, while the counter's
// owner is killed for good: the survivors take the object over from the
// log, where the records of the keys it ran are.
func TestClusterIdempotentRetriesOwnerDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	const workers, perWorker = 32, 15
	c := startCluster(t, 3)
	const name = "idem-cluster"
	status, owner, body, err := rpc(context.Background(), c.URL(0), "counter", name, "get", nil)
	if err != nil || status != http.StatusOK || c.Index(owner) < 0 {
		t.Fatalf("finding the owner of %s: %d %q %s %v", name, status, owner, body, err)
	}
	victim := c.Index(owner)
	urls := func() []string {
		var us []string
		for i := range 3 {
			if u := c.URL(i); u != "" {
				us = append(us, u)
			}
		}
		return us
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc := startRetryingClients(ctx, urls, name, workers, perWorker)
	if !waitFor(60*time.Second, func() bool { return rc.acks.Load() >= 100 }) {
		t.Fatalf("only %d increments answered in 60s", rc.acks.Load())
	}
	c.Kill(victim)
	killedAt := rc.acks.Load()
	rc.check(t, workers*perWorker)
	t.Logf("owner %s killed after %d answers; %d retries, %d answers replayed", owner, killedAt, rc.retries.Load(), replayedAnswers.Load())
	survivor := (victim + 1) % 3
	if got := finalValue(t, c.URL(survivor), name); got != workers*perWorker {
		t.Fatalf("counter at %d after %d keyed increments", got, workers*perWorker)
	}
	before := replayedAnswers.Load()
	status, v, late, err := keyedIncrement(context.Background(), c.URL(survivor), name, "w00-000")
	if replayedAnswers.Load() != before+1 {
		t.Errorf("the late retry through %s was not marked Idempotent-Replayed", c.Name(survivor))
	}
	if err != nil || status != http.StatusOK || v != rc.answers["w00-000"] {
		t.Fatalf("late retry of w00-000 on %s: %d %s %v, want its first answer %d", c.Name(survivor), status, late, err, rc.answers["w00-000"])
	}
}
