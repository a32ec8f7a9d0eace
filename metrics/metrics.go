// Package metrics is Strata's Prometheus instrumentation: one registry per
// node, the series docs/operations.md ("Metrics") lists, and the HTTP
// handler that serves them in the text format.
//
// Two kinds of series:
//
//   - observed: counters and histograms fed by hooks on the write path
//     (gateway requests, turns, committer rounds, alarm fires). Each hook
//     is a few atomic adds; nothing is allocated per event.
//   - sampled: values read from the components' own counters and gauges
//     when Prometheus scrapes (Sources), so they cost nothing between
//     scrapes.
//
// Labels are bounded: class and RPC method labels take only the names the
// node registered (anything else is "other"); status codes are a small
// set; shards are at most P. No object name or id is ever a label.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Other is the label value of a class or method the node does not know.
const Other = "other"

// Metrics holds a node's registry and its observed series.
type Metrics struct {
	reg     *prometheus.Registry
	methods map[string]map[string]bool // class → its RPC methods

	requests   *prometheus.CounterVec
	requestDur *prometheus.HistogramVec
	turnDur    *prometheus.HistogramVec
	turnsFail  *prometheus.CounterVec
	appendDur  prometheus.Histogram
	groupSize  prometheus.Histogram
	events     prometheus.Counter
	bytes      prometheus.Counter
	activated  *prometheus.CounterVec
	evicted    *prometheus.CounterVec
	fenced     *prometheus.CounterVec
	alarmLate  prometheus.Histogram

	lastAppliedNanos atomic.Int64 // time of the newest event the projector applied
	streamErrs       atomic.Uint64
}

// New returns Metrics for a node whose classes (and their RPC methods) are
// classes; sources are read at each scrape (any field may be nil).
func New(classes map[string][]string, src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), methods: map[string]map[string]bool{}}
	for c, ms := range classes {
		set := map[string]bool{}
		for _, name := range ms {
			set[name] = true
		}
		m.methods[c] = set
	}
	latency := prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5 ms … 16 s
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_http_requests_total",
		Help: "HTTP requests answered by the gateway, by class, route action, RPC method and status code.",
	}, []string{"class", "action", "method", "code"})
	m.requestDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "strata_http_request_duration_seconds", Help: "Time from a request's arrival to its answer (WebSockets: to the connection's end), by class and route action.",
		Buckets: latency,
	}, []string{"class", "action"})
	m.turnDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "strata_turn_duration_seconds", Help: "Time a handler ran in one turn (no queue wait, no commit wait), by class.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 4, 12), // 10 µs … 42 s
	}, []string{"class"})
	m.turnsFail = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strata_turns_failed_total", Help: "Turns whose handler returned an error or panicked, by class.",
	}, []string{"class"})
	m.appendDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strata_append_duration_seconds", Help: "Time of one committer round: from taking a group of events to JetStream's acknowledgement of all of them.",
		Buckets: latency,
	})
	m.groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strata_append_group_events", Help: "Events acknowledged together by one committer round (group commit).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 … 1024
	})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_events_appended_total", Help: "Events appended to the log and acknowledged."})
	m.bytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "strata_event_bytes_appended_total", Help: "Bytes of the events appended and acknowledged."})
	m.activated = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_activations_total", Help: "Activations started, by class."}, []string{"class"})
	m.evicted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_evictions_total", Help: "Activations ended (idle, over the limit, reset), by class."}, []string{"class"})
	m.fenced = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strata_fenced_total", Help: "Activations fenced: another writer had appended to the object, by class."}, []string{"class"})
	m.alarmLate = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "strata_alarm_lateness_seconds", Help: "How late a first alarm fire was taken against its scheduled time.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12), // 10 ms … 20 s
	})
	m.reg.MustRegister(m.requests, m.requestDur, m.turnDur, m.turnsFail, m.appendDur, m.groupSize, m.events, m.bytes,
		m.activated, m.evicted, m.fenced, m.alarmLate,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&sampler{src: src, m: m})
	// Every class's series exist from the start, at zero: a rate over a
	// series that appears only at its first event misses that event.
	for c := range m.methods {
		m.activated.WithLabelValues(c)
		m.evicted.WithLabelValues(c)
		m.fenced.WithLabelValues(c)
		m.turnsFail.WithLabelValues(c)
	}
	return m
}

// Registry is the node's registry (tests read it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: 10 * time.Second})
}

