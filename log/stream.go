package log

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultShards is P for a new data folder or cluster. On one disk fewer
// shards make fuller atomic batches (more events per fsync); in a cluster
// more shards spread stream leaders over more nodes.
const DefaultShards = 4

// Limits and defaults of Config.
const (
	shardsMax   = 256
	replicasMax = 5
	// batchMessagesMaxServer is the server's limit on an atomic batch
	// (streamDefaultMaxAtomicBatchSize in nats-server); it refuses a
	// larger batch whole.
	batchMessagesMaxServer = 1000
	defaultBatchBytesMax   = 4 << 20
	defaultRequestTimeout  = 10 * time.Second
	defaultConnName        = "strata"
	// headerBytesMax is the room left in a message for headers: Strata's
	// (message id, expectation, batch id and sequence) take about 300.
	headerBytesMax  = 4 << 10
	duplicateWindow = 2 * time.Minute
	reconnectWait   = 250 * time.Millisecond
)

// Stream metadata keys and subject patterns.
const (
	metaShards       = "strata.shards"
	metaFormat       = "strata.format"
	logSubjectsFmt   = "strata.%d.obj.>"
	schedSubjectsFmt = "strata.%d.sched.>"
	fireSubjectsFmt  = "strata.%d.fire.>"
)

// Config configures a Log. Zero values take the documented defaults.
type Config struct {
	// URL is the NATS server's URL; or Server, an embedded server of this
	// process, connected to in process (no network). One is required.
	URL    string
	Server *Server
	// TLS, with a URL, makes the connection verify the server against
	// its CA (TLSConfig.CAFile). A connection in process has no TLS.
	TLS *TLSConfig
	// Shards is P. 0 adopts the count recorded in existing streams, or
	// DefaultShards for a new log. A non-zero count different from the
	// recorded one is an error: P never changes in place.
	Shards   int
	Replicas int    // stream replicas; default 1
	ConnName string // NATS connection name; default "strata"
	// Auth are the credentials to connect with, if the server wants them
	// (a URL's own user:password@ works too).
	Auth   Auth
	Logger *slog.Logger
	// BatchMessagesMax bounds one atomic batch in messages; default and
	// maximum 1000, the server's limit.
	BatchMessagesMax int
	// BatchBytesMax bounds one atomic batch's payload in bytes; default
	// 4 MiB. An event larger than this goes alone.
	BatchBytesMax int
	// AppendQueueBytesMax bounds the bytes of the events waiting for one
	// shard's committer (beside the 4,096 appends its queue holds); an
	// Append waits past it until its context ends. One event always
	// fits. Default 64 MiB.
	AppendQueueBytesMax int
	// RequestTimeout bounds one publish or read round trip when the
	// caller's context allows longer; default 10s.
	RequestTimeout time.Duration
	// AllowRetention creates a new log's streams without DenyPurge, so
	// classes that ask for it may drop events older than a checkpoint
	// (DropBefore). It is fixed when the log is created: JetStream never
	// lifts DenyPurge, so on an append-only log it is an error.
	AllowRetention bool
	// OnCommit, if set, learns of each publish round a shard's committer
	// completed: how many events it acknowledged, their bytes, and how
	// long the round took (metrics). It runs on the committer's goroutine
	// and must not block.
	OnCommit func(shard, events, bytes int, took time.Duration)

	hooks *hooks // tests only
}

// hooks let tests observe and pause the committers instead of sleeping.
type hooks struct {
	// beforePublish runs on a committer before each publish, with the
	// context of the committer's calls and the number of messages.
	beforePublish func(ctx context.Context, shard, messages int)
	// backgroundWait replaces the const of that name when not 0.
	backgroundWait time.Duration
}

// Stats count what the log did since Open.
type Stats struct {
	Appends         uint64 // appends acknowledged (including Duplicates)
	Publishes       uint64 // single-message publishes sent
	Batches         uint64 // atomic batches sent
	BatchedMessages uint64 // messages sent inside atomic batches
	Background      uint64 // background appends queued by a committer (AppendBackground; not those sent inline on an idle shard)
	Conflicts       uint64 // appends refused: the object's subject had moved on
	Duplicates      uint64 // appends found already stored (a retry of a landed append)
	Read            uint64 // events returned by Read and Scan
}

type stats struct {
	appends, publishes, batches, batched, background, conflicts, duplicates, read atomic.Uint64
}

