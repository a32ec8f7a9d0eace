package log

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/strata-objects/strata/internal/budget"
)

// Node-wide group commit (DESIGN.md).
//
// With fsync before every ack, one publish costs one fsync. So Append does
// not publish: it queues the event for its shard's committer and waits.
// The committer sends whatever has queued while its previous publish was
// out: one event as an ordinary publish, several as one atomic batch,
// which the server stores under one lock and fsyncs once. (On one node it
// first stages the batch in a file store of its own: a fixed cost of
// about 4 ms per batch on the machine measured, against about 0.4 ms per
// single publish, so batches pay off from about ten messages; see
// BenchmarkRawAtomicBatchSizes.)
//
// Invariants:
//  1. One committer goroutine per shard publishes to the shard's log
//     stream, with at most one publish (one message or one batch) in
//     flight. Queued appends wait in a bounded channel.
//  2. A batch holds at most one append per subject (and per message id),
//     and the appends of one subject go out in the order they were queued.
//     The server refuses a batch that writes a subject twice under an
//     expectation (10164), and an object's order is its history.
//  3. Every message keeps its own Nats-Expected-Last-Subject-Sequence and
//     Nats-Msg-Id: fencing is per object even inside a batch.
//  4. A committed batch's messages have consecutive stream sequences
//     ending at the ack's (the server commits a batch under one lock on one
//     node and as one proposal in a cluster).
//  5. Every queued append is completed exactly once, on its buffered done
//     channel; an append whose caller has already given up is not sent.
//
// A batch is all or nothing and the server's error does not say which
// message failed. So after a conflict, a duplicate, or a failure whose
// outcome is unknown (timeout, incomplete batch), the committer reads each
// message's subject back: if its last message (or, when others wrote on
// top, its first message after the expectation) is byte-identical to ours,
// ours landed earlier (a retry whose first attempt was stored; the server
// answers that with 10071 on one node and a duplicate ack on R3) and the
// append completes with that sequence; if the subject still ends at the
// expectation, the append goes into the retry; otherwise another writer
// got there first and that append alone fails with ErrConflict. The rest
// go again; if the server refuses them a second time with every subject
// still at its expectation, they go one by one, so that the append it
// refuses (a message id stored with other bytes) fails alone. One fenced
// object never fails the others.

const (
	// appendQueueLen bounds the appends waiting for one committer; Append
	// blocks (until its context ends) when it is full.
	appendQueueLen = 4096
	// defaultAppendQueueBytesMax is Config.AppendQueueBytesMax's default.
	defaultAppendQueueBytesMax = 64 << 20
	// resolveRoundsMax bounds the publishes of one batch whose failure
	// left every subject at its expectation (a lost answer, an abandoned
	// batch); after that the undecided appends fail with the cause.
	resolveRoundsMax = 3
)

