package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Reads use JetStream's direct get, batched: a request names a start
// sequence and a subject filter, the stream answers with up to readBatch
// messages and an end-of-batch status, and the reader continues after the
// last one. No consumer is created: a consumer per object would not scale
// in a cluster (each is replicated state), and a read is short-lived.
const (
	readBatch    = 256     // messages per direct get batch
	readBytesMax = 4 << 20 // payload per batch; the server stops after the message that crosses it
	// lastWindow bounds the last-message requests in flight at once when
	// resolving a batch, so their answers (up to one max payload each)
	// cannot overrun the subscription's buffer.
	lastWindow = 32
)

// Status codes of direct get answers.
const (
	statusEOB      = "204" // end of a batch: Nats-Num-Pending says how many more match
	statusNotFound = "404" // nothing at or after the requested position
)

type directGetRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
	// UpToSeq is ignored by nats-server 2.15 for next_by_subj batches (it
	// only bounds multi_last), so readers also stop at it themselves.
	UpToSeq uint64 `json:"up_to_seq,omitempty"`
	// StartTime asks for the first message stored at or after it.
	StartTime *time.Time `json:"start_time,omitempty"`
}

func directGetSubject(stream string) string { return "$JS.API.DIRECT.GET." + stream }

// storedMsg is one message as a direct get returns it.
type storedMsg struct {
	seq  uint64
	subj string
	data []byte
}

