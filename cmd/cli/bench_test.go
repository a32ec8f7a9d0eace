package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-objects/strata/classes"
)

// TestBenchRuns: a short `strata bench` against its temporary server
// measures the raw limits (raw-conc: 4 publishers over the shards'
// streams, whose expectations fail if two share a subject) and the
// workloads through the gateway, without errors (W1-READ reads W1's
// counter, compared with the raw limit's p50), and W5 reads back every
// event it wrote. The HTTP floors publish without errors (each
// client's subjects are its own) and compare with the raw rows. W3
// reports the process's CPU time per request. C1
// compares a call between objects with an HTTP call to the callee, M1
// waits until every message it sent has run and compares with W3.
func TestBenchRuns(t *testing.T) {
	var out, errOut bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errOut, Classes: classes.All()}
	args := []string{"bench", "--json", "--duration", "300ms", "--warmup", "0s", "--clients", "4", "--objects", "20", "--history", "20", "--workloads", "W1,W1-read,W2,W3,W4,C1,M1,W5"}
	if err := Run(context.Background(), env, args); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	got := map[string]benchResult{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r benchResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got[r.Workload] = r
	}
	for _, w := range []string{"raw-sync", "raw-batch", "raw-async", "raw-conc", "raw-http", "raw-http-sync", "raw-http-group", "raw-http-conc", "W1", "W2", "W1-READ", "W3", "W4", "W3-sql", "C1-http", "C1", "M1", "W5"} {
		r, ok := got[w]
		if !ok {
			t.Fatalf("no %s row in %v", w, got)
		}
		if r.PerSecond <= 0 || r.Errors != 0 {
			t.Errorf("%s: %+v", w, r)
		}
	}
	if got["W1"].Ratio <= 0 || got["W1"].P50Ratio <= 0 {
		t.Errorf("W1 has no ratio to the raw limit: %+v", got["W1"])
	}
	for w, floor := range map[string]string{"W1": "raw-http-sync", "W2": "raw-http-group", "W3": "raw-http-conc"} {
		if r := got[w]; r.Floor != floor || r.FloorRatio <= 0 || r.FloorRatio != got[floor].Ratio {
			t.Errorf("%s is not shown beside its floor %s: %+v, floor %+v", w, floor, r, got[floor])
		}
	}
	if got["W1"].P50FloorRatio <= 0 || got["raw-http-conc"].Limit != "raw-conc" {
		t.Errorf("the HTTP floors are not compared with the raw limits: W1 %+v, raw-http-conc %+v", got["W1"], got["raw-http-conc"])
	}
	if got["W1-READ"].P50Ratio <= 0 {
		t.Errorf("W1-READ has no p50 ratio to the raw limit: %+v", got["W1-READ"])
	}
	if got["W3"].CPUMicros <= 0 {
		t.Errorf("W3 has no CPU time per request: %+v", got["W3"])
	}
	if got["C1"].Limit != "C1-http" || got["C1"].P50Ratio <= 0 {
		t.Errorf("C1 is not compared with an HTTP call to its callee: %+v", got["C1"])
	}
	if got["M1"].Limit != "W3" || got["M1"].Ratio <= 0 {
		t.Errorf("M1 is not compared with W3: %+v", got["M1"])
	}
	for _, w := range []string{"W3", "W3-sql"} {
		if got[w].FirstTouchPerSecond <= 0 {
			t.Errorf("%s did not touch its objects before its window: %+v", w, got[w])
		}
	}
	if got["W3"].ConcRatio <= 0 {
		t.Errorf("W3 has no ratio to raw-conc: %+v", got["W3"])
	}
}

// TestGroupFloorGroups: raw-http-group's handler answers concurrent
// requests with fewer publishes than requests (each answered 200 only
// once its group's publish is acknowledged), as W2's group commit does;
// without grouping every request would publish once.
func TestGroupFloorGroups(t *testing.T) {
	ctx := context.Background()
	ln, err := openLog(ctx, logConfig{dataDir: t.TempDir(), fsync: "always", shards: 1, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.close(ctx)
	raw, err := ln.log.Raw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	f := &httpFloor{raw: raw, msg: make([]byte, 160), last: map[string]uint64{}}
	g := newGroupFloor(ctx, f)
	defer g.stop()
	srv := httptest.NewServer(g)
	defer srv.Close()

	const clients, each = 32, 5
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range clients {
		wg.Go(func() {
			for range each {
				resp, err := http.Post(srv.URL+"/v1/objects/counter/0/rpc/increment", "application/json", strings.NewReader(`{"by":1}`))
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, clients*each)
	}
	// The stream holds only this subject's publishes: its last sequence
	// counts them.
	f.mu.Lock()
	publishes := f.last[f.subject(0)]
	f.mu.Unlock()
	if publishes == 0 || publishes >= clients*each {
		t.Fatalf("%d requests made %d publishes: not grouped", clients*each, publishes)
	}
	t.Logf("%d requests, %d publishes", clients*each, publishes)
}
