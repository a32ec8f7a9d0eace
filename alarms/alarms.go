// Package alarms schedules objects' alarms on the timer stream and delivers
// their fires (DESIGN.md, "Alarms").
//
//  1. A turn sets or deletes an alarm: a write of the turn's event. The log
//     is the truth about alarms; the snapshot keeps an index of pending ones.
//  2. After the event is acknowledged, the runtime tells the Service
//     (objects.AlarmScheduler). Its one publisher goroutine publishes the
//     schedule (Nats-Msg-Id derived from the event, so a repeat is
//     harmless; a new schedule on the alarm's subject replaces the old) or
//     purges it, in the order the changes were acknowledged.
//  3. Because the event and the schedule are two writes, a crash can fall
//     between them. So on Start (every pending alarm in the snapshot) and on
//     each activation (the object's pending alarms after catch-up), a
//     schedule that is missing from the timer stream is published again;
//     so does a periodic sweep of the snapshot's index, a page per tick,
//     and, in a cluster, the node that gains a dead node's objects, from
//     the last moments of the log (repair.go). A schedule counts only at
//     the pending alarm's due time (a replaced alarm's old schedule does
//     not); another due time on the subject is replaced only if the log
//     confirms the repairer's view is current. Checks run in batches.
//  4. When due, JetStream copies the schedule into the object's fire
//     subject. One durable consumer per shard takes fires; each runs as the
//     object's Alarm turn (Runtime.Alarm, through the mailbox like any turn).
//     A fire that no longer matches the object's alarm is dropped there.
//  5. The fire is acknowledged only after the turn's event is acknowledged
//     (at least once). A failing handler is retried with exponential backoff
//     from RetryDelay; after the class's retries the fire is moved to the
//     dead letters, which an operator lists and replays. A failure of the
//     platform rather than the handler (unavailable, fenced, moving,
//     timeout) is retried without spending the class's retries (fire.go).
package alarms

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// Config configures a Service. Zero values take the documented defaults.
type Config struct {
	Log       *log.Log             // required
	Projector *projector.Projector // required
	Logger    *slog.Logger
	// RetryDelay is the delay before a failed alarm's first retry; each
	// later retry waits twice the one before. Default 2s (Durable Objects).
	RetryDelay time.Duration
	// RetryDelayMax caps one retry's delay. Default 1h.
	RetryDelayMax time.Duration
	// TurnTimeout bounds one Alarm turn, including its wait for the mailbox
	// and for durability. Default 30s.
	TurnTimeout time.Duration
	// TurnsInFlight bounds the Alarm turns running at once on this node.
	// Default 256.
	TurnsInFlight int
	// QueueLen bounds the schedule changes waiting to be published; past it
	// the runtime waits (backpressure). Default 4096.
	QueueLen int
	// SweepInterval is how often the sweep checks one page of the
	// snapshot's pending alarms and publishes the schedules found missing
	// (repair.go). Default 10s; negative: no sweep.
	SweepInterval time.Duration
	// SweepPage bounds the pending alarms one sweep tick reads. Default
	// 512.
	SweepPage int
	// TakeoverLookback is how far back in the log TakeOver looks for the
	// alarms of objects gained from nodes that left. Default 1m.
	TakeoverLookback time.Duration
	// Owns, if set, reports whether this node owns an object; the sweep
	// checks only those. Nil: every object (one node).
	Owns func(class string, id log.ID) bool
	// Deliver, if set, runs a fire's Alarm turn instead of the local
	// runtime: in a cluster every node takes fires from the shared
	// consumer, and the cluster router forwards each to its object's owner.
	Deliver func(ctx context.Context, ref objects.Ref, info objects.AlarmInfo) error
	// OnFire, if set, learns of each fire taken, with how late it is
	// against its scheduled time and whether it is a retry (metrics).
	OnFire func(late time.Duration, retry bool)
}