// Header names JetStream reads on publish (atomic batches have no nats.go
// constants yet).
const (
	hdrMsgID       = nats.MsgIdHdr
	hdrExpectSubj  = nats.ExpectedLastSubjSeqHdr
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes the write path branches on.
const (
	errCodeWrongLastSeq      = 10071 // expectation failed (one replica); also a retried publish on one node
	errCodeWrongLastSeqConst = 10164 // expectation failed (replicated stream, or a subject twice in a batch)
	errCodeDupInProcess      = 10158 // the same message id is being stored right now
	errCodeBatchIncomplete   = 10176 // the server lost or abandoned part of the batch
	errCodeBatchDuplicate    = 10201 // a message id of the batch was already stored
)

// errUnknownOutcome marks a publish whose answer did not say what was
// stored: the subjects must be read back.
var errUnknownOutcome = errors.New("outcome unknown")

// duplicateAck is the answer to a single publish whose message id the
// stream already holds, at seq: on R3 the answer to a retry whose first
// attempt landed, but also to another event of the same object and
// version.
type duplicateAck struct{ seq uint64 }

func (d *duplicateAck) Error() string { return fmt.Sprintf("duplicate of sequence %d", d.seq) }

type pendingAppend struct {
	ctx    context.Context // the caller's: gone callers' appends are not sent
	subj   string
	msgID  string
	data   []byte
	expect uint64
	done   chan appendResult // buffered: the committer never blocks on a caller
	// background: no client waits on this append (AppendBackground).
	background bool
}

type appendResult struct {
	seq uint64
	err error
}

// Append appends e to its object's subject if the subject's last message
// is still at stream sequence expectSeq (0: the object has no events yet).
// It returns the stored record, ErrConflict if another writer appended
// first, ErrTooLarge, ErrClosed, or the context's error (then the event
// may or may not have been stored: appending it again with the same
// expectation answers which, as a retry of a landed append returns the
// original sequence).
func (l *Log) Append(ctx context.Context, e *Event, expectSeq uint64) (Record, error) {
	return l.append(ctx, e, expectSeq, false)
}

// AppendBackground is Append for an event no client is waiting on, such
// as a durable message's turn on its target. While the shard has other
// appends queued, the committer holds it back, for up to backgroundWait,
// and sends what it held together (an atomic batch once the group holds
// pipelineBelow appends): the appends clients wait on go first, and the
// held ones share an fsync. On an idle shard it goes at once, as Append.
func (l *Log) AppendBackground(ctx context.Context, e *Event, expectSeq uint64) (Record, error) {
	return l.append(ctx, e, expectSeq, true)
}

func (l *Log) append(ctx context.Context, e *Event, expectSeq uint64, background bool) (Record, error) {
	data, err := Encode(e)
	if err != nil {
		return Record{}, fmt.Errorf("log: append: %w", err)
	}
	if len(data) > l.maxEvent {
		return Record{}, fmt.Errorf("log: append %s %s v%d: %d bytes, at most %d: %w", e.Class, e.ID, e.Version, len(data), l.maxEvent, ErrTooLarge)
	}
	shard := l.ShardOf(e.ID)
	subj := ObjectSubject(shard, e.Class, e.ID)
	p := &pendingAppend{
		ctx:        ctx,
		subj:       subj,
		msgID:      messageID(subj, e.Class, e.Version),
		data:       data,
		expect:     expectSeq,
		done:       make(chan appendResult, 1),
		background: background,
	}
	c := l.committers[shard]
	if l.closed() {
		return Record{}, ErrClosed
	}
	if c.tryInline(p) {
		r := <-p.done
		if r.err != nil {
			return Record{}, r.err
		}
		return Record{Shard: shard, Seq: r.seq, Data: data, Event: e}, nil
	}
	// The queue is bounded in bytes as well as in appends; the bytes come
	// back once the caller has its answer (or gives up: the committer
	// drops the appends of callers that are gone).
	switch err := c.queued.Take(ctx, len(data), l.stopping); {
	case errors.Is(err, budget.ErrStopped):
		return Record{}, ErrClosed
	case err != nil:
		return Record{}, fmt.Errorf("log: append to %s: %w", p.subj, err)
	}
	defer c.queued.Give(len(data))
	select {
	case c.in <- p:
	case <-l.stopping:
		return Record{}, ErrClosed
	case <-ctx.Done():
		return Record{}, fmt.Errorf("log: append to %s: %w", p.subj, ctx.Err())
	}
	var r appendResult
	select {
	case r = <-p.done:
	case <-c.done:
		// The committer has exited: it answered p before, or never saw it.
		select {
		case r = <-p.done:
		default:
			return Record{}, ErrClosed
		}
	case <-ctx.Done():
		return Record{}, fmt.Errorf("log: append to %s: %w", p.subj, ctx.Err())
	}
	if r.err != nil {
		return Record{}, r.err
	}
	return Record{Shard: shard, Seq: r.seq, Data: data, Event: e}, nil
}

// messageID is the Nats-Msg-Id of an object's version: the object's
// class and id (the subject's last two tokens) and the version,
// "<class>.<hex>.<version>". The class is part of it because the same id
// is reachable under every class: without it, any object could take the
// message ids (and so deny the writes, as duplicates) of another class's
// object with the same id. The shard is not needed: the duplicate window
// is per stream, and a stream is one shard's.
func messageID(subj, class string, version uint64) string {
	tail := subj[len(subj)-len(class)-1-2*len(ID{}):]
	var b strings.Builder
	b.Grow(len(tail) + 1 + 20)
	b.WriteString(tail)
	b.WriteByte('.')
	var v [20]byte
	b.Write(strconv.AppendUint(v[:0], version, 10))
	return b.String()
}

// committer owns the publishing of one shard (invariant 1).
type committer struct {
	l      *Log
	shard  int
	stream string
	in     chan *pendingAppend
	queued *budget.Bytes // bytes of the appends queued (Config.AppendQueueBytesMax)
	done   chan struct{}
	// queue holds appends taken from in and not yet sent, in arrival
	// order: ones that did not fit the last batch or waited behind an
	// earlier append of their subject. At most queueMax.
	queue    []*pendingAppend
	queueMax int
	// background holds the background appends taken from in and not yet
	// moved to queue (releaseBackground), in arrival order;
	// backgroundSince is when the oldest arrived. queue and background hold at most queueMax
	// together.
	background      []*pendingAppend
	backgroundSince time.Time
	seen            map[string]struct{} // scratch for next
	// inFlight is held by whoever has the shard's one publish out
	// (invariant 1): the committer goroutine, or an appender publishing
	// inline (tryInline).
	inFlight chan struct{}
	// idle is true while the committer waits for work with nothing
	// queued.
	idle atomic.Bool
	// held counts the appends the committer holds while it waits for an
	// inline publish to finish (tests read it).
	held atomic.Int64
	// replies receives the acks of pipelined publishes, on one
	// subscription for the committer's life: a subscription per pipeline
	// made the server rebuild its subject match cache on every group.
	// Reply subjects are inbox.<pipeline>.<index>; pipeline counts the
	// pipelines sent (under inFlight), so that the late acks of one that
	// gave up are told apart and dropped.
	inbox    string
	replies  chan *nats.Msg
	pipeline uint64
	timeout  *time.Timer // a pipelined publish's deadline, reused
	// pubMsg is the message a pipelined publish fills for each append,
	// reused under inFlight: nats.go's PublishMsg encodes it and keeps
	// nothing of it, so a message, its header map and their slices are
	// not allocated per append.
	pubMsg nats.Msg
}

// tryInline publishes p on the caller's goroutine when the shard is idle:
// nothing queued, nothing in flight. A lone append then costs what a raw
// publish costs, without two goroutine hand-offs; appends that arrive
// meanwhile queue for the committer as usual and go out as the next group
// when this publish is answered.
func (c *committer) tryInline(p *pendingAppend) bool {
	if !c.idle.Load() || len(c.in) > 0 {
		return false
	}
	select {
	case c.inFlight <- struct{}{}:
	default:
		return false
	}
	defer func() { <-c.inFlight }()
	if err := p.ctx.Err(); err != nil {
		p.done <- appendResult{err: fmt.Errorf("log: append to %s: %w", p.subj, err)}
		return true
	}
	c.commit([]*pendingAppend{p})
	return true
}

func newCommitter(l *Log, shard int) (*committer, error) {
	c := &committer{
		l: l, shard: shard, stream: LogStream(shard),
		in:       make(chan *pendingAppend, appendQueueLen),
		queued:   budget.New(l.cfg.AppendQueueBytesMax),
		done:     make(chan struct{}),
		inFlight: make(chan struct{}, 1),
		queueMax: 2 * l.cfg.BatchMessagesMax,
		seen:     make(map[string]struct{}),
		inbox:    l.nc.NewRespInbox(),
		// Room for one pipeline's acks and the late ones of others.
		replies: make(chan *nats.Msg, 4*pipelineBelow),
	}
	// Unsubscribed with the connection (Close drains it).
	if _, err := l.nc.ChanSubscribe(c.inbox+".*.*", c.replies); err != nil {
		return nil, fmt.Errorf("log: shard %d: subscribe to publish acks: %w", shard, err)
	}
	return c, nil
}

func (c *committer) run() {
	defer close(c.done)
	defer c.failQueued()
	// On the way out, wait for an inline publish to finish (Close cancels
	// l.ctx if it takes too long) and keep the token, so no appender
	// publishes after Close.
	defer func() { c.inFlight <- struct{}{} }()
	for {
		if len(c.queue) == 0 && len(c.background) == 0 {
			c.idle.Store(true)
			select {
			case p := <-c.in:
				c.idle.Store(false)
				c.take(p)
			case <-c.l.stopping:
				c.idle.Store(false)
				return
			}
		}
		// Wait out an inline publish; what queues meanwhile joins this
		// group.
		c.held.Store(int64(len(c.queue)))
		c.inFlight <- struct{}{}
		c.held.Store(0)
		// Once Close has begun nothing more is sent, even if the select
		// above took an append in the same instant.
		if c.l.closed() {
			<-c.inFlight
			return
		}
	fill:
		for len(c.queue)+len(c.background) < c.queueMax {
			select {
			case p := <-c.in:
				c.take(p)
			default:
				break fill
			}
		}
		c.releaseBackground()
		if batch := c.next(); len(batch) > 0 {
			c.commit(batch)
		}
		<-c.inFlight
	}
}

// backgroundBatch and backgroundWait bound how long the committer holds
// background appends while others are queued: until it holds this many
// (an atomic batch of them costs about what a few single publishes cost,
// docs/benchmarks.md), or the oldest has waited this long.
const (
	backgroundBatch = 2 * pipelineBelow
	backgroundWait  = 20 * time.Millisecond
)

// take adds p, just received, to the queue or to the background appends.
func (c *committer) take(p *pendingAppend) {
	if !p.background {
		c.queue = append(c.queue, p)
		return
	}
	if len(c.background) == 0 {
		c.backgroundSince = time.Now()
	}
	c.background = append(c.background, p)
}

// releaseBackground moves the background appends to the end of the queue
// when nothing else is queued, when there are backgroundBatch of them, or
// when the oldest has waited backgroundWait. Nothing is reordered within
// an object: an object has one append out at a time.
func (c *committer) releaseBackground() {
	if len(c.background) == 0 {
		return
	}
	wait := backgroundWait
	if h := c.l.cfg.hooks; h != nil && h.backgroundWait != 0 {
		wait = h.backgroundWait
	}
	if len(c.queue) > 0 && len(c.background) < backgroundBatch && time.Since(c.backgroundSince) < wait {
		return
	}
	c.l.stats.background.Add(uint64(len(c.background)))
	c.queue = append(c.queue, c.background...)
	clear(c.background)
	c.background = c.background[:0]
}

// next takes the next batch off the queue (invariant 2).
func (c *committer) next() []*pendingAppend {
	var batch []*pendingAppend
	size := 0
	clear(c.seen)
	rest := c.queue[:0]
	for _, p := range c.queue {
		if err := p.ctx.Err(); err != nil {
			p.done <- appendResult{err: fmt.Errorf("log: append to %s: %w", p.subj, err)}
			continue
		}
		_, subjTaken := c.seen[p.subj]
		_, idTaken := c.seen[p.msgID]
		c.seen[p.subj], c.seen[p.msgID] = struct{}{}, struct{}{}
		fits := len(batch) == 0 || len(batch) < c.l.cfg.BatchMessagesMax && size+len(p.data) <= c.l.cfg.BatchBytesMax
		if subjTaken || idTaken || !fits {
			rest = append(rest, p)
			continue
		}
		batch = append(batch, p)
		size += len(p.data)
	}
	clear(c.queue[len(rest):])
	c.queue = rest
	return batch
}

// failQueued answers every append not yet sent with ErrClosed.
func (c *committer) failQueued() {
	for _, p := range append(c.queue, c.background...) {
		p.done <- appendResult{err: ErrClosed}
	}
	c.queue, c.background = nil, nil
	for {
		select {
		case p := <-c.in:
			p.done <- appendResult{err: ErrClosed}
		default:
			return
		}
	}
}

// commit publishes batch and completes every append in it, retrying the
// ones a failure leaves undecided.
func (c *committer) commit(batch []*pendingAppend) {
	var start time.Time
	if c.l.cfg.OnCommit != nil {
		start = time.Now()
	}
	for round := 1; len(batch) > 0; round++ {
		seqs, err := c.publish(batch)
		switch {
		case err == nil:
			bytes := 0
			for i, p := range batch {
				c.l.stats.appends.Add(1)
				bytes += len(p.data)
				p.done <- appendResult{seq: seqs[i]}
			}
			if c.l.cfg.OnCommit != nil {
				c.l.cfg.OnCommit(c.shard, len(batch), bytes, time.Since(start))
			}
			return
		case c.l.ctx.Err() != nil: // Close gave up waiting for us
			c.failAll(batch, fmt.Errorf("%w (publish abandoned: %w)", ErrClosed, err))
			return
		case !resolvable(err):
			c.failAll(batch, err)
			return
		}
		if inProcess(err) {
			// Another writer's message of the same object and version is
			// being stored right now: read back once it is, so the append
			// fails as the conflict it is (its turn is fenced and can run
			// again), not as undecided after every round ran into it.
			select {
			case <-c.l.ctx.Done():
			case <-time.After(inProcessWait):
			}
		}
		batch = c.resolve(batch, err, round >= resolveRoundsMax)
		if len(batch) > 1 && round >= 2 {
			// Refused twice with every remaining subject still at its
			// expectation: the batch holds an append the server refuses
			// for a reason of its own (say a message id stored with other
			// bytes). One by one, only that append fails.
			for i := range batch {
				c.commit(batch[i : i+1])
			}
			return
		}
	}
}

// inProcessWait is the pause after a "duplicate message id is in process"
// refusal: a replicated commit takes milliseconds.
const inProcessWait = 20 * time.Millisecond

func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDupInProcess
}

