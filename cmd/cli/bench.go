package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/tracing"
)

// benchConfig is what one `strata bench` run does.
type benchConfig struct {
	url       string
	duration  time.Duration
	warmup    time.Duration
	clients   int
	objects   int
	history   int
	workloads string
	json      bool
	shards    int
	auth      bool
	metrics   bool    // the temporary node counts metrics (serve's default)
	traceRate float64 // the temporary node traces this share of requests (0: off)
	// overhead > 0 runs the overhead bench instead (bench_overhead.go):
	// that many rounds of W1 and W3 alternating metrics and tracing.
	overhead       int
	overheadSample float64
}

// callPairs is how many caller/callee pairs C1 and C2 spread their
// sequential calls over.
const callPairs = 60

// benchResult is one row of the table.
type benchResult struct {
	Workload    string  `json:"workload"`
	What        string  `json:"what"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	PerSecond   float64 `json:"per_second"`
	P50Millis   float64 `json:"p50_ms"`
	P99Millis   float64 `json:"p99_ms"`
	Limit       string  `json:"limit,omitempty"`
	LimitPerSec float64 `json:"limit_per_second,omitempty"`
	Ratio       float64 `json:"ratio,omitempty"`
	// P50Ratio is p50 over the raw sequential publish's p50 (W1).
	P50Ratio float64 `json:"p50_ratio,omitempty"`
	// Floor names the row that serves the same requests over HTTP around
	// the raw publish with nothing of Strata's (W1: raw-http-sync, W2:
	// raw-http-group, W3: raw-http-conc); FloorRatio is its requests/s
	// over this row's limit (raw-conc for W3), and P50FloorRatio its p50
	// over raw-sync's (W1): the ratios the row would have if its turns
	// cost nothing.
	Floor         string  `json:"floor,omitempty"`
	FloorRatio    float64 `json:"floor_ratio,omitempty"`
	P50FloorRatio float64 `json:"p50_floor_ratio,omitempty"`
	// ConcRatio is requests/s over raw-conc's, JetStream's own rate in
	// W3's shape (W3).
	ConcRatio float64 `json:"ratio_to_raw_conc,omitempty"`
	// CPUMicros is the process's CPU time (user + system, /proc/self/stat)
	// over the measured window divided by the requests measured, in µs:
	// server and load generator together, since the bench's temporary
	// server runs in its process (W1–W4 on a temporary server only).
	CPUMicros float64 `json:"cpu_us_per_request,omitempty"`
	// FirstTouchPerSecond is the rate of the first request to each
	// object of a workload spread over many (W3, JW3, W3-sql), sent
	// before its warmup and not in its other figures: activations of
	// objects not live yet (and, for W3-sql, creating their databases).
	FirstTouchPerSecond float64 `json:"first_touch_per_second,omitempty"`
}

func runBench(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "ws" {
		return runBenchWS(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "cluster" {
		return runBenchCluster(ctx, env, args[1:])
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "bench [flags]")
	var bc benchConfig
	fs.StringVar(&bc.url, "url", "", "gateway of a running server to measure (default: a temporary embedded server, which also measures the raw JetStream limit)")
	fs.DurationVar(&bc.duration, "duration", 10*time.Second, "measured time per workload")
	fs.DurationVar(&bc.warmup, "warmup", 2*time.Second, "unmeasured time before each workload")
	fs.IntVar(&bc.clients, "clients", 32, "concurrent HTTP clients for W2, W3, W4")
	fs.IntVar(&bc.objects, "objects", 1000, "objects for W3 and W4")
	fs.IntVar(&bc.history, "history", 10000, "events of the object W5 activates cold")
	fs.StringVar(&bc.workloads, "workloads", "W1,W2,W3,W4,C1,M1,W5,W6", "workloads to run (W1-READ: W1's requests as reads, without an event; W6: WebSocket broadcast to a room of 1,000; `strata bench ws` measures memory per connection; JW1, JW2, JW3: W1–W3 on the JavaScript counter, each run right after its Go row; C1: a synchronous call between relays on one node against an HTTP call to the callee; M1: durable messages between --objects pairs of relays, against W3)")
	fs.BoolVar(&bc.json, "json", false, "print results as JSON lines")
	fs.IntVar(&bc.shards, "shards", 0, "shard count of the temporary server (0: the default)")
	fs.BoolVar(&bc.metrics, "metrics", true, "temporary server: count Prometheus metrics as serve does by default (false: no hooks, no /metrics); run both, alternated, to measure their cost")
	fs.Float64Var(&bc.traceRate, "trace-sample", 0, "temporary server: trace this share of requests (0..1) and export them over OTLP/HTTP to a local receiver that discards them; 0: tracing off")
	fs.IntVar(&bc.overhead, "overhead", 0, "temporary server: instead of the workloads, measure the cost of metrics and of tracing on W1 and W3, in this many rounds that alternate off, metrics on, and tracing at --overhead-sample (0: not run)")
	fs.Float64Var(&bc.overheadSample, "overhead-sample", 0.01, "with --overhead, the trace sampler's ratio (0..1)")
	fs.BoolVar(&bc.auth, "auth", false, "temporary server: W1–W4 alternate each client's requests between the gateway and a second one on the same node with auth on, sending a token (rows +auth, each with its half of the requests): the cost of auth")
	var ca clientAuth
	ca.register(fs)
	var prof benchProfile
	prof.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProf, err := prof.start(env.Stderr)
	if err != nil {
		return err
	}
	defer stopProf()
	if bc.auth && bc.url != "" {
		return &usageError{"--auth measures a temporary server; against --url, give the server's token with --token"}
	}
	if bc.duration <= 0 || bc.clients <= 0 || bc.objects <= 0 || bc.history <= 0 || bc.warmup < 0 {
		return &usageError{"--duration, --clients, --objects and --history must be positive"}
	}
	if bc.overhead < 0 || bc.overhead > 0 && bc.url != "" {
		return &usageError{"--overhead takes a positive round count and measures a temporary server (not --url)"}
	}
	if bc.overhead > 0 {
		return runOverhead(ctx, env, bc)
	}
	logger := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var (
		l         *log.Log
		baseURL   = strings.TrimRight(bc.url, "/")
		n         *node
		authBase  string // the gateway with auth on (--auth)
		authToken string
		token     string // sent to --url
	)
	if baseURL != "" {
		token = ca.bearer()
	}
	if baseURL == "" {
		dir, err := os.MkdirTemp("", "strata-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		lc := logConfig{dataDir: dir, fsync: "always", shards: bc.shards, logger: logger}
		var nodeP atomic.Pointer[node]
		if bc.metrics {
			lc.metrics = newMetrics(env.Classes, &nodeP, new(atomic.Pointer[gateway.Gateway]))
		}
		if bc.traceRate > 0 {
			tr, stop, err := discardingTracing(ctx, bc.traceRate)
			if err != nil {
				return err
			}
			defer stop()
			lc.tracer = tr.Tracer() // the projector traces too, as serve's does
		}
		// The runtime's default idle timeout, as `strata serve` has: W1–W4
		// measure warm objects (with a short one, W3's objects, each asked
		// about once a second under load, were evicted and loaded again
		// between requests). W5 evicts its object itself (evictForCold).
		n, err = openNode(ctx, lc, env.Classes, 0)
		if err != nil {
			return err
		}
		nodeP.Store(n)
		defer n.close(context.Background(), nil)
		gc := gateway.Config{Backend: n.rt, Logger: logger}
		if lc.metrics != nil {
			gc.Metrics, gc.Observe = lc.metrics.Handler(), lc.metrics.ObserveRequest
		}
		gc.Tracer = lc.tracer
		url, stop, err := serveBench(gc)
		if err != nil {
			return err
		}
		defer stop()
		baseURL, l = url, n.log
		fmt.Fprintf(env.Stderr, "bench: temporary server at %s, data in %s, fsync always, metrics %v, trace sample %v\n", baseURL, dir, bc.metrics, bc.traceRate)
		if bc.auth {
			tokens, err := n.log.OpenTokens(ctx)
			if err != nil {
				return err
			}
			defer tokens.Close()
			rec, secret, err := gateway.NewToken("bench", "strata bench", []string{gateway.ScopeCall}, "strata bench", time.Now())
			if err != nil {
				return err
			}
			if err := tokens.CreateToken(ctx, rec); err != nil {
				return err
			}
			url, stop, err := serveBench(gateway.Config{Backend: n.rt, Logger: logger, Tokens: tokens})
			if err != nil {
				return err
			}
			defer stop()
			authBase, authToken = url, secret
			fmt.Fprintf(env.Stderr, "bench: the same node with auth on at %s\n", authBase)
		}
	}

	b := &bencher{cfg: bc, base: baseURL, token: token, out: env.Stderr, cpu: l != nil, node: n, client: &http.Client{
		Transport: &http.Transport{MaxIdleConns: 4 * bc.clients, MaxIdleConnsPerHost: 4 * bc.clients},
		Timeout:   30 * time.Second,
	}}
	var limits rawLimits
	if l != nil {
		var err error
		if limits, err = measureRaw(ctx, l, bc, env.Stderr); err != nil {
			return err
		}
	}
	want := map[string]bool{}
	for _, w := range strings.Split(bc.workloads, ",") {
		want[strings.ToUpper(strings.TrimSpace(w))] = true
	}
	var results []benchResult
	add := func(r benchResult) {
		results = append(results, r)
		if bc.json {
			json.NewEncoder(env.Stdout).Encode(r)
		}
	}
	if limits.syncPerSec > 0 {
		add(benchResult{Workload: "raw-sync", What: "JetStream publish+ack, sequential, fsync", PerSecond: limits.syncPerSec, P50Millis: limits.syncP50, P99Millis: limits.syncP99})
		add(benchResult{Workload: "raw-batch", What: "JetStream atomic batches of 100, fsync", PerSecond: limits.batchPerSec})
		add(benchResult{Workload: "raw-async", What: "JetStream async publish, 1000 subjects, fsync", PerSecond: limits.asyncPerSec})
		add(limits.conc)
	}
	ratio := func(r *benchResult, name string, perSec float64) {
		if perSec > 0 {
			r.Limit, r.LimitPerSec, r.Ratio = name, perSec, r.PerSecond/perSec
		}
	}
	// The floors of W1, W2 and W3 in the same run: their requests
	// answered by net/http alone, then around the raw publish (httpFloor;
	// W2's, one publish per group: groupFloor). W1's p50 can come no
	// nearer raw-sync's than raw-http-sync's does.
	floors := map[string]benchResult{}
	if limits.syncPerSec > 0 && (want["W1"] || want["W1-READ"] || want["W2"] || want["W3"]) {
		raw, err := l.Raw(ctx)
		if err != nil {
			return err
		}
		defer raw.Close(context.Background())
		// One floor for the publishing rows: they share the subjects'
		// expectations.
		publishing := &httpFloor{raw: raw, msg: make([]byte, 160), last: map[string]uint64{}}
		group := newGroupFloor(ctx, publishing)
		defer group.stop()
		for _, f := range []struct {
			name, what string
			clients    int
			floor      http.Handler
			req        func(int, *rand.Rand, benchVariant) (string, string)
		}{
			{"raw-http", "net/http round trip, no publish, 1 client", 1, &httpFloor{}, floorRequest(1, 1)},
			{"raw-http-sync", "raw-sync's publish+ack over HTTP, 1 client", 1, publishing, floorRequest(1, 1)},
			{"raw-http-group", fmt.Sprintf("a publish+ack per group over HTTP, %d clients", bc.clients), bc.clients, group, floorRequest(1, 1)},
			{"raw-http-conc", fmt.Sprintf("raw-conc's publish+ack over HTTP, %d clients", bc.clients), bc.clients, publishing, floorRequest(bc.clients, bc.objects)},
		} {
			url, stop, err := serveLoopback(f.floor)
			if err != nil {
				return err
			}
			for _, r := range b.loadVariants(ctx, f.name, f.what, f.clients, []benchVariant{{base: url}}, f.req) {
				switch f.name {
				case "raw-http-sync":
					r.P50Ratio = r.P50Millis / limits.syncP50
					fallthrough
				case "raw-http-group":
					ratio(&r, "raw-sync", limits.syncPerSec)
				case "raw-http-conc":
					ratio(&r, "raw-conc", limits.conc.PerSecond)
				}
				floors[f.name] = r
				add(r)
			}
			stop()
		}
	}
	// floor names row f as r's floor (only raw-http-sync has a p50
	// ratio).
	floor := func(r *benchResult, f string) {
		if fr, ok := floors[f]; ok {
			r.Floor, r.FloorRatio, r.P50FloorRatio = f, fr.Ratio, fr.P50Ratio
		}
	}
	run := fmt.Sprint(time.Now().UnixNano())
	// With --auth, W1–W4 go through two gateways of the same node at once,
	// one without auth and one with auth on and a token (rows +auth, with
	// objects of their own): each client alternates its requests between
	// them (loadVariants).
	variants := []benchVariant{{}}
	if authBase != "" {
		variants = []benchVariant{{base: baseURL}, {suffix: "+auth", tag: "-auth", base: authBase, token: authToken}}
	}
	each := func(w, what string, clients int, next func(c int, rng *rand.Rand, v benchVariant) (string, string), fill func(*benchResult)) {
		if !want[w] {
			return
		}
		for _, r := range b.loadVariants(ctx, w, what, clients, variants, next) {
			fill(&r)
			add(r)
		}
	}
	// eachSpread is each for a workload that spreads its requests
	// uniformly over --objects objects (req names object i): every
	// object gets one request first, outside the measured window and the
	// warmup (firstTouch), so the row measures live objects; the first
	// requests' rate is the row's first_touch_per_second.
	spreadRows := func(w, what string, req func(i int, v benchVariant) (string, string), fill func(*benchResult)) {
		touch := b.firstTouch(ctx, w, bc.clients, bc.objects, variants, req)
		for _, r := range b.loadVariants(ctx, w, what, bc.clients, variants, func(_ int, rng *rand.Rand, v benchVariant) (string, string) {
			return req(rng.IntN(bc.objects), v)
		}) {
			r.FirstTouchPerSecond = touch
			fill(&r)
			add(r)
		}
	}
	eachSpread := func(w, what string, req func(i int, v benchVariant) (string, string), fill func(*benchResult)) {
		if want[w] {
			spreadRows(w, what, req, fill)
		}
	}
	// The SQL counter (classes.SQLCounter: an upsert with RETURNING) runs
	// right after the key-value counter of the same workload, in the same
	// run, as row W<n>-sql (issue 17 compares the two). path names object
	// i (of --objects when spread, else 0) with "{tag}" for the variant's.
	eachSQL := func(w, what string, clients int, spread bool, path func(i int) string) {
		if !want[w] || !hasClass(env.Classes, "sql-counter") {
			return
		}
		req := func(i int, v benchVariant) (string, string) {
			return strings.Replace(path(i), "{tag}", v.tag, 1), `{"by":1}`
		}
		if spread {
			spreadRows(w+"-sql", what, req, func(*benchResult) {})
			return
		}
		for _, r := range b.loadVariants(ctx, w+"-sql", what, clients, variants, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
			return req(0, v)
		}) {
			add(r)
		}
	}
	each("W1", "1 counter, 1 client, sequential increments", 1, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
		return "/v1/objects/counter/w1-" + run + v.tag + "/rpc/increment", `{"by":1}`
	}, func(r *benchResult) {
		ratio(r, "raw-sync", limits.syncPerSec)
		if limits.syncP50 > 0 {
			r.P50Ratio = r.P50Millis / limits.syncP50
		}
		floor(r, "raw-http-sync")
	})
	// W1-read is W1's path without its event: a read of the same counter
	// (no write, so no append). W1's p50 beside W1-read's and raw-sync's
	// says how much of W1 is the request's path and how much the log.
	each("W1-READ", "W1's counter, 1 client, sequential reads", 1, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
		return "/v1/objects/counter/w1-" + run + v.tag + "/rpc/get", `{}`
	}, func(r *benchResult) {
		ratio(r, "raw-sync", limits.syncPerSec)
		if limits.syncP50 > 0 {
			r.P50Ratio = r.P50Millis / limits.syncP50
		}
	})
	if want["JW1"] || want["JW2"] || want["JW3"] {
		if n == nil {
			fmt.Fprintf(env.Stderr, "bench: JW workloads call the deployed class %q\n", jsBenchClass)
		} else if err := deployBenchJS(ctx, n); err != nil {
			return err
		}
	}
	jsPath := func(w string, i int) string {
		return fmt.Sprintf("/v1/objects/%s/%s-%s-%d/rpc/increment", jsBenchClass, w, run, i)
	}
	each("JW1", "1 JavaScript counter, 1 client, sequential increments", 1, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
		return jsPath("jw1"+v.tag, 0), `[1]`
	}, func(r *benchResult) { ratio(r, "raw-sync", limits.syncPerSec) })
	each("W2", fmt.Sprintf("1 counter, %d clients", bc.clients), bc.clients, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
		return "/v1/objects/counter/w2-" + run + v.tag + "/rpc/increment", `{"by":1}`
	}, func(r *benchResult) {
		ratio(r, "raw-sync", limits.syncPerSec)
		floor(r, "raw-http-group")
	})
	each("JW2", fmt.Sprintf("1 JavaScript counter, %d clients", bc.clients), bc.clients, func(_ int, _ *rand.Rand, v benchVariant) (string, string) {
		return jsPath("jw2"+v.tag, 0), `[1]`
	}, func(r *benchResult) { ratio(r, "raw-sync", limits.syncPerSec) })
	eachSQL("W1", "1 SQL counter, 1 client, sequential upserts", 1, false, func(int) string {
		return "/v1/objects/sql-counter/w1-" + run + "{tag}/rpc/increment"
	})
	eachSQL("W2", fmt.Sprintf("1 SQL counter, %d clients", bc.clients), bc.clients, false, func(int) string {
		return "/v1/objects/sql-counter/w2-" + run + "{tag}/rpc/increment"
	})
	objPath := func(tag string, i int, method string) string {
		return fmt.Sprintf("/v1/objects/counter/w3-%s%s-%d/rpc/%s", run, tag, i, method)
	}
	eachSpread("W3", fmt.Sprintf("%d counters, %d clients, uniform", bc.objects, bc.clients), func(i int, v benchVariant) (string, string) {
		return objPath(v.tag, i, "increment"), `{"by":1}`
	}, func(r *benchResult) {
		ratio(r, "raw-sync", limits.syncPerSec)
		if limits.conc.PerSecond > 0 {
			r.ConcRatio = r.PerSecond / limits.conc.PerSecond
		}
		floor(r, "raw-http-conc")
	})
	eachSpread("JW3", fmt.Sprintf("%d JavaScript counters, %d clients, uniform", bc.objects, bc.clients), func(i int, v benchVariant) (string, string) {
		return jsPath("jw3"+v.tag, i), `[1]`
	}, func(r *benchResult) {
		ratio(r, "raw-sync", limits.syncPerSec)
		if limits.conc.PerSecond > 0 {
			r.ConcRatio = r.PerSecond / limits.conc.PerSecond
		}
	})
	eachSQL("W3", fmt.Sprintf("%d SQL counters, %d clients, uniform", bc.objects, bc.clients), bc.clients, true, func(i int) string {
		return fmt.Sprintf("/v1/objects/sql-counter/w3-%s{tag}-%d/rpc/increment", run, i)
	})
	each("W4", fmt.Sprintf("%d counters, %d clients, reads only", bc.objects, bc.clients), bc.clients, func(_ int, rng *rand.Rand, v benchVariant) (string, string) {
		return objPath(v.tag, rng.IntN(bc.objects), "get"), ``
	}, func(r *benchResult) { ratio(r, "raw-sync", limits.syncPerSec) })
	// Calls between objects (benchcalls.go).
	if want["C1"] {
		for _, r := range b.callPairRows(ctx, "C1", "1 client, HTTP hop to a relay", "1 client, hop calling a relay, same node",
			relayNames("c1a-"+run, callPairs), relayNames("c1b-"+run, callPairs)) {
			add(r)
		}
	}
	if want["M1"] {
		r, err := b.messagesBetweenPairs(ctx, "M1", fmt.Sprintf("messages between %d pairs, %d clients", bc.objects, bc.clients), bc.clients,
			relayNames("m1a-"+run, bc.objects), relayNames("m1b-"+run, bc.objects))
		if err != nil {
			return err
		}
		for _, w3 := range results {
			if w3.Workload == "W3" {
				ratio(&r, "W3", w3.PerSecond)
			}
		}
		add(r)
	}
	if want["W5"] {
		r, err := b.cold(ctx, run)
		if err != nil {
			return err
		}
		add(r)
	}
	if want["W6"] {
		r, err := b.fanOut(ctx, run)
		if err != nil {
			return err
		}
		add(r)
	}
	if !bc.json {
		printTable(env.Stdout, results)
	}
	return nil
}

// benchVariant is one gateway a load goes through: its rows' suffix, its
// objects' name tag, its URL and the token it sends.
type benchVariant struct {
	suffix, tag string
	base, token string
}

type bencher struct {
	cfg    benchConfig
	base   string
	token  string // bearer token sent with every request, "" for none
	out    io.Writer
	client *http.Client
	// bases, if set, spreads load clients over several gateways (client c
	// uses bases[c%len(bases)]) instead of base.
	bases []string
	// cpu: the server runs in this process, so its CPU time per request
	// is measured (benchResult.CPUMicros).
	cpu bool
	// node is the temporary server, nil with --url.
	node *node
}

// conn is load client c's connection to variant v's gateway: its own,
// or the bencher's (client c on gateway c mod len(bases) when several).
func (b *bencher) conn(c int, v benchVariant) (*benchConn, error) {
	base, token := v.base, v.token
	if base == "" {
		base, token = b.base, b.token
		if len(b.bases) > 0 {
			base = b.bases[c%len(b.bases)]
		}
	}
	return newBenchConn(base, token)
}

// firstTouch sends one request to each of n objects (req names object
// i), clients at a time, over the variants in turn, and returns their
// rate. A workload spread over many objects runs it first, so that its
// warmup and measured window see live objects, as a running service's
// would, instead of counting some objects' first activation in the
// window and not others'.
func (b *bencher) firstTouch(ctx context.Context, name string, clients, n int, vs []benchVariant, req func(i int, v benchVariant) (string, string)) float64 {
	start := time.Now()
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	out := &lockedWriter{w: b.out}
	fmt.Fprintf(out, "%s: first touch of %d objects\r", name, n)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := map[int]*benchConn{}
			defer func() {
				for _, conn := range conns {
					conn.close()
				}
			}()
			for ctx.Err() == nil {
				k := int(next.Add(1)) - 1
				if k >= n*len(vs) {
					return
				}
				vi := k % len(vs)
				v := vs[vi]
				conn := conns[vi]
				if conn == nil {
					var err error
					if conn, err = b.conn(c, v); err != nil {
						errs.Add(1)
						return
					}
					conns[vi] = conn
				}
				path, body := req(k/len(vs), v)
				status, data, err := conn.post(ctx, path, body)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("%s: %d %s", path, status, data)
				}
				if err != nil && errs.Add(1) == 1 {
					fmt.Fprintf(out, "\n%s: first touch: first error: %v\n", name, err)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n*len(vs)) / time.Since(start).Seconds()
}

// load runs clients closed-loop for warmup + duration and measures the
// requests that started after the warmup.
func (b *bencher) load(ctx context.Context, name, what string, clients int, next func(client int, rng *rand.Rand) (string, string)) benchResult {
	return b.loadVariants(ctx, name, what, clients, []benchVariant{{}}, func(c int, rng *rand.Rand, _ benchVariant) (string, string) {
		return next(c, rng)
	})[0]
}

// loadVariants is load over several gateways at once: each client sends
// its requests to the variants in turn (client c's k-th request goes to
// variant (c+k) mod len(vs)), so every variant runs on the same machine
// at the same moments and a difference between them is theirs, not the
// machine's. One result per variant, its name suffixed with the
// variant's; a variant without a base uses the bencher's gateways.
func (b *bencher) loadVariants(ctx context.Context, name, what string, clients int, vs []benchVariant, next func(client int, rng *rand.Rand, v benchVariant) (string, string)) []benchResult {
	start := time.Now()
	measureFrom := start.Add(b.cfg.warmup)
	end := measureFrom.Add(b.cfg.duration)
	lat := make([][][]time.Duration, len(vs)) // [variant][client]
	for i := range lat {
		lat[i] = make([][]time.Duration, clients)
	}
	errs := make([]atomic.Int64, len(vs))
	var done atomic.Int64
	out := &lockedWriter{w: b.out}
	var wg sync.WaitGroup
	cpuFrom := make(chan cpuMeter, 1)
	cpuTimer := time.AfterFunc(time.Until(measureFrom), func() { cpuFrom <- startCPU() })
	defer cpuTimer.Stop()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			conns := make([]*benchConn, len(vs))
			for i, v := range vs {
				conn, err := b.conn(c, v)
				if err != nil {
					errs[i].Add(1)
					return
				}
				defer conn.close()
				conns[i] = conn
			}
			for k := c; ctx.Err() == nil; k++ {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				i := k % len(vs)
				path, body := next(c, rng, vs[i])
				status, data, err := conns[i].post(ctx, path, body)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("%s: %d %s", path, status, data)
				}
				if err != nil && errs[i].Load() == 0 {
					fmt.Fprintf(out, "\n%s%s: first error: %v\n", name, vs[i].suffix, err)
				}
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					errs[i].Add(1)
					continue
				}
				lat[i][c] = append(lat[i][c], time.Since(t0))
				done.Add(1)
			}
		}()
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		progress(out, name, start, end, &done, stop)
	}()
	wg.Wait()
	var cpu float64 // µs per request, over every variant's requests
	select {
	case m := <-cpuFrom:
		if b.cpu {
			cpu = m.perRequest(int(done.Load()))
		}
	default: // stopped before the measured window
	}
	close(stop)
	<-stopped
	res := make([]benchResult, len(vs))
	for i, v := range vs {
		var all []time.Duration
		for _, l := range lat[i] {
			all = append(all, l...)
		}
		res[i] = summarize(name+v.suffix, what, all, int(errs[i].Load()), b.cfg.duration)
		res[i].CPUMicros = cpu
	}
	return res
}

// lockedWriter serializes the writes of a workload's clients and its
// progress line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func progress(w io.Writer, name string, start, end time.Time, done *atomic.Int64, stop chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(w, "\r%-60s\r", "")
			return
		case now := <-t.C:
			left := max(end.Sub(now), 0).Round(time.Second)
			fmt.Fprintf(w, "\r%s: %d requests measured, %s left   ", name, done.Load(), left)
		}
	}
}

func summarize(name, what string, lat []time.Duration, errs int, over time.Duration) benchResult {
	slices.Sort(lat)
	r := benchResult{Workload: name, What: what, Requests: len(lat), Errors: errs, PerSecond: float64(len(lat)) / over.Seconds()}
	if len(lat) > 0 {
		r.P50Millis = float64(lat[len(lat)/2]) / 1e6
		r.P99Millis = float64(lat[len(lat)*99/100]) / 1e6
	}
	return r
}

func (b *bencher) post(ctx context.Context, path, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// cold builds an object with cfg.history events, waits until it is
// evicted, and times the first request: activation from the snapshot.
func (b *bencher) cold(ctx context.Context, run string) (benchResult, error) {
	path := "/v1/objects/counter/w5-" + run + "/rpc/"
	start := time.Now()
	for i := 0; i < b.cfg.history; i++ {
		if err := b.post(ctx, path+"increment", `{"by":1}`, nil); err != nil {
			return benchResult{}, err
		}
		if i%500 == 0 {
			fmt.Fprintf(b.out, "\rW5: writing history %d/%d   ", i, b.cfg.history)
		}
	}
	fmt.Fprintf(b.out, "\rW5: %d events written in %s; evicting\n", b.cfg.history, time.Since(start).Round(time.Millisecond))
	if err := b.evictForCold(ctx, "w5-"+run); err != nil {
		return benchResult{}, err
	}
	var out struct{ Value int }
	t0 := time.Now()
	if err := b.post(ctx, path+"get", ``, &out); err != nil {
		return benchResult{}, err
	}
	d := time.Since(t0)
	if out.Value != b.cfg.history {
		return benchResult{}, fmt.Errorf("W5: cold object reads %d, want %d", out.Value, b.cfg.history)
	}
	return benchResult{Workload: "W5", What: fmt.Sprintf("cold activation, %d events", b.cfg.history), Requests: 1, PerSecond: 1 / d.Seconds(), P50Millis: float64(d) / 1e6, P99Millis: float64(d) / 1e6}, nil
}

type rawLimits struct {
	syncPerSec, syncP50, syncP99 float64
	batchPerSec, asyncPerSec     float64
	conc                         benchResult // W3's shape
}

// measureRaw measures JetStream alone on the bench server, with the same
// stream settings and fsync mode, publishing event-sized messages.
func measureRaw(ctx context.Context, l *log.Log, bc benchConfig, w io.Writer) (rawLimits, error) {
	raw, err := l.Raw(ctx)
	if err != nil {
		return rawLimits{}, err
	}
	defer raw.Close(context.Background())
	msg := make([]byte, 160) // about a counter turn's event
	lim, err := rawSync(ctx, raw, msg, bc.duration, w)
	if err != nil {
		return lim, err
	}

	fmt.Fprintf(w, "raw: atomic batches for %s    \r", bc.duration/2)
	subjs, data := make([]string, 100), make([][]byte, 100)
	for i := range subjs {
		subjs[i], data[i] = log.RawSubject(1000+i), msg
	}
	n, t0 := 0, time.Now()
	for time.Since(t0) < bc.duration/2 {
		if _, err := raw.PublishBatch(ctx, subjs, data, nil); err != nil {
			return lim, fmt.Errorf("raw batch: %w", err)
		}
		n += len(subjs)
	}
	lim.batchPerSec = float64(n) / time.Since(t0).Seconds()

	fmt.Fprintf(w, "raw: async publish             \r")
	// About duration's worth at this machine's rate, so a short run stays
	// short.
	asyncN := min(max(int(bc.duration.Seconds()*2000), 500), 20000)
	subjs, data = make([]string, asyncN), make([][]byte, asyncN)
	for i := range subjs {
		subjs[i], data[i] = log.RawSubject(i%1000), msg
	}
	t0 = time.Now()
	if err := raw.PublishAsync(ctx, subjs, data, 256); err != nil {
		return lim, fmt.Errorf("raw async: %w", err)
	}
	lim.asyncPerSec = float64(asyncN) / time.Since(t0).Seconds()

	fmt.Fprintf(w, "raw: concurrent publish for %s\r", bc.duration/2)
	if lim.conc, err = rawConcurrent(ctx, raw, msg, bc.clients, bc.objects, bc.duration/2); err != nil {
		return lim, err
	}
	fmt.Fprintf(w, "%-40s\r", "")
	return lim, nil
}

// rawConcObjects numbers raw-conc's subjects past the other raw rows'.
const rawConcObjects = 1_000_000

// rawConcurrent is JetStream's rate in W3's shape: clients publishers,
// each publishing and waiting for its ack in turn, over objects subjects
// spread across one raw stream per shard, each publish with an
// expectation and a message id like an append. Publisher c takes the
// objects i with i % clients == c in turn, so no two race on a subject.
func rawConcurrent(ctx context.Context, raw *log.Raw, msg []byte, clients, objects int, d time.Duration) (benchResult, error) {
	clients = max(1, min(clients, objects))
	lats := make([][]time.Duration, clients)
	errs := make([]error, clients)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			last := map[int]uint64{}
			for i := c; time.Now().Before(end); i += clients {
				if i >= objects {
					i = c
				}
				t0 := time.Now()
				seq, err := raw.PublishSync(ctx, log.RawStreamSubject(i%raw.Streams(), rawConcObjects+i), msg, last[i])
				if err != nil {
					errs[c] = fmt.Errorf("raw concurrent publish: %w", err)
					return
				}
				lats[c] = append(lats[c], time.Since(t0))
				last[i] = seq
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return benchResult{}, err
	}
	what := fmt.Sprintf("%d publishers, %d subjects, %d streams, fsync", clients, objects, raw.Streams())
	return summarize("raw-conc", what, slices.Concat(lats...), 0, d), nil
}

func printTable(w io.Writer, rs []benchResult) {
	fmt.Fprintf(w, "%-14s %-46s %10s %8s %8s %7s %7s  %s\n", "workload", "what", "req/s", "p50 ms", "p99 ms", "errors", "cpu us", "vs limit")
	for _, r := range rs {
		vs := ""
		if r.Limit != "" {
			vs = fmt.Sprintf("%.2f× %s", r.Ratio, r.Limit)
		}
		if r.Floor != "" && r.ConcRatio == 0 {
			vs += fmt.Sprintf(" (%s %.2f×)", r.Floor, r.FloorRatio)
		}
		if r.P50Ratio > 0 {
			vs += fmt.Sprintf(", p50 %.2f× its p50", r.P50Ratio)
		}
		if r.P50FloorRatio > 0 {
			vs += fmt.Sprintf(" (%s %.2f×)", r.Floor, r.P50FloorRatio)
		}
		if r.ConcRatio > 0 {
			vs += fmt.Sprintf(", %.2f× raw-conc", r.ConcRatio)
			if r.Floor != "" {
				vs += fmt.Sprintf(" (%s %.2f×)", r.Floor, r.FloorRatio)
			}
		}
		if r.FirstTouchPerSecond > 0 {
			vs += fmt.Sprintf("; first touch %.0f/s", r.FirstTouchPerSecond)
		}
		vs = strings.TrimPrefix(vs, "; ")
		fmt.Fprintf(w, "%-14s %-46s %10.0f %8.3f %8.3f %7d %7s  %s\n", r.Workload, r.What, r.PerSecond, r.P50Millis, r.P99Millis, r.Errors, formatCPU(r.CPUMicros), vs)
	}
}

// measureRawSync measures only JetStream's sequential fsynced publish on l.
func measureRawSync(ctx context.Context, l *log.Log, bc benchConfig, w io.Writer) (rawLimits, error) {
	raw, err := l.Raw(ctx)
	if err != nil {
		return rawLimits{}, err
	}
	defer raw.Close(context.Background())
	return rawSync(ctx, raw, make([]byte, 160), bc.duration, w)
}

// rawSync publishes msg sequentially, each waiting for its ack, for d.
func rawSync(ctx context.Context, raw *log.Raw, msg []byte, d time.Duration, w io.Writer) (rawLimits, error) {
	var lim rawLimits
	fmt.Fprintf(w, "raw: sequential publish for %s\r", d)
	var lat []time.Duration
	var expect uint64
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		seq, err := raw.PublishSync(ctx, log.RawSubject(0), msg, expect)
		if err != nil {
			return lim, fmt.Errorf("raw publish: %w", err)
		}
		lat = append(lat, time.Since(t0))
		expect = seq
	}
	r := summarize("raw-sync", "", lat, 0, d)
	lim.syncPerSec, lim.syncP50, lim.syncP99 = r.PerSecond, r.P50Millis, r.P99Millis
	return lim, nil
}

// serveBench serves a temporary gateway on a loopback port.
func serveBench(cfg gateway.Config) (url string, stop func(), err error) {
	gw, err := gateway.New(cfg)
	if err != nil {
		return "", nil, err
	}
	return serveLoopback(gw)
}

// serveLoopback serves h on a loopback port until stop.
func serveLoopback(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// httpFloor answers every request as a gateway answers a counter's
// increment, and does nothing of Strata's: it reads the body (bounded, as
// the gateway does), publishes one raw message and waits for its ack if
// it has raw streams (the publish raw-sync and raw-conc time, on the
// subject the path's object name numbers), and writes a small JSON value.
// The raw-http rows send W1's and W3's requests to it on the bench's own
// client: what HTTP and JetStream cost a row before a turn runs.
type httpFloor struct {
	raw *log.Raw // nil: no publish
	msg []byte
	mu  sync.Mutex
	// last is each subject's last sequence, the next publish's
	// expectation. A subject is only ever one client's (floorRequest).
	last map[string]uint64
}

func (f *httpFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !floorRead(w, r) {
		return
	}
	if f.raw != nil {
		i, err := strconv.Atoi(path.Base(path.Dir(path.Dir(r.URL.Path))))
		if err != nil || i < 0 {
			http.Error(w, "bad object number", http.StatusBadRequest)
			return
		}
		if err := f.publish(r.Context(), f.subject(i)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	floorAnswer(w)
}

// subject is object i's subject, past raw-conc's.
func (f *httpFloor) subject(i int) string {
	return log.RawStreamSubject(i%f.raw.Streams(), rawHTTPObjects+i)
}

// publish publishes f.msg to subj and waits for its ack, expecting the
// subject's last sequence, and keeps the new one.
func (f *httpFloor) publish(ctx context.Context, subj string) error {
	f.mu.Lock()
	expect := f.last[subj]
	f.mu.Unlock()
	seq, err := f.raw.PublishSync(ctx, subj, f.msg, expect)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.last[subj] = seq
	f.mu.Unlock()
	return nil
}

// floorRead reads r's body, bounded as the gateway bounds it, and
// answers 413 if it is too large.
func floorRead(w http.ResponseWriter, r *http.Request) bool {
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return false
	}
	return true
}

// floorAnswer writes a counter's answer.
func floorAnswer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"value":1}`+"\n")
}