// parseDirect reads a direct get answer: a stored message, ErrNotFound,
// or an error naming what was asked (what).
func parseDirect(m *nats.Msg, what string) (storedMsg, error) {
	switch status := m.Header.Get("Status"); status {
	case "":
	case statusNotFound:
		return storedMsg{}, ErrNotFound
	default:
		return storedMsg{}, fmt.Errorf("log: direct get %s: status %s %s", what, status, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get(jsSequence), 10, 64)
	if err != nil || seq == 0 {
		return storedMsg{}, fmt.Errorf("log: direct get %s: bad %s header %q", what, jsSequence, m.Header.Get(jsSequence))
	}
	return storedMsg{seq: seq, subj: m.Header.Get(jsSubject), data: m.Data}, nil
}

// Headers a direct get adds to a stored message.
const (
	jsSequence   = "Nats-Sequence"
	jsSubject    = "Nats-Subject"
	jsNumPending = "Nats-Num-Pending"
)

// record decodes m and checks that the event belongs where it was stored:
// an event on another object's subject is as corrupt as one that does not
// decode.
func record(stream string, shard int, m storedMsg) (Record, error) {
	e, err := Decode(m.data)
	if err != nil {
		return Record{}, &CorruptError{Stream: stream, Seq: m.seq, Subject: m.subj, Err: err}
	}
	if want := ObjectSubject(shard, e.Class, e.ID); m.subj != want {
		return Record{}, &CorruptError{Stream: stream, Seq: m.seq, Subject: m.subj, Err: fmt.Errorf("%w: event of %s", ErrBadEvent, want)}
	}
	return Record{Shard: shard, Seq: m.seq, Data: m.data, Event: e}, nil
}

// directGet is one direct get, answered by any replica; what names the
// message in errors.
func (l *Log) directGet(ctx context.Context, stream string, get directGetRequest, what string) (storedMsg, error) {
	req, err := json.Marshal(get)
	if err != nil {
		return storedMsg{}, fmt.Errorf("log: %s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	inbox := l.nc.NewInbox()
	// A channel of its own, sized for the answers of a few attempts: a
	// SubscribeSync channel holds nats.go's default 65,536 pending
	// messages, half a megabyte allocated per get (per activation, whose
	// load reads the object's last event). An answer that finds it full
	// is dropped, and the get asks again after directGetAttempt.
	replies := make(chan *nats.Msg, directGetRepliesMax)
	sub, err := l.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return storedMsg{}, fmt.Errorf("log: %s: %w", what, err)
	}
	defer sub.Unsubscribe()
	attempt := time.NewTimer(directGetAttempt)
	defer attempt.Stop()
	for n := 0; ; n++ {
		if err := l.nc.PublishRequest(directGetSubject(stream), inbox+"."+strconv.Itoa(n), req); err != nil {
			return storedMsg{}, fmt.Errorf("log: %s: %w", what, err)
		}
		attempt.Reset(directGetAttempt) // no stale fire to drain since Go 1.23
		select {
		case resp := <-replies:
			if !noResponders(resp) {
				return parseDirect(resp, what)
			}
			if ctx.Err() != nil {
				return storedMsg{}, fmt.Errorf("log: %s: %w", what, nats.ErrNoResponders)
			}
			// Perhaps to an earlier request of this get: ask again.
			pause(ctx, noResponderRetry)
		case <-attempt.C:
			// Unanswered yet: the replica it went to may be cut off. Ask
			// again; an answer to any of the requests will do.
		case <-ctx.Done():
			return storedMsg{}, fmt.Errorf("log: %s: %w", what, ctx.Err())
		}
	}
}

// directGetRepliesMax is the channel a direct get's answers arrive on:
// one answer per attempt is expected, and directGetAttempt paces them.
const directGetRepliesMax = 16

// noResponders reports whether m is the server's "no responders" status
// (503 with no body), which nats.go's NextMsg turns into
// nats.ErrNoResponders and a channel subscription hands over as is.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == statusNoResponders
}

// statusNoResponders is the status of a request nobody subscribed to.
const statusNoResponders = "503"

// noResponderRetry paces the requests of a read that met "no responders"
// (the stream's replicas unreachable for a moment) until RequestTimeout.
const noResponderRetry = 100 * time.Millisecond

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// directGetAttempt is how long a direct get waits for an answer before it
// asks again. The request goes to one of the stream's replicas (they
// answer as a queue group); one cut off silently swallows it until the
// route to it closes (about 4 s), and the reader used to wait the whole
// RequestTimeout for it (issue 22: activations on the majority side
// stalled through a partition). Asked again, another replica answers. The
// earlier requests stay answerable (the same inbox, one token each), so a
// replica that is only slow (a large message on a loaded machine) still
// counts.
const directGetAttempt = time.Second

// lastMsg is the last message on subj, or ErrNotFound.
func (l *Log) lastMsg(ctx context.Context, stream, subj string) (storedMsg, error) {
	return l.directGet(ctx, stream, directGetRequest{LastFor: subj}, "last of "+subj)
}

// lastMsgs is lastMsg for many subjects, pipelined: at most lastWindow
// requests in flight, answers matched by reply subject.
func (l *Log) lastMsgs(ctx context.Context, stream string, subjs []string) ([]storedMsg, []error) {
	if l.cfg.Replicas > 1 {
		return l.leaderLastMsgs(ctx, stream, subjs)
	}
	n := len(subjs)
	out, errs := make([]storedMsg, n), make([]error, n)
	if n == 1 {
		out[0], errs[0] = l.lastMsg(ctx, stream, subjs[0])
		return out, errs
	}
	fail := func(answered []bool, err error) ([]storedMsg, []error) {
		for i := range errs {
			if answered == nil || !answered[i] {
				errs[i] = err
			}
		}
		return out, errs
	}
	inbox := l.nc.NewInbox()
	sub, err := l.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return fail(nil, fmt.Errorf("log: read back %d subjects: %w", n, err))
	}
	defer sub.Unsubscribe()
	answered := make([]bool, n)
	sent, got := 0, 0
	for got < n {
		for ; sent < n && sent-got < lastWindow; sent++ {
			req, _ := json.Marshal(directGetRequest{LastFor: subjs[sent]})
			if err := l.nc.PublishRequest(directGetSubject(stream), inbox+"."+strconv.Itoa(sent), req); err != nil {
				return fail(answered, fmt.Errorf("log: read back %s: %w", subjs[sent], err))
			}
		}
		m, err := l.nextMsg(ctx, sub)
		if err != nil {
			return fail(answered, fmt.Errorf("log: read back %d subjects: %w", n, err))
		}
		i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= sent || answered[i] {
			continue // not an answer to this call
		}
		answered[i] = true
		got++
		out[i], errs[i] = parseDirect(m, subjs[i])
	}
	return out, errs
}