func (c *committer) failAll(batch []*pendingAppend, err error) {
	for _, p := range batch {
		p.done <- appendResult{err: fmt.Errorf("log: append to %s: %w", p.subj, err)}
	}
}

// resolvable reports whether a failed publish may have been refused
// because of one message only, or may have been stored: then reading the
// subjects back decides each append.
func resolvable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeWrongLastSeq, errCodeWrongLastSeqConst, errCodeDupInProcess, errCodeBatchIncomplete, errCodeBatchDuplicate:
			return true
		}
		return false
	}
	var dup *duplicateAck
	return errors.As(err, &dup) || errors.Is(err, errUnknownOutcome) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// resolve settles each append of a failed publish by reading its subject's
// last message, and returns the ones to try again. giveUp fails the
// undecided ones with cause instead.
func (c *committer) resolve(batch []*pendingAppend, cause error, giveUp bool) []*pendingAppend {
	subjs := make([]string, len(batch))
	for i, p := range batch {
		subjs[i] = p.subj
	}
	lasts, errs := c.l.lastMsgs(c.l.ctx, c.stream, subjs)
	var dup *duplicateAck // only a single publish is answered with one
	var retry []*pendingAppend
	for i, p := range batch {
		last, err := lasts[i], errs[i]
		switch {
		case err != nil && !errors.Is(err, ErrNotFound):
			p.done <- appendResult{err: fmt.Errorf("log: append to %s: publish failed (%w), then reading the subject back failed: %w", p.subj, cause, err)}
		case err == nil && bytes.Equal(last.data, p.data):
			c.l.stats.duplicates.Add(1)
			c.l.stats.appends.Add(1)
			p.done <- appendResult{seq: last.seq}
		case last.seq != p.expect: // a missing subject is at 0
			// Someone wrote after our expectation. It may be that ours
			// landed (its answer was lost) and another writer, having read
			// it, wrote on top before this read: then the message right
			// after the expectation is ours, and it must not be reported
			// as a conflict, or the caller would run the turn again.
			first, ferr := c.l.firstAfter(c.l.ctx, c.stream, p.subj, p.expect)
			switch {
			case ferr == nil && bytes.Equal(first.data, p.data):
				c.l.stats.duplicates.Add(1)
				c.l.stats.appends.Add(1)
				p.done <- appendResult{seq: first.seq}
			case ferr != nil && !errors.Is(ferr, ErrNotFound):
				p.done <- appendResult{err: fmt.Errorf("log: append to %s: publish failed (%w), then reading the subject back failed: %w", p.subj, cause, ferr)}
			default:
				c.l.stats.conflicts.Add(1)
				p.done <- appendResult{err: fmt.Errorf("log: append to %s: expected last sequence %d, the subject is at %d: %w", p.subj, p.expect, last.seq, ErrConflict)}
			}
		case errors.As(cause, &dup):
			// Our version's message id belongs to other bytes: this
			// version of the object was written by another writer, so the
			// caller's view is as stale as after a sequence conflict.
			c.l.stats.conflicts.Add(1)
			p.done <- appendResult{err: fmt.Errorf("log: append to %s: version %s is stored at sequence %d with other content: %w", p.subj, p.msgID, dup.seq, ErrConflict)}
		case giveUp:
			p.done <- appendResult{err: fmt.Errorf("log: append to %s: %w", p.subj, cause)}
		default:
			retry = append(retry, p)
		}
	}
	c.l.cfg.Logger.Debug("log: resolved a failed publish", "shard", c.shard, "appends", len(batch), "retry", len(retry), "cause", cause)
	return retry
}

