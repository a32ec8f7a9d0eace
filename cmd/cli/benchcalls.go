package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Calls between objects (issue 16), on the relay class (classes/relay.go):
//
//	C1-http  1 client, sequential hops sent over HTTP to one relay: the callee alone
//	C1       1 client, sequential hops to a relay that calls that one on the same node
//	M1       durable messages between pairs of relays, clients sending
//	C2-http, C2  (strata bench cluster) C1's pair through node 1, the callee on another node
//
// C1 and C2 compare a synchronous call with an HTTP call to the same
// object (p50 and p99), M1 the messages delivered per second with W3 of
// the same run: a message costs the sender's event and the target's.

// callPairRows runs a "-http" row (one client, sequential hops to the
// callees over HTTP) and a row of hops to the callers, each calling its
// callee (pairs callers[i] → callees[i]), with the ratios of the second to
// the first.
func (b *bencher) callPairRows(ctx context.Context, name, whatHTTP, what string, callers, callees []string) []benchResult {
	direct := b.load(ctx, name+"-http", whatHTTP, 1, func(_ int, rng *rand.Rand) (string, string) {
		return "/v1/objects/relay/" + callees[rng.IntN(len(callees))] + "/rpc/hop", `{}`
	})
	call := b.load(ctx, name, what, 1, func(_ int, rng *rand.Rand) (string, string) {
		i := rng.IntN(len(callers))
		return "/v1/objects/relay/" + callers[i] + "/rpc/hop", `{"path":["` + callees[i] + `"]}`
	})
	if direct.PerSecond > 0 && direct.P50Millis > 0 {
		call.Limit, call.LimitPerSec, call.Ratio = direct.Workload, direct.PerSecond, call.PerSecond/direct.PerSecond
		call.P50Ratio = call.P50Millis / direct.P50Millis
	}
	return []benchResult{direct, call}
}

// relayNames is prefix-0 … prefix-(n-1).
func relayNames(prefix string, n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return names
}

// messagesBetweenPairs is M1: clients send hops by durable message from
// senders[i] to targets[i] (i uniform) for warmup + duration; then it waits
// until every message has run on its target. One message per pair first
// activates the pairs, unmeasured. The rate is the messages sent over the
// time from the first send to the moment a read of the targets' counts
// saw the last one delivered (so it is low by up to one read of the
// targets still short, parallel over the clients); p50 and p99 are the
// sends' (the sender's event, acknowledged).
func (b *bencher) messagesBetweenPairs(ctx context.Context, name, what string, clients int, senders, targets []string) (benchResult, error) {
	hop := func(i int) (string, string) {
		return "/v1/objects/relay/" + senders[i] + "/rpc/hop", `{"path":["` + targets[i] + `"],"by":"message"}`
	}
	if err := b.each(ctx, clients, len(senders), func(i int) error {
		path, body := hop(i)
		return b.post(ctx, path, body, nil)
	}); err != nil {
		return benchResult{}, fmt.Errorf("%s: first messages: %w", name, err)
	}
	sent := make([]atomic.Int64, len(targets)) // messages sent to each target
	for i := range sent {
		sent[i].Store(1)
	}
	if _, err := b.waitDelivered(ctx, name, clients, targets, sent); err != nil {
		return benchResult{}, err
	}
	mb := *b
	mb.cfg.warmup = 0
	start := time.Now()
	r := mb.load(ctx, name, what, clients, func(_ int, rng *rand.Rand) (string, string) {
		i := rng.IntN(len(senders))
		sent[i].Add(1)
		return hop(i)
	})
	if r.Errors > 0 {
		return r, fmt.Errorf("%s: %d sends failed: their messages may or may not be on their way", name, r.Errors)
	}
	done, err := b.waitDelivered(ctx, name, clients, targets, sent)
	if err != nil {
		return r, err
	}
	r.PerSecond = float64(r.Requests) / done.Sub(start).Seconds()
	return r, nil
}

// waitDelivered reads the targets' hop counts until each has had the
// messages sent to it (want[i]), reading again only the targets still
// short, and returns when the read that saw the last of them ended.
func (b *bencher) waitDelivered(ctx context.Context, name string, clients int, targets []string, want []atomic.Int64) (time.Time, error) {
	deadline := time.Now().Add(5 * time.Minute)
	short := make([]int, len(targets))
	var total int64
	for i := range short {
		short[i] = i
		total += want[i].Load()
	}
	var delivered int64 // messages seen on the targets no longer short
	for {
		got := make([]int64, len(short))
		err := b.each(ctx, clients, len(short), func(j int) error {
			var out struct{ Hops int64 }
			if err := b.post(ctx, "/v1/objects/relay/"+targets[short[j]]+"/rpc/get", ``, &out); err != nil {
				return err
			}
			got[j] = out.Hops
			return nil
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: read the targets: %w", name, err)
		}
		now := time.Now()
		still := short[:0]
		var seen int64
		for j, i := range short {
			if got[j] >= want[i].Load() {
				delivered += got[j]
				continue
			}
			seen += got[j]
			still = append(still, i)
		}
		short = still
		fmt.Fprintf(b.out, "\r%s: %d of %d messages delivered   ", name, delivered+seen, total)
		switch {
		case len(short) == 0:
			fmt.Fprintf(b.out, "\r%-60s\r", "")
			return now, nil
		case now.After(deadline):
			return time.Time{}, fmt.Errorf("%s: %d of %d messages delivered after 5 minutes (%d targets short)", name, delivered+seen, total, len(short))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// each runs fn(0) … fn(n-1) on workers goroutines and returns the first
// error.
func (b *bencher) each(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// postNode POSTs body to path on base and returns the node that ran it
// (the Strata-Node header).
func (b *bencher) postNode(ctx context.Context, base, path, body string, nodeHeader string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", path, resp.Status)
	}
	return resp.Header.Get(nodeHeader), nil
}
