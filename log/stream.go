package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultShards is P for a new data folder or cluster. On one disk fewer
// shards make fuller atomic batches (more events per fsync); in a cluster
// more shards spread stream leaders. See docs/benchmarks.md.
const DefaultShards = 4

// headerBytesMax is room left in a message for Strata's headers.
const headerBytesMax = 4 << 10

// Config configures a Log. Zero values take the documented defaults.
type Config struct {
	URL string // NATS URL (required)
	// Shards is P. 0 adopts the count recorded in existing streams, or
	// DefaultShards for a new log. A different non-zero count than the
	// recorded one is an error: P never changes in place.
	Shards   int
	Replicas int // stream replicas; default 1
	ConnName string
	Logger   *slog.Logger
	// BatchMessagesMax bounds one atomic batch; default 1000, the server's
	// own limit.
	BatchMessagesMax int
	// BatchBytesMax bounds one atomic batch's payload; default 4 MiB.
	BatchBytesMax int
	// RequestTimeout bounds one publish or read round trip; default 10s.
	RequestTimeout time.Duration
}

// Stats count what the log did since Open.
type Stats struct {
	Appends         uint64 // events acknowledged
	Publishes       uint64 // single-message publishes sent
	Batches         uint64 // atomic batches sent
	BatchedMessages uint64 // messages sent inside atomic batches
	Conflicts       uint64 // appends refused: expected sequence moved on
	Duplicates      uint64 // retried appends found already stored
}

type stats struct {
	appends, publishes, batches, batched, conflicts, duplicates atomic.Uint64
}

// Log is the typed event log over JetStream.
type Log struct {
	cfg        Config
	nc         *nats.Conn
	js         jetstream.JetStream
	shards     int
	maxEvent   int
	logger     *slog.Logger
	committers []*committer
	stats      stats
	closeOnce  sync.Once
}

const shardsMetaKey = "strata.shards"

// LogStream and TimerStream name shard n's streams.
func LogStream(n int) string   { return fmt.Sprintf("STRATA_LOG_%d", n) }
func TimerStream(n int) string { return fmt.Sprintf("STRATA_TIMERS_%d", n) }

// ObjectSubject is the subject holding one object's events.
func ObjectSubject(shard int, class string, id ID) string {
	return "strata." + strconv.Itoa(shard) + ".obj." + class + "." + id.String()
}

// Open connects, creates or updates every shard's streams, and starts one
// committer per shard.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.URL == "" {
		return nil, errors.New("log: Config.URL is required")
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchMessagesMax <= 0 {
		cfg.BatchMessagesMax = 1000
	}
	if cfg.BatchBytesMax <= 0 {
		cfg.BatchBytesMax = 4 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Shards < 0 {
		return nil, fmt.Errorf("log: %d shards", cfg.Shards)
	}
	nc, err := nats.Connect(cfg.URL,
		nats.Name(cfg.ConnName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
	)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.URL, err)
	}
	l := &Log{cfg: cfg, nc: nc, logger: cfg.Logger}
	if l.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := l.ensureStreams(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	l.maxEvent = int(nc.MaxPayload()) - headerBytesMax
	for n := 0; n < l.shards; n++ {
		c := newCommitter(l, n)
		l.committers = append(l.committers, c)
		go c.run()
	}
	return l, nil
}

// ensureStreams settles P and creates or updates both streams of each shard.
func (l *Log) ensureStreams(ctx context.Context) error {
	recorded := 0
	s, err := l.js.Stream(ctx, LogStream(0))
	switch {
	case err == nil:
		v := s.CachedInfo().Config.Metadata[shardsMetaKey]
		if recorded, err = strconv.Atoi(v); err != nil || recorded <= 0 {
			return fmt.Errorf("log: stream %s records shards %q", LogStream(0), v)
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("log: look up %s: %w", LogStream(0), err)
	}
	switch {
	case recorded == 0 && l.cfg.Shards == 0:
		l.shards = DefaultShards
	case recorded == 0:
		l.shards = l.cfg.Shards
	case l.cfg.Shards == 0 || l.cfg.Shards == recorded:
		l.shards = recorded
	default:
		return fmt.Errorf("log: the log has %d shards, asked for %d: the shard count never changes in place", recorded, l.cfg.Shards)
	}
	meta := map[string]string{shardsMetaKey: strconv.Itoa(l.shards), "strata.format": strconv.Itoa(FormatVersion)}
	for n := 0; n < l.shards; n++ {
		cfgs := []jetstream.StreamConfig{{
			Name:               LogStream(n),
			Description:        "Strata object log: append-only events, the source of truth",
			Subjects:           []string{fmt.Sprintf("strata.%d.obj.>", n)},
			Storage:            jetstream.FileStorage,
			Replicas:           l.cfg.Replicas,
			Retention:          jetstream.LimitsPolicy,
			MaxMsgs:            -1,
			MaxBytes:           -1,
			MaxAge:             0,
			MaxMsgsPerSubject:  -1,
			Duplicates:         2 * time.Minute,
			AllowDirect:        true,
			AllowAtomicPublish: true,
			DenyDelete:         true,
			DenyPurge:          true,
			Metadata:           meta,
		}, {
			Name:               TimerStream(n),
			Description:        "Strata alarms: scheduled messages and their fires",
			Subjects:           []string{fmt.Sprintf("strata.%d.sched.>", n), fmt.Sprintf("strata.%d.fire.>", n)},
			Storage:            jetstream.FileStorage,
			Replicas:           l.cfg.Replicas,
			MaxMsgs:            -1,
			MaxBytes:           -1,
			MaxMsgsPerSubject:  -1,
			AllowDirect:        true,
			AllowAtomicPublish: true,
			AllowMsgSchedules:  true,
			AllowRollup:        true,
			Metadata:           meta,
		}}
		for _, sc := range cfgs {
			if _, err := l.js.CreateOrUpdateStream(ctx, sc); err != nil {
				return fmt.Errorf("log: create stream %s: %w", sc.Name, err)
			}
		}
	}
	return nil
}

// Close stops the committers (appends still queued fail with ErrClosed)
// and drains the connection.
func (l *Log) Close(ctx context.Context) error {
	var err error
	l.closeOnce.Do(func() {
		for _, c := range l.committers {
			close(c.stop)
		}
		for _, c := range l.committers {
			select {
			case <-c.done:
			case <-ctx.Done():
				err = fmt.Errorf("close log: %w", ctx.Err())
			}
		}
		l.nc.Close()
	})
	return err
}

// Shards is P.
func (l *Log) Shards() int { return l.shards }

// ShardOf places an object on a shard.
func (l *Log) ShardOf(id ID) int { return int(binary.BigEndian.Uint64(id[:8]) % uint64(l.shards)) }

// MaxEventBytes is the largest encoded event the server accepts.
func (l *Log) MaxEventBytes() int { return l.maxEvent }

// Stats returns the counters since Open.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:         l.stats.appends.Load(),
		Publishes:       l.stats.publishes.Load(),
		Batches:         l.stats.batches.Load(),
		BatchedMessages: l.stats.batched.Load(),
		Conflicts:       l.stats.conflicts.Load(),
		Duplicates:      l.stats.duplicates.Load(),
	}
}

// LastSeq is shard n's log stream's last sequence.
func (l *Log) LastSeq(ctx context.Context, shard int) (uint64, error) {
	s, err := l.js.Stream(ctx, LogStream(shard))
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", LogStream(shard), err)
	}
	return s.CachedInfo().State.LastSeq, nil
}