// Log is the typed event log over JetStream.
type Log struct {
	cfg        Config
	nc         *nats.Conn
	js         jetstream.JetStream
	shards     int
	maxEvent   int
	committers []*committer
	stats      stats
	purgeable  bool // the log streams allow purges (AllowRetention at creation)

	// stopping is closed by Close: committers take no more work.
	stopping chan struct{}
	// ctx is the root of every call a committer makes; Close cancels it
	// only when its own context runs out while a publish is in flight.
	ctx        context.Context
	cancel     context.CancelFunc
	connClosed chan struct{} // closed by the connection's ClosedHandler
	closeOnce  sync.Once
	closeErr   error
}

// LogStream and TimerStream name shard n's streams.
func LogStream(n int) string   { return "STRATA_LOG_" + strconv.Itoa(n) }
func TimerStream(n int) string { return "STRATA_TIMERS_" + strconv.Itoa(n) }

// ObjectSubject is the subject holding one object's events:
// strata.<shard>.obj.<class>.<idhex>.
func ObjectSubject(shard int, class string, id ID) string {
	// One allocation: this runs for every append.
	var b strings.Builder
	b.Grow(len("strata.") + 4 + len(".obj.") + len(class) + 1 + hex.EncodedLen(len(id)))
	b.WriteString("strata.")
	b.WriteString(strconv.Itoa(shard))
	b.WriteString(".obj.")
	b.WriteString(class)
	b.WriteByte('.')
	var h [2 * len(ID{})]byte
	hex.Encode(h[:], id[:])
	b.Write(h[:])
	return b.String()
}

