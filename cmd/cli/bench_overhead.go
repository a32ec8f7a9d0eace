package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/objects"
)

// The cost of metrics and tracing (strata bench --overhead N): one
// temporary node, three gateways over it, and W1 and W3 run in phases that
// alternate N times between
//
//	off       no metrics (hooks gated off), no tracing
//	metrics   metrics counted as serve does (hooks on, the gateway observes)
//	trace     tracing on at --overhead-sample (1 % by default), exported over
//	          OTLP/HTTP to a local receiver that discards it; metrics off
//
// The order of the three rotates each round, so a machine that slows down
// or speeds up during the run does not favour one. Each phase runs
// --duration after --warmup. The summary gives each setting's median
// requests/s, its cost against off's median, and the spread of off's own
// rounds: a cost smaller than that spread is noise.

type overheadPhase struct {
	name    string
	base    string
	metrics bool // the node's metrics hooks count during the phase
}

func runOverhead(ctx context.Context, env *Env, bc benchConfig) error {
	dir, err := os.MkdirTemp("", "strata-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var metricsOn atomic.Bool
	lc := logConfig{dataDir: dir, fsync: "always", shards: bc.shards, logger: logger, metricsGate: &metricsOn}
	var nodeP atomic.Pointer[node]
	lc.metrics = newMetrics(env.Classes, &nodeP, new(atomic.Pointer[gateway.Gateway]))

	tr, stopTracing, err := discardingTracing(ctx, bc.overheadSample)
	if err != nil {
		return err
	}
	defer stopTracing()
	lc.tracer = tr.Tracer() // the projector's; only sampled events make spans

	n, err := openNode(ctx, lc, env.Classes, 0)
	if err != nil {
		return err
	}
	nodeP.Store(n)
	defer n.close(context.Background(), nil)

	var phases []overheadPhase
	for _, p := range []struct {
		name    string
		cfg     gateway.Config
		metrics bool
	}{
		{"off", gateway.Config{Backend: n.rt, Logger: logger}, false},
		{"metrics", gateway.Config{Backend: n.rt, Logger: logger, Metrics: lc.metrics.Handler(), Observe: lc.metrics.ObserveRequest}, true},
		{"trace", gateway.Config{Backend: n.rt, Logger: logger, Tracer: tr.Tracer()}, false},
	} {
		url, stop, err := serveBench(p.cfg)
		if err != nil {
			return err
		}
		defer stop()
		phases = append(phases, overheadPhase{p.name, url, p.metrics})
	}
	fmt.Fprintf(env.Stderr, "bench: overhead of metrics and tracing (sample %v), %d rounds, temporary server in %s, fsync always\n", bc.overheadSample, bc.overhead, dir)

	b := &bencher{cfg: bc, out: env.Stderr, cpu: true, node: n, client: &http.Client{
		Transport: &http.Transport{MaxIdleConns: 4 * bc.clients, MaxIdleConnsPerHost: 4 * bc.clients},
		Timeout:   30 * time.Second,
	}}
	// The raw JetStream limits of this node, in the same run: what the
	// rows' rates compare against.
	limits, err := measureRaw(ctx, n.log, bc, env.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "raw-sync %.0f/s (p50 %.3f ms), raw-conc %.0f/s: JetStream's own limits on this node in this run\n",
		limits.syncPerSec, limits.syncP50, limits.conc.PerSecond)
	run := fmt.Sprint(time.Now().UnixNano())
	workloads := []struct {
		name, what string
		clients    int
		path       func(rng *rand.Rand) string
	}{
		{"W1", "1 counter, 1 client, sequential increments", 1, func(*rand.Rand) string { return "/v1/objects/counter/ow1-" + run + "/rpc/increment" }},
		{"W3", fmt.Sprintf("%d counters, %d clients, uniform", bc.objects, bc.clients), bc.clients, func(rng *rand.Rand) string {
			return fmt.Sprintf("/v1/objects/counter/ow3-%s-%d/rpc/increment", run, rng.IntN(bc.objects))
		}},
	}
	var results []benchResult
	for _, w := range workloads {
		rows := map[string][]benchResult{}
		for round := 0; round < bc.overhead; round++ {
			for i := range phases {
				p := phases[(i+round)%len(phases)]
				metricsOn.Store(p.metrics)
				r := b.loadVariants(ctx, fmt.Sprintf("%s-%s-r%d", w.name, p.name, round+1), w.what, w.clients,
					[]benchVariant{{base: p.base}}, func(_ int, rng *rand.Rand, _ benchVariant) (string, string) {
						return w.path(rng), `{"by":1}`
					})[0]
				rows[p.name] = append(rows[p.name], r)
				results = append(results, r)
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		printOverhead(env.Stdout, w.name, rows)
	}
	metricsOn.Store(true)
	if !bc.json {
		printTable(env.Stdout, results)
	}
	return nil
}

// printOverhead prints a workload's summary: each setting's medians of
// requests/s, p50 and CPU per request, their costs against off's, and the
// spread of off's own rounds.
func printOverhead(w io.Writer, name string, rows map[string][]benchResult) {
	col := func(k string, f func(benchResult) float64) []float64 {
		var xs []float64
		for _, r := range rows[k] {
			xs = append(xs, f(r))
		}
		return xs
	}
	rate := func(r benchResult) float64 { return r.PerSecond }
	p50 := func(r benchResult) float64 { return r.P50Millis }
	cpu := func(r benchResult) float64 { return r.CPUMicros }
	offRate, offP50, offCPU := median(col("off", rate)), median(col("off", p50)), median(col("off", cpu))
	spread := func(xs []float64) float64 { return 100 * (slices.Max(xs) - slices.Min(xs)) / median(xs) }
	fmt.Fprintf(w, "%s off      median %7.1f req/s, p50 %.3f ms, cpu %4.0f µs/req  (req/s by round %s; spread of off's rounds: req/s %.0f%%, p50 %.0f%%, cpu %.0f%%)\n",
		name, offRate, offP50, offCPU, fmtRates(col("off", rate)), spread(col("off", rate)), spread(col("off", p50)), spread(col("off", cpu)))
	for _, k := range []string{"metrics", "trace"} {
		r, p, c := median(col(k, rate)), median(col(k, p50)), median(col(k, cpu))
		fmt.Fprintf(w, "%s %-8s median %7.1f req/s, p50 %.3f ms, cpu %4.0f µs/req  (req/s by round %s; cost: req/s %+.1f%%, p50 %+.1f%%, cpu %+.1f%%)\n",
			name, k, r, p, c, fmtRates(col(k, rate)), 100*(offRate-r)/offRate, 100*(p-offP50)/offP50, 100*(c-offCPU)/offCPU)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRates(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.0f", x)
	}
	return s
}

// gateHooks makes the metrics hooks count only while on holds (the
// overhead bench turns them off and on between phases).
func gateHooks(h objects.Hooks, on *atomic.Bool) objects.Hooks {
	if on == nil {
		return h
	}
	activated, evicted, fenced, turn := h.Activated, h.Evicted, h.Fenced, h.Turn
	h.Activated = func(c string, id objects.ID) {
		if on.Load() {
			activated(c, id)
		}
	}
	h.Evicted = func(c string, id objects.ID) {
		if on.Load() {
			evicted(c, id)
		}
	}
	h.Fenced = func(c string, id objects.ID) {
		if on.Load() {
			fenced(c, id)
		}
	}
	h.Turn = func(c string, took time.Duration, failed bool) {
		if on.Load() {
			turn(c, took, failed)
		}
	}
	return h
}
