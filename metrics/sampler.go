package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// streamsTimeout bounds the JetStream round trips of one scrape.
const streamsTimeout = 5 * time.Second

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dLive          = desc("strata_activations_live", "Activations alive on this node now.")
	dMailbox       = desc("strata_mailbox_requests", "Requests waiting in this node's mailboxes.")
	dMailboxMax    = desc("strata_mailbox_depth_max", "The longest single mailbox on this node.")
	dSocketObjects = desc("strata_websocket_objects", "Objects holding WebSockets on this node, active or hibernated.")
	dSockets       = desc("strata_websockets_open", "WebSockets the gateway holds open.")
	dConflicts     = desc("strata_append_conflicts_total", "Appends refused because the object's subject had moved on (a fenced writer).")
	dDuplicates    = desc("strata_append_duplicates_total", "Appends found already stored (a retried publish that had landed).")
	dRead          = desc("strata_events_read_total", "Events read back from the log (catch-up, history, time travel).")
	dBacklog       = desc("strata_projector_lag_events", "Events acknowledged and waiting to be applied to the snapshot.")
	dLagSeconds    = desc("strata_projector_lag_seconds", "Age of the newest event the projector has applied, while events wait; 0 when none waits.")
	dProjFail      = desc("strata_projector_commit_failures_total", "Snapshot transactions whose commit failed (healed from the log).")
	dBadger        = desc("strata_badger_size_bytes", "Size of the Badger snapshot on disk, by part (lsm, vlog), as Badger last measured it.", "part")
	dAlarms        = desc("strata_alarms_total", "Alarm events by kind: published (schedules), fired (ran), stale, retried, dead, repaired.", "kind")
	dNodes         = desc("strata_cluster_nodes", "Live nodes this node sees, itself included (1 alone).")
	dLeased        = desc("strata_cluster_lease", "1 if this node holds its membership lease (always 1 alone).")
	dOwned         = desc("strata_cluster_objects_held", "Objects this node holds as their owner.")
	dStreamMsgs    = desc("strata_jetstream_stream_messages", "Messages in a JetStream stream, by kind (log, timers) and shard; timers are pending alarms.", "kind", "shard")
	dStreamBytes   = desc("strata_jetstream_stream_bytes", "Bytes in a JetStream stream, by kind (log, timers) and shard.", "kind", "shard")
	dStreamErr     = desc("strata_jetstream_scrape_errors_total", "Scrapes whose stream sizes could not be read.")
)

// sampler reads Sources at each scrape.
type sampler struct {
	src Sources
	m   *Metrics
}

func (s *sampler) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dLive, dMailbox, dMailboxMax, dSocketObjects, dSockets, dConflicts, dDuplicates, dRead,
		dBacklog, dLagSeconds, dProjFail, dBadger, dAlarms, dNodes, dLeased, dOwned, dStreamMsgs, dStreamBytes, dStreamErr} {
		ch <- d
	}
}

func (s *sampler) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if f := s.src.Runtime; f != nil {
		st := f()
		gauge(dLive, float64(st.Live))
		gauge(dMailbox, float64(st.MailboxQueued))
		gauge(dMailboxMax, float64(st.MailboxDeepest))
		gauge(dSocketObjects, float64(st.SocketObjects))
	}
	if f := s.src.WebSockets; f != nil {
		gauge(dSockets, float64(f()))
	}
	if f := s.src.Log; f != nil {
		st := f()
		counter(dConflicts, st.Conflicts)
		counter(dDuplicates, st.Duplicates)
		counter(dRead, st.Read)
	}
	if f := s.src.Projector; f != nil {
		st := f()
		gauge(dBacklog, float64(st.Backlog))
		lag := 0.0
		if last := s.m.lastAppliedNanos.Load(); st.Backlog > 0 && last > 0 {
			lag = max(time.Since(time.Unix(0, last)).Seconds(), 0)
		}
		gauge(dLagSeconds, lag)
		counter(dProjFail, st.CommitFailures)
		gauge(dBadger, float64(st.LSMBytes), "lsm")
		gauge(dBadger, float64(st.VlogBytes), "vlog")
	}
	if f := s.src.Alarms; f != nil {
		st := f()
		counter(dAlarms, st.Published, "published")
		counter(dAlarms, st.Ran, "fired")
		counter(dAlarms, st.Stale, "stale")
		counter(dAlarms, st.Retried, "retried")
		counter(dAlarms, st.Dead, "dead")
		counter(dAlarms, st.Repaired, "repaired")
	}
	if f := s.src.Cluster; f != nil {
		st := f()
		gauge(dNodes, float64(st.Nodes))
		leased := 0.0
		if st.Leased {
			leased = 1
		}
		gauge(dLeased, leased)
		gauge(dOwned, float64(st.Owned))
	}
	if f := s.src.Streams; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), streamsTimeout)
		sizes, err := f(ctx)
		cancel()
		for _, sz := range sizes {
			sh := strconv.Itoa(sz.Shard)
			gauge(dStreamMsgs, float64(sz.Messages), sz.Kind, sh)
			gauge(dStreamBytes, float64(sz.Bytes), sz.Kind, sh)
		}
		if err != nil {
			s.m.streamErrs.Add(1)
		}
		counter(dStreamErr, s.m.streamErrs.Load())
	}
}
