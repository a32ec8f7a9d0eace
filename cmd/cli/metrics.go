package cli

import (
	"context"
	"flag"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/metrics"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/tracing"
)

// metricsFlags are serve's observability flags.
type metricsFlags struct {
	on           bool
	otlpEndpoint string
	traceSample  float64
}

func (f *metricsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "metrics", true, "serve Prometheus metrics at GET /metrics (scope read when auth is on) and count requests, turns, appends and alarms")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OpenTelemetry: send traces over OTLP/HTTP to this collector URL (e.g. http://127.0.0.1:4318); empty: tracing off")
	fs.Float64Var(&f.traceSample, "trace-sample", 0.01, "with --otlp-endpoint, the share of requests traced (0..1); a request whose traceparent is sampled is always traced")
}

// startTracing starts tracing if --otlp-endpoint is set (nil otherwise).
func (f *metricsFlags) startTracing(ctx context.Context, node string) (*tracing.Tracing, error) {
	if f.otlpEndpoint == "" {
		return nil, nil
	}
	t, err := tracing.Start(ctx, tracing.Config{Endpoint: f.otlpEndpoint, SampleRatio: f.traceSample, Node: node})
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	return t, nil
}

// newMetrics makes a node's metrics before the node opens (its hooks are
// set as it opens); the sources read the node and gateway once set.
func newMetrics(classes []*objects.Class, n *atomic.Pointer[node], gw *atomic.Pointer[gateway.Gateway]) *metrics.Metrics {
	methods := map[string][]string{}
	for _, c := range classes {
		methods[c.Name()] = c.Methods()
	}
	src := metrics.Sources{
		Runtime: func() metrics.RuntimeStats {
			nd := n.Load()
			if nd == nil {
				return metrics.RuntimeStats{}
			}
			st, mb := nd.rt.Stats(), nd.rt.Mailboxes()
			return metrics.RuntimeStats{Live: st.Live, SocketObjects: st.SocketObjects, MailboxQueued: mb.Queued, MailboxDeepest: mb.Deepest}
		},
		WebSockets: func() int {
			if g := gw.Load(); g != nil {
				return g.WebSocketsOpen()
			}
			return 0
		},
		Log: func() metrics.LogStats {
			nd := n.Load()
			if nd == nil {
				return metrics.LogStats{}
			}
			st := nd.log.Stats()
			return metrics.LogStats{Conflicts: st.Conflicts, Duplicates: st.Duplicates, Read: st.Read}
		},
		Projector: func() metrics.ProjectorStats {
			nd := n.Load()
			if nd == nil {
				return metrics.ProjectorStats{}
			}
			lsm, vlog := nd.proj.Sizes()
			return metrics.ProjectorStats{Backlog: nd.proj.Backlog(), LSMBytes: lsm, VlogBytes: vlog, CommitFailures: nd.proj.Stats().CommitFailures}
		},
		Alarms: func() metrics.AlarmStats {
			nd := n.Load()
			if nd == nil {
				return metrics.AlarmStats{}
			}
			st := nd.alarms.Stats()
			return metrics.AlarmStats{Published: st.Published, Ran: st.Ran, Stale: st.Stale, Retried: st.Retried, Dead: st.Dead, Repaired: st.Repaired}
		},
		Cluster: func() metrics.ClusterStats {
			nd := n.Load()
			if nd == nil {
				return metrics.ClusterStats{}
			}
			return clusterStats(nd)
		},
		Streams: func(ctx context.Context) ([]metrics.StreamSize, error) {
			nd := n.Load()
			if nd == nil {
				return nil, nil
			}
			sizes, err := nd.log.StreamSizes(ctx)
			out := make([]metrics.StreamSize, len(sizes))
			for i, s := range sizes {
				out[i] = metrics.StreamSize{Kind: s.Kind, Shard: s.Shard, Messages: s.Messages, Bytes: s.Bytes}
			}
			return out, err
		},
	}
	return metrics.New(methods, src)
}

func clusterStats(nd *node) metrics.ClusterStats {
	if nd.router == nil {
		return metrics.ClusterStats{Nodes: 1, Leased: true, Owned: nd.rt.Stats().Live}
	}
	st := nd.router.Status()
	cs := metrics.ClusterStats{Nodes: len(st.Nodes), Leased: st.Leased}
	for _, ns := range st.Nodes {
		if ns.Name == st.Node {
			cs.Owned = ns.Objects
		}
	}
	return cs
}

// objectHooks feeds m from the runtime's hooks.
func objectHooks(m *metrics.Metrics) objects.Hooks {
	return objects.Hooks{
		Activated: func(class string, _ objects.ID) { m.Activated(class) },
		Evicted:   func(class string, _ objects.ID) { m.Evicted(class) },
		Fenced:    func(class string, _ objects.ID) { m.Fenced(class) },
		Turn:      m.ObserveTurn,
	}
}

// nodeStats is GET /v1/node: what the console shows of this node.
func nodeStats(nd *node, gw *gateway.Gateway, started time.Time) any {
	rs, mb := nd.rt.Stats(), nd.rt.Mailboxes()
	lsm, vlog := nd.proj.Sizes()
	out := map[string]any{
		"started":        started.UTC().Format(time.RFC3339),
		"activations":    map[string]any{"live": rs.Live, "started": rs.Activations, "by_class": nd.rt.LiveOf()},
		"mailboxes":      map[string]any{"queued": mb.Queued, "deepest": mb.Deepest},
		"websockets":     map[string]any{"open": gw.WebSocketsOpen(), "objects": rs.SocketObjects},
		"alarms":         nd.alarms.Stats(),
		"projector":      map[string]any{"lag_events": nd.proj.Backlog()},
		"snapshot_bytes": map[string]any{"lsm": lsm, "vlog": vlog},
		"cluster":        clusterStats(nd),
		"log":            nd.log.Stats(),
		"shards":         nd.log.Shards(),
	}
	return out
}