func message(p *pendingAppend) *nats.Msg {
	m := new(nats.Msg)
	fillMessage(m, p)
	return m
}

// fillMessage makes m p's publish: its subject, data, message id and
// expectation, and no reply. A header map m already has (of an earlier
// fillMessage) is reused; it holds nothing else.
func fillMessage(m *nats.Msg, p *pendingAppend) {
	if m.Header == nil {
		m.Header = nats.Header{hdrMsgID: make([]string, 1), hdrExpectSubj: make([]string, 1)}
	}
	m.Subject, m.Data, m.Reply = p.subj, p.data, ""
	m.Header[hdrMsgID][0] = p.msgID
	m.Header[hdrExpectSubj][0] = strconv.FormatUint(p.expect, 10)
}

// publish sends batch and returns each append's stream sequence.
func (c *committer) publish(batch []*pendingAppend) ([]uint64, error) {
	if h := c.l.cfg.hooks; h != nil && h.beforePublish != nil {
		h.beforePublish(c.l.ctx, c.shard, len(batch))
	}
	if len(batch) < pipelineBelow && (len(batch) > 1 || c.l.cfg.Replicas <= 1) {
		// On one replica a lone append goes this way too: on the
		// committer's standing reply subscription, its ack read by
		// decodeAck, it costs less than a JetStream client publish (a
		// context, a timer, a reply channel and a map entry per request,
		// and a JSON decode). A replicated stream's lone append keeps the
		// client's publish, which waits out a leader election's "no
		// responders" and tries again.
		return c.publishPipelined(batch)
	}
	ctx, cancel := context.WithTimeout(c.l.ctx, c.l.publishTimeout())
	defer cancel()
	if len(batch) == 1 {
		seq, err := c.publishOne(ctx, batch[0])
		return []uint64{seq}, err
	}
	return c.publishBatch(ctx, batch)
}