// rawHTTPObjects numbers the raw-http rows' subjects past raw-conc's.
const rawHTTPObjects = 2 * rawConcObjects

// floorRequest is W1's request (one client, one object) or W3's (over
// objects) for httpFloor, naming object i by number: client c takes only
// the objects i with i % clients == c, so no two requests in flight share
// a subject.
func floorRequest(clients, objects int) func(int, *rand.Rand, benchVariant) (string, string) {
	per := max(1, objects/clients)
	return func(c int, rng *rand.Rand, _ benchVariant) (string, string) {
		i := c + clients*rng.IntN(per)
		return "/v1/objects/counter/" + strconv.Itoa(i) + "/rpc/increment", `{"by":1}`
	}
}

// groupFloor is httpFloor's group commit, W2's floor: the requests that
// arrive while a publish is out wait for the next one, which answers them
// all, as one object's turns share an event. Every request goes to the
// same subject, object 0's.
type groupFloor struct {
	f    *httpFloor
	in   chan chan error
	done chan struct{} // closed when the publisher has stopped
	stop func()
}

func newGroupFloor(ctx context.Context, f *httpFloor) *groupFloor {
	ctx, cancel := context.WithCancel(ctx)
	g := &groupFloor{f: f, in: make(chan chan error, 1024), done: make(chan struct{})}
	g.stop = func() { cancel(); <-g.done }
	go g.publish(ctx)
	return g
}