// classLabel bounds a class name to the registered ones.
func (m *Metrics) classLabel(class string) string {
	if _, ok := m.methods[class]; ok {
		return class
	}
	if class == "" {
		return ""
	}
	return Other
}

// ObserveRequest counts one answered gateway request. class and method are
// as the client sent them (bounded here); action is the route's kind.
func (m *Metrics) ObserveRequest(class, action, method string, code int, took time.Duration) {
	cl := m.classLabel(class)
	if method != "" && (cl == Other || !m.methods[cl][method]) {
		method = Other
	}
	m.requests.WithLabelValues(cl, action, method, codeLabel(code)).Inc()
	m.requestDur.WithLabelValues(cl, action).Observe(took.Seconds())
}

// codeLabel keeps the code set small: the codes the gateway answers, and
// anything else by its class ("5xx").
func codeLabel(code int) string {
	if code >= 100 && code <= 599 {
		return strconv.Itoa(code)
	}
	return "other"
}

// ObserveTurn is objects.Hooks.Turn.
func (m *Metrics) ObserveTurn(class string, took time.Duration, failed bool) {
	cl := m.classLabel(class)
	m.turnDur.WithLabelValues(cl).Observe(took.Seconds())
	if failed {
		m.turnsFail.WithLabelValues(cl).Inc()
	}
}

// ObserveCommit is log.Config.OnCommit.
func (m *Metrics) ObserveCommit(_, events, bytes int, took time.Duration) {
	m.appendDur.Observe(took.Seconds())
	m.groupSize.Observe(float64(events))
	m.events.Add(float64(events))
	m.bytes.Add(float64(bytes))
}

// Activated, Evicted and Fenced are the objects.Hooks of the same names.
func (m *Metrics) Activated(class string) { m.activated.WithLabelValues(m.classLabel(class)).Inc() }
func (m *Metrics) Evicted(class string)   { m.evicted.WithLabelValues(m.classLabel(class)).Inc() }
func (m *Metrics) Fenced(class string)    { m.fenced.WithLabelValues(m.classLabel(class)).Inc() }

// ObserveFire is alarms.Config.OnFire: the lateness of first fires.
func (m *Metrics) ObserveFire(late time.Duration, retry bool) {
	if !retry {
		m.alarmLate.Observe(max(late, 0).Seconds())
	}
}

// ObserveApplied records the time (Unix nanoseconds) of the events the
// projector applied, for strata_projector_lag_seconds.
func (m *Metrics) ObserveApplied(eventNanos int64) {
	for {
		old := m.lastAppliedNanos.Load()
		if eventNanos <= old || m.lastAppliedNanos.CompareAndSwap(old, eventNanos) {
			return
		}
	}
}

// Sources are the components' own numbers, read at each scrape. Each is
// optional.
type Sources struct {
	Runtime   func() RuntimeStats
	Log       func() LogStats
	Projector func() ProjectorStats
	Alarms    func() AlarmStats
	Cluster   func() ClusterStats
	// WebSockets is how many WebSockets the gateway holds open.
	WebSockets func() int
	// Streams reads the JetStream streams' sizes (a round trip per stream).
	Streams func(ctx context.Context) ([]StreamSize, error)
}

// RuntimeStats are objects.Stats.
type RuntimeStats struct {
	Live           int // activations alive now
	MailboxQueued  int // requests waiting in mailboxes
	MailboxDeepest int // the longest mailbox
	SocketObjects  int // objects with WebSockets the hub holds, active or hibernated
}

// LogStats are log.Stats.
type LogStats struct {
	Conflicts, Duplicates, Read uint64
}

// ProjectorStats are the projector's backlog and snapshot sizes.
type ProjectorStats struct {
	Backlog        int
	LSMBytes       int64
	VlogBytes      int64
	CommitFailures uint64
}

// AlarmStats are alarms.Stats.
type AlarmStats struct {
	Published, Ran, Stale, Retried, Dead, Repaired uint64
}

// ClusterStats are what a cluster router says of membership.
type ClusterStats struct {
	Nodes  int  // live nodes, this one included
	Leased bool // this node holds its membership lease
	Owned  int  // objects this node holds
}

// StreamSize is one JetStream stream's size.
type StreamSize struct {
	Kind     string // "log" or "timers"
	Shard    int
	Messages uint64
	Bytes    uint64
}