// firstAfter is the first message on subj after stream sequence seq, or
// ErrNotFound: on replicated streams the leader's answer, since a lagging
// replica may not have it yet.
func (l *Log) firstAfter(ctx context.Context, stream, subj string, seq uint64) (storedMsg, error) {
	get := directGetRequest{Seq: seq + 1, NextFor: subj}
	what := fmt.Sprintf("first of %s after %d", subj, seq)
	if l.cfg.Replicas > 1 {
		return l.leaderGet(ctx, stream, get, what)
	}
	return l.directGet(ctx, stream, get, what)
}

// firstSince is the first message on subj (a filter) stored at or after
// since, or ErrNotFound; on replicated streams the leader's answer.
func (l *Log) firstSince(ctx context.Context, stream, subj string, since time.Time) (storedMsg, error) {
	get := directGetRequest{StartTime: &since, NextFor: subj}
	what := fmt.Sprintf("first of %s since %s", subj, since.Format(time.RFC3339Nano))
	if l.cfg.Replicas > 1 {
		return l.leaderGet(ctx, stream, get, what)
	}
	return l.directGet(ctx, stream, get, what)
}

// nextMsg waits for the next message on sub for at most the request
// timeout. The timeout is per message, not per read: the caller's callback
// runs between messages and may take its time.
func (l *Log) nextMsg(ctx context.Context, sub *nats.Subscription) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	return sub.NextMsgWithContext(ctx)
}

// Last is the object's newest event, or ErrNotFound.
func (l *Log) Last(ctx context.Context, class string, id ID) (Record, error) {
	if l.closed() {
		return Record{}, ErrClosed
	}
	shard := l.ShardOf(id)
	m, err := l.currentLastMsg(ctx, LogStream(shard), ObjectSubject(shard, class, id))
	if err != nil {
		return Record{}, err
	}
	return record(LogStream(shard), shard, m)
}

// Reads of replicated streams. A direct get is answered by any replica,
// and a follower can lag the leader: by the last few appends in steady
// state, by up to a tenth of the stream while it catches up after a restart
// (it serves direct gets from 90% on). Such an answer is silently short: a
// history without its newest events, an activation loaded from the past.
// So Last asks the stream's leader (the non-direct message get API), and a
// read first learns from the leader how far it must go, then reads with
// direct gets (batched, any replica) and goes on from where a short answer
// stopped until it gets there.