// publish answers each group with one publish, until ctx ends.
func (g *groupFloor) publish(ctx context.Context) {
	defer close(g.done)
	subj := g.f.subject(0)
	var group []chan error
	for {
		select {
		case w := <-g.in:
			group = append(group[:0], w)
		case <-ctx.Done():
			return
		}
	fill:
		for {
			select {
			case w := <-g.in:
				group = append(group, w)
			default:
				break fill
			}
		}
		err := g.f.publish(ctx, subj)
		for _, w := range group {
			w <- err
		}
	}
}

func (g *groupFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !floorRead(w, r) {
		return
	}
	done := make(chan error, 1)
	select {
	case g.in <- done:
	case <-r.Context().Done():
		return
	}
	select {
	case err := <-done:
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	case <-r.Context().Done():
		return
	}
	floorAnswer(w)
}

// hasClass reports whether the server under test has class name.
func hasClass(classes []*objects.Class, name string) bool {
	for _, c := range classes {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// discardingTracing starts tracing at ratio, exporting over OTLP/HTTP to a
// local receiver that discards what it gets: the bench counts the
// exporter's cost, not a collector's. stop ends both.
func discardingTracing(ctx context.Context, ratio float64) (tr *tracing.Tracing, stop func(), err error) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	discard := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })}
	go discard.Serve(sink)
	if tr, err = tracing.Start(ctx, tracing.Config{Endpoint: "http://" + sink.Addr().String(), SampleRatio: ratio}); err != nil {
		discard.Close()
		return nil, nil, &usageError{err.Error()}
	}
	return tr, func() { tr.Close(context.Background()); discard.Close() }, nil
}