func (c *Config) setDefaults() error {
	if c.Log == nil || c.Projector == nil {
		return errors.New("alarms: Config.Log and Config.Projector are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 2 * time.Second
	}
	if c.RetryDelayMax <= 0 {
		c.RetryDelayMax = time.Hour
	}
	if c.TurnTimeout <= 0 {
		c.TurnTimeout = 30 * time.Second
	}
	if c.TurnsInFlight <= 0 {
		c.TurnsInFlight = 256
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 4096
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 10 * time.Second
	}
	if c.SweepPage <= 0 {
		c.SweepPage = 512
	}
	if c.TakeoverLookback <= 0 {
		c.TakeoverLookback = time.Minute
	}
	return nil
}

type jobKind uint8

const (
	jobSet    jobKind = iota + 1 // publish the schedule
	jobDelete                    // purge the schedule
	jobEnsure                    // publish the schedule if it is missing
)

type job struct {
	kind    jobKind
	fire    log.Fire
	msgID   string
	version uint64 // jobEnsure: the object's version the pending alarm was seen at
}

// Service is one node's alarm scheduler and fire consumer.
type Service struct {
	cfg    Config
	log    *log.Log
	proj   *projector.Projector
	logger *slog.Logger

	queue         chan job
	stopPublisher chan struct{} // closed by Close: publish what is queued, then end
	publisherDone chan struct{}
	ctx           context.Context // cut only when Close gives up
	cancel        context.CancelFunc

	rt  *objects.Runtime
	sem chan struct{}
	mu  struct {
		sync.Mutex
		consumers []*log.FireConsumer
		firing    bool // fires are taken; cleared by StopFires
		closed    bool
	}
	turns sync.WaitGroup // Alarm turns in flight
	// bgCtx is canceled by StopFires: it ends the sweep, the takeovers
	// and the waits of fires a platform failure holds back (which end
	// unacknowledged). bg counts the sweep and takeover goroutines.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	// TakeOver's gained objects not yet read for, merged; takeWake
	// (buffered, 1) wakes the takeover goroutine.
	takeMu   sync.Mutex
	takeNext func(class string, id log.ID) bool
	takeWake chan struct{}

	published, repaired, ran, stale, retried, deferred, dead, swept, takenOver, outboxRepaired atomic.Uint64
}

// Stats count what the Service did since New.
type Stats struct {
	Published uint64 // schedules (or immediate fires) published, repairs included
	Repaired  uint64 // of those, schedules found missing and published again
	Ran       uint64 // Alarm turns completed and acknowledged
	Stale     uint64 // fires dropped: the alarm had changed
	Retried   uint64 // failed Alarm turns set to run again
	Deferred  uint64 // Alarm turns the platform failed (not the handler), tried again without spending a retry
	Dead      uint64 // fires dead-lettered
	Swept     uint64 // pending alarms the sweep queued for a check
	TakenOver uint64 // alarms of objects gained from nodes that left, queued for a check
	// OutboxRepaired counts senders with pending messages activated by
	// Start, the sweep or a takeover (their loads deliver them).
	OutboxRepaired uint64
}

// Stats returns the counters since New.
func (s *Service) Stats() Stats {
	return Stats{Published: s.published.Load(), Repaired: s.repaired.Load(), Ran: s.ran.Load(), Stale: s.stale.Load(), Retried: s.retried.Load(), Deferred: s.deferred.Load(), Dead: s.dead.Load(),
		Swept: s.swept.Load(), TakenOver: s.takenOver.Load(), OutboxRepaired: s.outboxRepaired.Load()}
}

// New returns a Service whose publisher runs. Pass it as
// objects.Config.Alarms, then call Start with the runtime.
func New(cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:           cfg,
		log:           cfg.Log,
		proj:          cfg.Projector,
		logger:        cfg.Logger.With("component", "alarms"),
		queue:         make(chan job, cfg.QueueLen),
		stopPublisher: make(chan struct{}),
		publisherDone: make(chan struct{}),
		sem:           make(chan struct{}, cfg.TurnsInFlight),
		takeWake:      make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bgCtx, s.bgCancel = context.WithCancel(s.ctx)
	go s.publisher()
	return s, nil
}

// Start re-publishes the schedules missing for the snapshot's pending
// alarms, then starts taking fires for rt.
func (s *Service) Start(ctx context.Context, rt *objects.Runtime) error {
	s.rt = rt
	// A page at a time: memory stays bounded however many alarms wait,
	// and the publisher checks each page in batches while the next is
	// read.
	var cursor projector.AlarmCursor
	pending := 0
	for {
		fires, next, err := s.alarmPage(cursor, publishBatchMax)
		if err != nil {
			return fmt.Errorf("alarms: start: %w", err)
		}
		for _, f := range fires {
			if !s.enqueue(ctx, job{kind: jobEnsure, fire: f}) {
				return fmt.Errorf("alarms: start: %w", errors.Join(ctx.Err(), errors.New("service closed")))
			}
		}
		pending += len(fires)
		if next == (projector.AlarmCursor{}) {
			break
		}
		cursor = next
	}
	s.logger.Info("pending alarms queued for a check", "alarms", pending)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return errors.New("alarms: start: service closed")
	}
	s.mu.firing = true
	for shard := range s.log.Shards() {
		c, err := s.log.ConsumeFires(ctx, shard, s.onFire)
		if err != nil {
			return fmt.Errorf("alarms: start: %w", err)
		}
		s.mu.consumers = append(s.mu.consumers, c)
	}
	s.bg.Add(2)
	go s.takeovers()
	go s.outboxStart()
	if s.cfg.SweepInterval > 0 {
		s.bg.Add(1)
		go s.sweep()
	}
	return nil
}