// publishTimeout bounds one publish attempt. On a replicated stream whose
// leader's node died, a publish in flight is lost without an answer (the
// followers ignore it) and every append of the shard waits behind it: a
// shorter attempt lets resolve (which asks the new leader) and the retry
// take over sooner. A publish that is only slow is resolved the same way:
// read back, found stored or sent again under the same message id.
func (l *Log) publishTimeout() time.Duration {
	if l.cfg.Replicas > 1 {
		return min(l.cfg.RequestTimeout, clusterPublishAttempt)
	}
	return l.cfg.RequestTimeout
}

// clusterPublishAttempt: see publishTimeout. Replicated commits take
// milliseconds; seconds mean the leader is gone.
const clusterPublishAttempt = 3 * time.Second

// pipelineBelow is the batch size under which single publishes, all sent
// before the first ack is awaited, beat one atomic batch. On one node an
// atomic batch costs about 4 ms whatever its size (the server stages it in a
// file store of its own), a pipelined publish about 0.3 ms, so below 16
// messages the pipeline wins (docs/benchmarks.md). Replicated streams stage
// batches in memory, where batching wins sooner.
const pipelineBelow = 16

// publishPipelined sends every append as its own publish without waiting
// in between, then collects the acks. Each is an ordinary conditional
// publish; if any fails, resolve settles all of them by reading back.
func (c *committer) publishPipelined(batch []*pendingAppend) ([]uint64, error) {
	c.l.stats.publishes.Add(uint64(len(batch)))
	// One timer for the committer's life, reset per publish (only the
	// holder of inFlight publishes): the attempt's deadline.
	if c.timeout == nil {
		c.timeout = time.NewTimer(c.l.publishTimeout())
	} else {
		c.timeout.Reset(c.l.publishTimeout())
	}
	defer c.timeout.Stop()
	c.pipeline++
	prefix := c.inbox + "." + strconv.FormatUint(c.pipeline, 10) + "."
	m := &c.pubMsg
	defer func() { m.Data = nil }() // do not hold the last event until the next publish
	for i, p := range batch {
		fillMessage(m, p)
		m.Reply = prefix + strconv.Itoa(i)
		if err := c.l.nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	seqs := make([]uint64, len(batch))
	var firstErr error
	for got := 0; got < len(batch); {
		select {
		case m := <-c.replies:
			if !strings.HasPrefix(m.Subject, prefix) {
				continue // a pipeline's that gave up on it
			}
			got++
			i, err := strconv.Atoi(m.Subject[len(prefix):])
			if err != nil || i < 0 || i >= len(batch) {
				return nil, fmt.Errorf("publish: unexpected reply subject %q", m.Subject)
			}
			var ack batchAck
			switch err := decodeAck(m.Data, &ack); {
			case err != nil:
				firstErr = cmp.Or(firstErr, fmt.Errorf("publish: bad ack %q: %w", m.Data, err))
			case ack.Error != nil:
				firstErr = cmp.Or(firstErr, fmt.Errorf("publish: %w", ack.Error))
			case ack.Duplicate && len(batch) == 1:
				// A lone publish's duplicate: only the bytes tell whether
				// the stored event is ours or another writer's of the same
				// version (resolve).
				firstErr = fmt.Errorf("publish: %w", &duplicateAck{seq: ack.Seq})
			case ack.Duplicate:
				// Not a duplicateAck: that verdict is about a lone publish,
				// and the others of this pipeline must not inherit it. But
				// resolvable: the others were stored or not each on its
				// own, and only reading back tells (a plain error here
				// failed every append of the pipeline, landed or not, for
				// one object's stale writer).
				firstErr = cmp.Or(firstErr, fmt.Errorf("publish %s: duplicate of sequence %d: %w", batch[i].subj, ack.Seq, errUnknownOutcome))
			default:
				seqs[i] = ack.Seq
			}
		case <-c.timeout.C:
			return nil, fmt.Errorf("publish: %w", context.DeadlineExceeded)
		case <-c.l.ctx.Done():
			return nil, fmt.Errorf("publish: %w", c.l.ctx.Err())
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return seqs, nil
}

func (c *committer) publishOne(ctx context.Context, p *pendingAppend) (uint64, error) {
	c.l.stats.publishes.Add(1)
	ack, err := c.l.js.PublishMsg(ctx, message(p))
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	if ack.Duplicate {
		// Its message id is stored, but only the bytes say whether the
		// stored event is ours or another writer's of the same version.
		return 0, fmt.Errorf("publish: %w", &duplicateAck{seq: ack.Sequence})
	}
	return ack.Sequence, nil
}

// batchAck is the server's answer to a batch commit: a PubAck with the
// batch id and size (which nats.go's PubAck does not carry).
type batchAck struct {
	Stream    string              `json:"stream"`
	Seq       uint64              `json:"seq"`
	Duplicate bool                `json:"duplicate"`
	Batch     string              `json:"batch"`
	Count     int                 `json:"count"`
	Error     *jetstream.APIError `json:"error"`
}

// publishBatch sends batch as one atomic batch. Staged messages go as
// plain publishes without a reply (an answer per message would cost a
// round trip each); the commit message is a request whose answer covers
// the whole batch.
func (c *committer) publishBatch(ctx context.Context, batch []*pendingAppend) ([]uint64, error) {
	n := len(batch)
	c.l.stats.batches.Add(1)
	c.l.stats.batched.Add(uint64(n))
	// A NUID is unique per process and time, and 22 characters: within
	// the server's 64. The server keys in-flight batches by it.
	id := nuid.Next()
	for i, p := range batch {
		m := message(p)
		m.Header[hdrBatchID] = []string{id}
		m.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if i < n-1 {
			if err := c.l.nc.PublishMsg(m); err != nil {
				return nil, fmt.Errorf("batch %s: stage message %d of %d: %w", id, i+1, n, err)
			}
			continue
		}
		m.Header[hdrBatchCommit] = []string{"1"}
		resp, err := c.l.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("batch %s of %d: commit: %w", id, n, err)
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return nil, fmt.Errorf("batch %s of %d: ack %q: %w: %w", id, n, resp.Data, err, errUnknownOutcome)
		}
		if ack.Error != nil {
			return nil, fmt.Errorf("batch %s of %d: %w", id, n, ack.Error)
		}
		if ack.Batch != id || ack.Count != n || ack.Seq < uint64(n) {
			return nil, fmt.Errorf("batch %s of %d: ack %q: %w", id, n, resp.Data, errUnknownOutcome)
		}
		seqs := make([]uint64, n)
		for j := range seqs {
			seqs[j] = ack.Seq - uint64(n-1-j) // invariant 4
		}
		return seqs, nil
	}
	return nil, nil
}
