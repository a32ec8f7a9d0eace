package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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
		return Record{}, fmt.Errorf("log: %s sequence %d: %w", stream, m.seq, err)
	}
	if want := ObjectSubject(shard, e.Class, e.ID); m.subj != want {
		return Record{}, fmt.Errorf("log: %s sequence %d: %w: event of %s stored on %s", stream, m.seq, ErrBadEvent, want, m.subj)
	}
	return Record{Seq: m.seq, Data: m.data, Event: e}, nil
}

// lastMsg is the last message on subj, or ErrNotFound.
func (l *Log) lastMsg(ctx context.Context, stream, subj string) (storedMsg, error) {
	req, err := json.Marshal(directGetRequest{LastFor: subj})
	if err != nil {
		return storedMsg{}, fmt.Errorf("log: last of %s: %w", subj, err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.nc.RequestWithContext(ctx, directGetSubject(stream), req)
	if err != nil {
		return storedMsg{}, fmt.Errorf("log: last of %s: %w", subj, err)
	}
	return parseDirect(resp, subj)
}

// lastMsgs is lastMsg for many subjects, pipelined: at most lastWindow
// requests in flight, answers matched by reply subject.
func (l *Log) lastMsgs(ctx context.Context, stream string, subjs []string) ([]storedMsg, []error) {
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
	m, err := l.lastMsg(ctx, LogStream(shard), ObjectSubject(shard, class, id))
	if err != nil {
		return Record{}, err
	}
	return record(LogStream(shard), shard, m)
}

// Read calls fn with each of the object's events at stream sequence
// fromSeq or later, in order, up to the stream's last sequence when Read
// started (so a read of a busy object ends). An error from fn stops the
// read and is returned as is.
func (l *Log) Read(ctx context.Context, class string, id ID, fromSeq uint64, fn func(Record) error) error {
	shard := l.ShardOf(id)
	return l.readRange(ctx, shard, ObjectSubject(shard, class, id), fromSeq, fn)
}

// Scan calls fn with every event of shard's log from fromSeq, in order, up
// to the stream's last sequence when Scan started. An error from fn stops
// the scan and is returned as is.
func (l *Log) Scan(ctx context.Context, shard int, fromSeq uint64, fn func(Record) error) error {
	if err := l.checkShard(shard); err != nil {
		return err
	}
	return l.readRange(ctx, shard, fmt.Sprintf(logSubjectsFmt, shard), fromSeq, fn)
}

func (l *Log) readRange(ctx context.Context, shard int, filter string, from uint64, fn func(Record) error) error {
	if l.closed() {
		return ErrClosed
	}
	upTo, err := l.LastSeq(ctx, shard)
	if err != nil {
		return fmt.Errorf("log: read %s: %w", filter, err)
	}
	stream := LogStream(shard)
	return l.readSubject(ctx, stream, filter, from, upTo, func(sm storedMsg) error {
		rec, err := record(stream, shard, sm)
		if err != nil {
			return err
		}
		l.stats.read.Add(1)
		return fn(rec)
	})
}

// readSubject calls fn with each message of stream on filter from
// sequence from up to upTo, in batches.
func (l *Log) readSubject(ctx context.Context, stream, filter string, from, upTo uint64, fn func(storedMsg) error) error {
	if l.closed() {
		return ErrClosed
	}
	from = max(from, 1)
	inbox := l.nc.NewInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("log: read %s: %w", filter, err)
	}
	defer sub.Unsubscribe()
	for more := from <= upTo; more; {
		if from, more, err = l.readBatch(ctx, sub, stream, filter, from, upTo, fn); err != nil {
			return err
		}
	}
	return nil
}

// readBatch asks for one batch from sequence from and hands its messages
// to fn. It returns where the next batch starts and whether there is one.
func (l *Log) readBatch(ctx context.Context, sub *nats.Subscription, stream, filter string, from, upTo uint64, fn func(storedMsg) error) (uint64, bool, error) {
	req, err := json.Marshal(directGetRequest{Seq: from, NextFor: filter, Batch: readBatch, MaxBytes: readBytesMax, UpToSeq: upTo})
	if err != nil {
		return 0, false, fmt.Errorf("log: read %s: %w", filter, err)
	}
	if err := l.nc.PublishRequest(directGetSubject(stream), sub.Subject, req); err != nil {
		return 0, false, fmt.Errorf("log: read %s from %d: %w", filter, from, err)
	}
	next, got := from, 0
	for {
		m, err := l.nextMsg(ctx, sub)
		if err != nil {
			return 0, false, fmt.Errorf("log: read %s from %d: %w", filter, next, err)
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