// streamMsgGetResponse is the answer of $JS.API.STREAM.MSG.GET.
type streamMsgGetResponse struct {
	Message *struct {
		Subject string `json:"subject"`
		Seq     uint64 `json:"seq"`
		Data    []byte `json:"data"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// errCodeNoMessageFound is the message get API's "no message found".
const errCodeNoMessageFound = 10037

// currentLastMsg is the last message on subj as the stream's leader has
// it: on one node a direct get; on replicated streams the leader's answer,
// since a lagging replica would answer an older message.
func (l *Log) currentLastMsg(ctx context.Context, stream, subj string) (storedMsg, error) {
	if l.cfg.Replicas > 1 {
		return l.leaderLastMsg(ctx, stream, subj)
	}
	return l.lastMsg(ctx, stream, subj)
}

// leaderLastMsg is lastMsg, answered by the stream's leader.
func (l *Log) leaderLastMsg(ctx context.Context, stream, subj string) (storedMsg, error) {
	return l.leaderGet(ctx, stream, directGetRequest{LastFor: subj}, "last of "+subj)
}

// leaderGet is a message get answered by the stream's leader; what names
// the message in errors.
func (l *Log) leaderGet(ctx context.Context, stream string, get directGetRequest, what string) (storedMsg, error) {
	req, err := json.Marshal(get)
	if err != nil {
		return storedMsg{}, fmt.Errorf("log: %s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	// While the stream elects a leader (its leader's node died) the request
	// is dropped, or refused with 503 ("JetStream system temporarily
	// unavailable"): ask again, so that the answer comes soon after the
	// election rather than as an error (an activation failing to load).
	for {
		m, again, err := l.leaderGetOnce(ctx, stream, req, what)
		if !again || ctx.Err() != nil {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, err
		case <-time.After(lagRetryMin):
		}
	}
}

// leaderGetOnce is one attempt of leaderGet; again reports an error that
// a leader election explains.
func (l *Log) leaderGetOnce(ctx context.Context, stream string, req []byte, what string) (storedMsg, bool, error) {
	actx, acancel := context.WithTimeout(ctx, leaderGetAttempt)
	resp, err := l.nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET."+stream, req)
	acancel()
	if err != nil {
		return storedMsg{}, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders), fmt.Errorf("log: %s: %w", what, err)
	}
	var r streamMsgGetResponse
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return storedMsg{}, false, fmt.Errorf("log: %s: bad answer %q: %w", what, resp.Data, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrCode == errCodeNoMessageFound:
		return storedMsg{}, false, ErrNotFound
	case r.Error != nil:
		return storedMsg{}, r.Error.Code == 503, fmt.Errorf("log: %s: %d %s", what, r.Error.ErrCode, r.Error.Description)
	case r.Message == nil || r.Message.Seq == 0:
		return storedMsg{}, false, fmt.Errorf("log: %s: answer without a message: %q", what, resp.Data)
	}
	return storedMsg{seq: r.Message.Seq, subj: r.Message.Subject, data: r.Message.Data}, false, nil
}

// leaderLastMsgs is leaderLastMsg for many subjects, at most lastWindow at
// once. Resolving a failed publish needs it: a lagging replica's older last
// message would look like another writer's, and the append, stored in fact,
// would be reported fenced and its turn run again.
func (l *Log) leaderLastMsgs(ctx context.Context, stream string, subjs []string) ([]storedMsg, []error) {
	out, errs := make([]storedMsg, len(subjs)), make([]error, len(subjs))
	sem := make(chan struct{}, lastWindow)
	var wg sync.WaitGroup
	for i, subj := range subjs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = l.leaderLastMsg(ctx, stream, subj)
		}()
	}
	wg.Wait()
	return out, errs
}

// Bounds of a read's wait for lagging replicas.
const (
	// leaderGetAttempt bounds one try of a request to a stream's leader.
	leaderGetAttempt = time.Second
	lagRetryMin      = 10 * time.Millisecond
	lagRetryMax      = 200 * time.Millisecond
)

// Read calls fn with each of the object's events at stream sequence
// fromSeq or later, in order, up to the stream's last sequence when Read
// started (so a read of a busy object ends). An error from fn stops the
// read and is returned as is.
func (l *Log) Read(ctx context.Context, class string, id ID, fromSeq uint64, fn func(Record) error) error {
	shard := l.ShardOf(id)
	subj := ObjectSubject(shard, class, id)
	if l.cfg.Replicas <= 1 {
		return l.readRange(ctx, shard, subj, fromSeq, 0, fn, nil)
	}
	last, err := l.leaderLastMsg(ctx, LogStream(shard), subj)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("log: read %s: %w", subj, err)
	case last.seq < fromSeq:
		return nil
	}
	return l.readRange(ctx, shard, subj, fromSeq, last.seq, fn, nil)
}

// ReadObjectSince is Read from the first of the object's events stored at
// or after since (by the stream's clock): a look at one moment of an
// object's history without reading what came before (history's trace
// finds the event a call or a message caused with it).
func (l *Log) ReadObjectSince(ctx context.Context, class string, id ID, since time.Time, fn func(Record) error) error {
	shard := l.ShardOf(id)
	subj := ObjectSubject(shard, class, id)
	first, err := l.firstSince(ctx, LogStream(shard), subj, since)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("log: read %s since %s: %w", subj, since.Format(time.RFC3339Nano), err)
	}
	return l.Read(ctx, class, id, first.seq, fn)
}

// Scan calls fn with every event of shard's log from fromSeq, in order, up
// to the stream's last sequence when Scan started. An error from fn stops
// the scan and is returned as is.
func (l *Log) Scan(ctx context.Context, shard int, fromSeq uint64, fn func(Record) error) error {
	if err := l.checkShard(shard); err != nil {
		return err
	}
	return l.readRange(ctx, shard, fmt.Sprintf(logSubjectsFmt, shard), fromSeq, 0, fn, nil)
}

// ScanPast is Scan that goes on past messages that are not valid events
// (bytes that do not decode, an event stored on another object's subject):
// it calls bad with each instead of stopping. An error from fn or bad stops
// the scan and is returned as is. It is how a rebuild reports a forged or
// damaged message and still rebuilds every other object.
func (l *Log) ScanPast(ctx context.Context, shard int, fromSeq uint64, fn func(Record) error, bad func(*CorruptError) error) error {
	if err := l.checkShard(shard); err != nil {
		return err
	}
	return l.readRange(ctx, shard, fmt.Sprintf(logSubjectsFmt, shard), fromSeq, 0, fn, bad)
}

// readRange reads shard's log on filter from sequence from up to reach, a
// message known to be there, or (reach 0) up to the stream's last
// sequence as its leader knows it (which, for the whole shard, is a
// message there too). On a replicated stream a lagging replica's short
// answer is continued until the read gets there (ErrLagging past
// RequestTimeout).
// With bad, a message that is not a valid event goes to bad instead of
// ending the read.
func (l *Log) readRange(ctx context.Context, shard int, filter string, from, reach uint64, fn func(Record) error, bad func(*CorruptError) error) error {
	if l.closed() {
		return ErrClosed
	}
	upTo := reach
	if upTo == 0 {
		var err error
		if upTo, err = l.LastSeq(ctx, shard); err != nil {
			return fmt.Errorf("log: read %s: %w", filter, err)
		}
		if filter != fmt.Sprintf(logSubjectsFmt, shard) {
			reach = 0 // the stream's last message need not be on filter
		} else {
			reach = upTo
		}
	}
	stream := LogStream(shard)
	from = max(from, 1)
	next := from
	read := func(sm storedMsg) error {
		rec, err := record(stream, shard, sm)
		if ce, ok := AsCorrupt(err); ok && bad != nil {
			next = sm.seq + 1
			return bad(ce)
		}
		if err != nil {
			return err
		}
		l.stats.read.Add(1)
		next = sm.seq + 1
		return fn(rec)
	}
	wait, deadline := lagRetryMin, time.Now().Add(l.cfg.RequestTimeout)
	for {
		if err := l.readSubject(ctx, stream, filter, next, upTo, read); err != nil {
			return err
		}
		if l.cfg.Replicas <= 1 || next > reach {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("log: read %s: %w: the replicas answered up to sequence %d, the leader has %d", filter, ErrLagging, next-1, reach)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("log: read %s: %w", filter, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, lagRetryMax)
	}
}

// readSubject calls fn with each message of stream on filter from
// sequence from up to upTo, in batches.
func (l *Log) readSubject(ctx context.Context, stream, filter string, from, upTo uint64, fn func(storedMsg) error) error {
	if l.closed() {
		return ErrClosed
	}
	from = max(from, 1)
	b := &batchReader{inbox: l.nc.NewInbox()}
	sub, err := l.nc.SubscribeSync(b.inbox + ".*")
	if err != nil {
		return fmt.Errorf("log: read %s: %w", filter, err)
	}
	defer sub.Unsubscribe()
	b.sub = sub
	for more := from <= upTo; more; {
		if from, more, err = l.readBatch(ctx, b, stream, filter, from, upTo, fn); err != nil {
			return err
		}
	}
	return nil
}

// batchReader is one read's subscription: every request of a batch (asked
// again while unanswered, directGetAttempt) replies to the inbox with its
// own token, and the batch reads the answers of the first request that
// answers, ignoring the others'.
type batchReader struct {
	inbox string
	sub   *nats.Subscription
	n     int // requests sent
}

// ask sends the batch's request once more and returns its reply subject.
func (b *batchReader) ask(nc *nats.Conn, stream string, req []byte) (string, error) {
	reply := b.inbox + "." + strconv.Itoa(b.n)
	b.n++
	return reply, nc.PublishRequest(directGetSubject(stream), reply, req)
}

// readBatch asks for one batch from sequence from and hands its messages
// to fn. It returns where the next batch starts and whether there is one.
func (l *Log) readBatch(ctx context.Context, b *batchReader, stream, filter string, from, upTo uint64, fn func(storedMsg) error) (uint64, bool, error) {
	req, err := json.Marshal(directGetRequest{Seq: from, NextFor: filter, Batch: readBatch, MaxBytes: readBytesMax, UpToSeq: upTo})
	if err != nil {
		return 0, false, fmt.Errorf("log: read %s: %w", filter, err)
	}
	first, err := b.ask(l.nc, stream, req)
	if err != nil {
		return 0, false, fmt.Errorf("log: read %s from %d: %w", filter, from, err)
	}
	asked := map[string]bool{first: true}
	askUntil := time.Now().Add(l.cfg.RequestTimeout)
	answering := "" // the reply subject of the request whose answers this batch reads
	next, got := from, 0
	for {
		wait := l.cfg.RequestTimeout
		if answering == "" {
			wait = min(directGetAttempt, max(time.Until(askUntil), time.Millisecond))
		}
		wctx, wcancel := context.WithTimeout(ctx, wait)
		m, err := b.sub.NextMsgWithContext(wctx)
		wcancel()
		if errors.Is(err, nats.ErrNoResponders) {
			// The status names no request: it may answer an earlier one
			// (asked again, or of an earlier batch), sent while the
			// stream's replicas were unreachable.
			if answering != "" {
				continue
			}
			if ctx.Err() == nil && time.Now().Before(askUntil) {
				pause(ctx, noResponderRetry)
				err = context.DeadlineExceeded // ask again below
			}
		}
		if err != nil && answering == "" && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && time.Now().Before(askUntil) {
			// Unanswered yet: the replica it went to may be cut off.
			reply, err := b.ask(l.nc, stream, req)
			if err != nil {
				return 0, false, fmt.Errorf("log: read %s from %d: %w", filter, from, err)
			}
			asked[reply] = true
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("log: read %s from %d: %w", filter, next, err)
		}
		if answering == "" && asked[m.Subject] {
			answering = m.Subject
		}
		if m.Subject != answering {
			continue // another request's answer (of this batch or an earlier one)
		}
		if m.Header.Get("Status") == statusEOB {
			pending, err := strconv.ParseUint(m.Header.Get(jsNumPending), 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("log: read %s: bad end of batch %q", filter, m.Header)
			}
			return next, pending > 0 && got > 0 && next <= upTo, nil
		}
		sm, err := parseDirect(m, filter)
		if errors.Is(err, ErrNotFound) && got == 0 {
			return next, false, nil // nothing at or after next
		}
		if err != nil {
			return 0, false, err
		}
		if sm.seq < next {
			return 0, false, fmt.Errorf("log: read %s: sequence %d after %d", filter, sm.seq, next-1)
		}
		if sm.seq > upTo {
			// Written after the read began. The rest of this batch is
			// dropped with the subscription.
			return next, false, nil
		}
		if err := fn(sm); err != nil {
			return 0, false, err
		}
		next, got = sm.seq+1, got+1
	}
}