// StopFires stops taking fires and waits for the Alarm turns in flight.
// Call it before closing the runtime; fires not yet acknowledged are
// delivered again later.
func (s *Service) StopFires(ctx context.Context) error {
	s.mu.Lock()
	consumers := s.mu.consumers
	s.mu.consumers = nil
	s.mu.firing = false
	s.mu.Unlock()
	s.bgCancel()
	s.bg.Wait()
	var errs []error
	for _, c := range consumers {
		errs = append(errs, c.Stop(ctx))
	}
	done := make(chan struct{})
	go func() { s.turns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
		errs = append(errs, fmt.Errorf("alarms: stop fires: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// Close stops taking fires, publishes the schedule changes already queued
// and stops. Close the runtime before it, so that every acknowledged alarm
// change is queued; a change reported after Close is published again on
// the next start.
func (s *Service) Close(ctx context.Context) error {
	err := s.StopFires(ctx)
	s.mu.Lock()
	already := s.mu.closed
	s.mu.closed = true
	s.mu.Unlock()
	if !already {
		close(s.stopPublisher)
	}
	select {
	case <-s.publisherDone:
	case <-ctx.Done():
		s.cancel()
		<-s.publisherDone
		err = errors.Join(err, fmt.Errorf("alarms: close: %w", ctx.Err()))
	}
	s.cancel()
	return err
}

// AlarmsCommitted implements objects.AlarmScheduler.
func (s *Service) AlarmsCommitted(ref objects.Ref, version uint64, changes []objects.AlarmChange) {
	for _, c := range changes {
		f := log.Fire{Class: ref.Class, ID: ref.ID, Name: c.Name}
		if c.Deleted && !c.At.IsZero() && !c.At.After(time.Now()) {
			// Already due: its schedule has fired (or a fire is on its
			// way and will be dropped as stale). Nothing to purge; this
			// is the common case of an alarm cleared by its own turn.
			continue
		}
		j := job{kind: jobDelete, fire: f}
		if !c.Deleted {
			j.kind, j.fire.At = jobSet, c.At.UnixNano()
			j.msgID = fmt.Sprintf("alarm.%s.%s.%d.%x", ref.Class, ref.ID, version, c.Name)
		}
		if !s.enqueue(s.ctx, j) {
			s.logger.Warn("alarm change not published: service closed; it is re-published on the next start", "class", ref.Class, "id", ref.ID, "alarm", c.Name)
		}
	}
}

// AlarmsLoaded implements objects.AlarmScheduler.
func (s *Service) AlarmsLoaded(ref objects.Ref, version uint64, pending map[string]time.Time) {
	for name, at := range pending {
		s.enqueue(s.ctx, job{kind: jobEnsure, version: version, fire: log.Fire{Class: ref.Class, ID: ref.ID, Name: name, At: at.UnixNano()}})
	}
}

// superseded reports whether an ensure job's alarm has changed since it
// was seen pending, as far as the snapshot can tell, and the version it
// was seen at: the job's, or for a job without one (start, sweep) the
// snapshot's.
func (s *Service) superseded(j job) (seenAt uint64, skip bool, err error) {
	meta, err := s.proj.Meta(j.fire.Class, j.fire.ID)
	if err != nil {
		return 0, false, err
	}
	seenAt = j.version
	if seenAt == 0 {
		seenAt = meta.Version
	}
	if meta.Version < seenAt {
		return seenAt, false, nil // the snapshot is behind what the activation saw
	}
	cur, err := s.proj.Alarms(j.fire.Class, j.fire.ID)
	if err != nil {
		return 0, false, err
	}
	at, ok := cur[j.fire.Name]
	return seenAt, !ok || at != j.fire.At, nil
}

func (s *Service) enqueue(ctx context.Context, j job) bool {
	select {
	case <-s.stopPublisher:
		return false
	default:
	}
	select {
	case s.queue <- j:
		return true
	case <-s.stopPublisher:
		return false
	case <-ctx.Done():
		return false
	}
}

// publisher is the one goroutine that writes schedules, in queue order, so
// an object's set-then-delete never lands as delete-then-set. It takes
// whatever has queued (up to publishBatchMax) and pipelines runs of
// schedules.
func (s *Service) publisher() {
	defer close(s.publisherDone)
	batch := make([]job, 0, publishBatchMax)
	for {
		select {
		case j := <-s.queue:
			batch = s.fill(append(batch[:0], j))
			s.publishBatch(batch)
		case <-s.stopPublisher:
			for {
				batch = s.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.publishBatch(batch)
			}
		}
	}
}

// publishBatchMax bounds the schedules in flight at once.
const publishBatchMax = 512

func (s *Service) fill(batch []job) []job {
	for len(batch) < publishBatchMax {
		select {
		case j := <-s.queue:
			batch = append(batch, j)
		default:
			return batch
		}
	}
	return batch
}

// publishBatch publishes runs of consecutive schedules as batches and
// checks runs of consecutive ensures with batched reads; purges go one at a
// time, after everything before them is stored.
func (s *Service) publishBatch(batch []job) {
	var run []job
	flush := func() {
		switch {
		case len(run) == 0:
		case run[0].kind == jobSet:
			s.setMany(run)
		default:
			s.ensureMany(run)
		}
		run = run[:0]
	}
	for _, j := range batch {
		if j.kind == jobDelete {
			flush()
			s.publish(j)
			continue
		}
		if len(run) > 0 && run[0].kind != j.kind {
			flush()
		}
		run = append(run, j)
	}
	flush()
}

// alarmKey names one alarm of one object.
type alarmKey struct {
	class string
	id    log.ID
	name  string
}

func keyOf(f log.Fire) alarmKey { return alarmKey{f.Class, f.ID, f.Name} }

// setMany publishes a run of schedules as batches; one that fails is
// published again alone, with retries.
func (s *Service) setMany(run []job) {
	// One schedule per alarm in a batch: the last set wins anyway.
	last := make(map[alarmKey]int, len(run))
	for i, j := range run {
		last[keyOf(j.fire)] = i
	}
	kept := make([]job, 0, len(last))
	for i, j := range run {
		if last[keyOf(j.fire)] == i {
			kept = append(kept, j)
		}
	}
	failed, _ := s.scheduleMany(kept)
	for _, j := range failed {
		s.publish(j) // again, alone, with retries
	}
}

// scheduleMany publishes the schedules of jobs (or the fires themselves,
// for alarms already due) as batches, and returns the jobs it could not
// publish with the first error.
func (s *Service) scheduleMany(jobs []job) ([]job, error) {
	items := make([]log.ScheduleItem, len(jobs))
	now := time.Now().UnixNano()
	for i, j := range jobs {
		items[i] = log.ScheduleItem{Fire: j.fire, MsgID: j.msgID, Now: j.fire.At <= now}
	}
	var failed []job
	var first error
	for i, err := range s.log.ScheduleMany(s.ctx, items) {
		if err != nil {
			failed, first = append(failed, jobs[i]), cmp.Or(first, err)
			continue
		}
		s.published.Add(1)
		if jobs[i].kind == jobEnsure {
			s.repaired.Add(1)
		}
	}
	return failed, first
}

// ensureMany checks a run of pending alarms with batched reads and
// publishes the schedules found missing as batches. One whose check or
// publish fails is checked again alone, with retries.
func (s *Service) ensureMany(run []job) {
	seen := make(map[alarmKey]bool, len(run))
	jobs := make([]job, 0, len(run))
	for _, j := range run {
		if !seen[keyOf(j.fire)] {
			seen[keyOf(j.fire)] = true
			jobs = append(jobs, j)
		}
	}
	failed, _ := s.ensure(jobs)
	for _, j := range failed {
		s.publish(j)
	}
}

// ensure checks ensure jobs of distinct alarms and publishes the
// schedules that are missing. It returns the jobs whose check or publish
// failed, with the first error.
//
// A job may run long after it was queued. If the snapshot has reached the
// version the job was seen at and no longer holds the alarm at this time,
// the alarm completed or changed meanwhile and needs nothing. If the
// timer stream holds the alarm at another due time, the job's view may be
// the old one (a snapshot behind the log: publishing would put the old
// time back over the new): it is published only if the object's last
// event in the log is still the version the alarm was seen at.
func (s *Service) ensure(jobs []job) ([]job, error) {
	var failed []job
	var first error
	fail := func(j job, err error) {
		failed, first = append(failed, j), cmp.Or(first, err)
	}
	check := make([]job, 0, len(jobs))
	for _, j := range jobs {
		seenAt, skip, err := s.superseded(j)
		switch {
		case err != nil:
			fail(j, err)
		case !skip:
			j.version = seenAt
			check = append(check, j)
		}
	}
	if len(check) == 0 {
		return failed, first
	}
	fires := make([]log.Fire, len(check))
	for i, j := range check {
		fires[i] = j.fire
	}
	states, err := s.log.Schedules(s.ctx, fires)
	if err != nil {
		for _, j := range check {
			fail(j, err)
		}
		return failed, first
	}
	var repair []job
	for i, j := range check {
		switch states[i] {
		case log.Unscheduled:
			repair = append(repair, j)
		case log.ScheduledOther:
			switch current, err := s.current(j); {
			case err != nil:
				fail(j, err)
			case current:
				repair = append(repair, j)
			}
		}
	}
	more, err := s.scheduleMany(repair)
	for _, j := range more {
		fail(j, err)
	}
	return failed, first
}

// current reports whether the object's last event in the log is the
// version j's alarm was seen at.
func (s *Service) current(j job) (bool, error) {
	last, err := s.log.Last(s.ctx, j.fire.Class, j.fire.ID)
	if err != nil {
		return false, err
	}
	return last.Event.Version == j.version, nil
}

// publishAttempts bounds the tries of one schedule change; a change that
// still fails is repaired by the next activation or start.
const publishAttempts = 3

func (s *Service) publish(j job) {
	var err error
	sent := false
	for attempt := range publishAttempts {
		if s.ctx.Err() != nil {
			err = s.ctx.Err()
			break
		}
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			case <-s.ctx.Done():
			}
		}
		switch j.kind {
		case jobSet:
			err = s.schedule(j.fire, j.msgID)
			sent = err == nil
		case jobDelete:
			err = s.log.Unschedule(s.ctx, j.fire.Class, j.fire.ID, j.fire.Name)
		case jobEnsure:
			_, err = s.ensure([]job{j})
		}
		if err == nil || errors.Is(err, log.ErrClosed) {
			break
		}
	}
	if sent {
		s.published.Add(1)
	}
	if err != nil {
		s.logger.Warn("alarm schedule not published; repaired on the object's next activation or the next start",
			"class", j.fire.Class, "id", j.fire.ID, "alarm", j.fire.Name, "err", err)
	}
}

// schedule publishes f's schedule, or f itself to the fire subject when it
// is already due (the scheduler would add up to a tick). A schedule left
// behind by an earlier time of the same alarm fires later and is dropped
// as stale.
func (s *Service) schedule(f log.Fire, msgID string) error {
	if f.At <= time.Now().UnixNano() {
		return s.log.FireNow(s.ctx, f, msgID)
	}
	return s.log.Schedule(s.ctx, f, msgID)
}