// Open connects, creates or updates every shard's streams, and starts one
// committer per shard.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, stopping: make(chan struct{}), connClosed: make(chan struct{})}
	logger := cfg.Logger.With("component", "log")
	opts := []nats.Option{
		nats.Name(cfg.ConnName),
		nats.MaxReconnects(-1), // a node outlives server restarts and leader moves
		nats.ReconnectWait(reconnectWait),
		nats.ClosedHandler(func(*nats.Conn) { close(l.connClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { logger.Warn("nats async error", "err", err) }),
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	if cfg.Auth.Enabled() {
		opts = append(opts, nats.UserInfo(cfg.Auth.User, cfg.Auth.Password))
	}
	if cfg.Server != nil {
		opts = append(opts, nats.InProcessServer(cfg.Server))
	} else if cfg.TLS != nil {
		tc, err := cfg.TLS.clientTLS()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	l.nc, err = nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("log: connect %s: %w", cfg.where(), err)
	}
	if l.js, err = jetstream.New(l.nc); err != nil {
		l.nc.Close()
		return nil, fmt.Errorf("log: jetstream on %s: %w", cfg.where(), err)
	}
	if l.shards, err = l.ensureStreamsRetrying(ctx); err != nil {
		l.nc.Close()
		return nil, err
	}
	l.maxEvent = int(l.nc.MaxPayload()) - headerBytesMax
	if l.maxEvent <= 0 {
		l.nc.Close()
		return nil, fmt.Errorf("log: server at %s allows %d-byte messages, too small for events", cfg.where(), l.nc.MaxPayload())
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	for n := range l.shards {
		c, err := newCommitter(l, n)
		if err != nil {
			l.cancel()
			l.nc.Close()
			return nil, err
		}
		l.committers = append(l.committers, c)
	}
	for _, c := range l.committers {
		go c.run()
	}
	return l, nil
}

// where names the server in errors.
func (c Config) where() string {
	if c.Server != nil {
		return "the embedded server (in process)"
	}
	return c.URL
}

// withDefaults fills in defaults and validates, on a copy.
func (c Config) withDefaults() (Config, error) {
	if (c.URL == "") == (c.Server == nil) {
		return c, errors.New("log: want one of Config.URL and Config.Server")
	}
	if c.Shards < 0 || c.Shards > shardsMax {
		return c, fmt.Errorf("log: %d shards, want 1..%d (0: recorded or default)", c.Shards, shardsMax)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Replicas < 1 || c.Replicas > replicasMax {
		return c, fmt.Errorf("log: %d replicas, want 1..%d", c.Replicas, replicasMax)
	}
	if c.ConnName == "" {
		c.ConnName = defaultConnName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BatchMessagesMax == 0 {
		c.BatchMessagesMax = batchMessagesMaxServer
	}
	if c.BatchMessagesMax < 1 || c.BatchMessagesMax > batchMessagesMaxServer {
		return c, fmt.Errorf("log: batch of %d messages, want 1..%d (the server's limit)", c.BatchMessagesMax, batchMessagesMaxServer)
	}
	if c.BatchBytesMax == 0 {
		c.BatchBytesMax = defaultBatchBytesMax
	}
	if c.AppendQueueBytesMax == 0 {
		c.AppendQueueBytesMax = defaultAppendQueueBytesMax
	}
	if c.AppendQueueBytesMax < 0 {
		return c, fmt.Errorf("log: negative append queue bytes %d", c.AppendQueueBytesMax)
	}
	if c.BatchBytesMax < 0 {
		return c, fmt.Errorf("log: negative batch bytes %d", c.BatchBytesMax)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		return c, fmt.Errorf("log: negative request timeout %s", c.RequestTimeout)
	}
	return c, nil
}

// ensureStreams settles P from the streams' metadata and the config, then
// creates or updates both streams of every shard. It returns P.
func (l *Log) ensureStreams(ctx context.Context) (int, error) {
	recorded := 0
	l.purgeable = l.cfg.AllowRetention
	s, err := l.js.Stream(ctx, LogStream(0))
	switch {
	case err == nil:
		l.purgeable = !s.CachedInfo().Config.DenyPurge
		if l.cfg.AllowRetention && !l.purgeable {
			return 0, fmt.Errorf("%w: stream %s was created with DenyPurge, which JetStream never lifts, so no class can drop events on it (retention is chosen when the log is created)", ErrAppendOnly, LogStream(0))
		}
		meta := s.CachedInfo().Config.Metadata
		if f := meta[metaFormat]; f != strconv.Itoa(FormatVersion) {
			return 0, fmt.Errorf("log: stream %s has format %q, this binary writes %d", LogStream(0), f, FormatVersion)
		}
		v := meta[metaShards]
		if recorded, err = strconv.Atoi(v); err != nil || recorded < 1 || recorded > shardsMax {
			return 0, fmt.Errorf("log: stream %s records %q shards", LogStream(0), v)
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return 0, fmt.Errorf("log: look up stream %s: %w", LogStream(0), err)
	}
	shards := l.cfg.Shards
	switch {
	case recorded == 0 && shards == 0:
		shards = DefaultShards
	case recorded != 0 && shards == 0:
		shards = recorded
	case recorded != 0 && shards != recorded:
		return 0, fmt.Errorf("log: the log has %d shards, %d were asked for: the shard count never changes in place (migrate instead)", recorded, shards)
	}
	meta := map[string]string{metaShards: strconv.Itoa(shards), metaFormat: strconv.Itoa(FormatVersion)}
	var configs []jetstream.StreamConfig
	for n := range shards {
		configs = append(configs, l.logStreamConfig(n, meta), l.timerStreamConfig(n, meta), l.ckptStreamConfig(n, meta))
	}
	// All at once: on a cluster each new replicated stream waits for its
	// own Raft group to elect a leader (seconds on a loaded machine), and
	// the elections overlap.
	errs := make([]error, len(configs))
	var wg sync.WaitGroup
	for i, sc := range configs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.js.CreateOrUpdateStream(ctx, sc); err != nil {
				errs[i] = fmt.Errorf("log: create or update stream %s: %w", sc.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return shards, nil
}

// logStreamConfig: append-only (no deletes, no purges, no limits), so the
// audit trail holds at the storage level too. A log created with
// AllowRetention allows purges, which Strata uses only through DropBefore.
func (l *Log) logStreamConfig(n int, meta map[string]string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               LogStream(n),
		Description:        "Strata object log: append-only events, the source of truth",
		Subjects:           []string{fmt.Sprintf(logSubjectsFmt, n)},
		Storage:            jetstream.FileStorage,
		Replicas:           l.cfg.Replicas,
		Retention:          jetstream.LimitsPolicy,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		Duplicates:         duplicateWindow,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		DenyDelete:         true,
		DenyPurge:          !l.purgeable,
		Metadata:           meta,
	}
}

// timerStreamConfig: message schedules need rollups (a new schedule
// replaces the old one on its subject), which is why they never share a
// stream with the log. No limits: a limit would silently drop alarms.
func (l *Log) timerStreamConfig(n int, meta map[string]string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               TimerStream(n),
		Description:        "Strata alarms: scheduled messages and their fires",
		Subjects:           []string{fmt.Sprintf(schedSubjectsFmt, n), fmt.Sprintf(fireSubjectsFmt, n), fmt.Sprintf(deadSubjectsFmt, n)},
		Storage:            jetstream.FileStorage,
		Replicas:           l.cfg.Replicas,
		Retention:          jetstream.LimitsPolicy,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		Duplicates:         duplicateWindow,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		AllowMsgSchedules:  true,
		AllowRollup:        true,
		Metadata:           meta,
	}
}

// Close stops the committers: appends still queued fail with ErrClosed,
// and a publish in flight is waited for (or, when ctx ends first,
// abandoned with ErrClosed). Then it drains the connection.
func (l *Log) Close(ctx context.Context) error {
	l.closeOnce.Do(func() { l.closeErr = l.close(ctx) })
	return l.closeErr
}

func (l *Log) close(ctx context.Context) error {
	close(l.stopping)
	var errs []error
	if !l.waitCommitters(ctx) {
		errs = append(errs, fmt.Errorf("log: close: abandoned a publish in flight: %w", ctx.Err()))
		l.cancel()
		// Every blocking call of a committer takes l.ctx, so they return
		// now.
		l.waitCommitters(context.Background())
	}
	l.cancel()
	if err := l.nc.Drain(); err != nil {
		l.nc.Close()
		errs = append(errs, fmt.Errorf("log: close: drain: %w", err))
	}
	select {
	case <-l.connClosed:
	case <-ctx.Done():
		l.nc.Close()
		errs = append(errs, fmt.Errorf("log: close: drain: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

func (l *Log) waitCommitters(ctx context.Context) bool {
	for _, c := range l.committers {
		select {
		case <-c.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (l *Log) closed() bool {
	select {
	case <-l.stopping:
		return true
	default:
		return false
	}
}

// Shards is P.
func (l *Log) Shards() int { return l.shards }

// ShardOf places an object on a shard: its id's first 8 bytes mod P. Ids
// are uniform (SHA-256 or random), so shards fill evenly.
func (l *Log) ShardOf(id ID) int { return int(binary.BigEndian.Uint64(id[:8]) % uint64(l.shards)) }

// MaxEventBytes is the largest encoded event Append accepts: the server's
// max payload less room for headers.
func (l *Log) MaxEventBytes() int { return l.maxEvent }

// Replicated reports whether the log's streams have more than one
// replica (a cluster).
func (l *Log) Replicated() bool { return l.cfg.Replicas > 1 }

// Stats returns the counters since Open.
func (l *Log) Stats() Stats {
	return Stats{
		Appends:         l.stats.appends.Load(),
		Publishes:       l.stats.publishes.Load(),
		Batches:         l.stats.batches.Load(),
		BatchedMessages: l.stats.batched.Load(),
		Background:      l.stats.background.Load(),
		Conflicts:       l.stats.conflicts.Load(),
		Duplicates:      l.stats.duplicates.Load(),
		Read:            l.stats.read.Load(),
	}
}

// LastSeq is shard's log stream's last sequence (0: empty), as the stream
// leader knows it.
func (l *Log) LastSeq(ctx context.Context, shard int) (uint64, error) {
	st, err := l.streamState(ctx, shard, LogStream(shard))
	return st.LastSeq, err
}

// streamState asks the leader of one of shard's streams for its state.
func (l *Log) streamState(ctx context.Context, shard int, stream string) (jetstream.StreamState, error) {
	if err := l.checkShard(shard); err != nil {
		return jetstream.StreamState{}, err
	}
	if l.closed() {
		return jetstream.StreamState{}, ErrClosed
	}
	if l.cfg.Replicas <= 1 {
		ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
		defer cancel()
		s, err := l.js.Stream(ctx, stream)
		if err != nil {
			return jetstream.StreamState{}, fmt.Errorf("log: stream %s: %w", stream, err)
		}
		return s.CachedInfo().State, nil
	}
	// A replicated stream electing a leader (or a cluster whose meta
	// leader is moving, as on a loaded machine while it forms) drops the
	// request rather than refusing it: ask again within the caller's
	// context, at most clusterFormTimeout, as at start.
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	var st jetstream.StreamState
	err := whileElecting(ctx, func(ctx context.Context) error {
		s, err := l.js.Stream(ctx, stream)
		if err == nil {
			st = s.CachedInfo().State
		}
		return err
	})
	if err != nil {
		return st, fmt.Errorf("log: stream %s: %w", stream, err)
	}
	return st, nil
}

func (l *Log) checkShard(shard int) error {
	if shard < 0 || shard >= l.shards {
		return fmt.Errorf("log: shard %d out of range 0..%d", shard, l.shards-1)
	}
	return nil
}
