package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/tracing"
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

	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	discard := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })}
	go discard.Serve(sink)
	defer discard.Close()
	tr, err := tracing.Start(ctx, tracing.Config{Endpoint: "http://" + sink.Addr().String(), SampleRatio: bc.overheadSample})
	if err != nil {
		return &usageError{err.Error()}
	}
	defer tr.Close(context.Background())
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
		perSec := map[string][]float64{}
		for round := 0; round < bc.overhead; round++ {
			for i := range phases {
				p := phases[(i+round)%len(phases)]
				metricsOn.Store(p.metrics)
				r := b.loadVariants(ctx, fmt.Sprintf("%s-%s-r%d", w.name, p.name, round+1), w.what, w.clients,
					[]benchVariant{{base: p.base}}, func(_ int, rng *rand.Rand, _ benchVariant) (string, string) {
						return w.path(rng), `{"by":1}`
					})[0]
				perSec[p.name] = append(perSec[p.name], r.PerSecond)
				results = append(results, r)
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		printOverhead(env.Stdout, w.name, perSec)
	}
	metricsOn.Store(true)
	if !bc.json {
		printTable(env.Stdout, results)
	}
	return nil
}

// printOverhead prints a workload's summary: each setting's median, its
// cost against off's, and off's spread.
func printOverhead(w io.Writer, name string, perSec map[string][]float64) {
	median := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	off := median(perSec["off"])
	lo, hi := slices.Min(perSec["off"]), slices.Max(perSec["off"])
	fmt.Fprintf(w, "%s off      median %8.1f req/s  (rounds %s; spread %.1f%% of the median)\n", name, off, fmtRates(perSec["off"]), 100*(hi-lo)/off)
	for _, k := range []string{"metrics", "trace"} {
		m := median(perSec[k])
		fmt.Fprintf(w, "%s %-8s median %8.1f req/s  (rounds %s; cost %+.1f%%)\n", name, k, m, fmtRates(perSec[k]), 100*(off-m)/off)
	}
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
