package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Node-wide group commit.
//
// Each shard has one committer goroutine with at most one publish in
// flight. Appends queue while it is out; when it returns, everything queued
// goes out together: one message as an ordinary publish, several as one
// atomic batch, which the server stores with a single fsync. Every message
// keeps its own Nats-Expected-Last-Subject-Sequence, so fencing is per
// object even inside a batch.
//
// A batch is all or nothing and the server does not say which message
// failed. So after any failure (a conflict, a duplicate, a lost answer) the
// committer asks each message's subject for its last message: if it is
// byte-identical to ours, ours landed (a retry whose first attempt was
// stored: the server answers that with 10071 on one node and a duplicate
// ack on R3); if the subject still ends at our expectation, ours goes into
// the retry; otherwise the object was written by someone else, and that
// append alone fails with ErrConflict.

// appendQueueLen bounds the appends waiting for one shard's committer.
const appendQueueLen = 8192

// resolveRoundsMax bounds how often one append is retried after failures
// that leave its subject unchanged.
const resolveRoundsMax = 3

type pendingAppend struct {
	subj   string
	msgID  string
	data   []byte
	expect uint64
	ev     *Event
	done   chan appendResult
}

type appendResult struct {
	seq uint64
	err error
}

type committer struct {
	l     *Log
	shard int
	in    chan *pendingAppend
	stop  chan struct{}
	done  chan struct{}
}

func newCommitter(l *Log, shard int) *committer {
	return &committer{
		l: l, shard: shard,
		in:   make(chan *pendingAppend, appendQueueLen),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Append appends e to its object's subject if the subject still ends at
// expectSeq (0: the object has no events). It returns the stored record,
// or ErrConflict if another writer appended first.
func (l *Log) Append(ctx context.Context, e *Event, expectSeq uint64) (Record, error) {
	data, err := Encode(e)
	if err != nil {
		return Record{}, err
	}
	if len(data) > l.maxEvent {
		return Record{}, fmt.Errorf("append %s v%d: %d bytes, at most %d: %w", e.ID, e.Version, len(data), l.maxEvent, ErrTooLarge)
	}
	shard := l.ShardOf(e.ID)
	p := &pendingAppend{
		subj:   ObjectSubject(shard, e.Class, e.ID),
		msgID:  e.ID.String() + "." + strconv.FormatUint(e.Version, 10),
		data:   data,
		expect: expectSeq,
		ev:     e,
		done:   make(chan appendResult, 1),
	}
	c := l.committers[shard]
	select {
	case c.in <- p:
	case <-c.stop:
		return Record{}, ErrClosed
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
	select {
	case r := <-p.done:
		if r.err != nil {
			return Record{}, r.err
		}
		return Record{Seq: r.seq, Data: data, Event: e}, nil
	case <-ctx.Done():
		return Record{}, ctx.Err()
	}
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*pendingAppend, 0, c.l.cfg.BatchMessagesMax)
	for {
		select {
		case p := <-c.in:
			batch = append(batch[:0], p)
		case <-c.stop:
			for {
				select {
				case p := <-c.in:
					p.done <- appendResult{err: ErrClosed}
				default:
					return
				}
			}
		}
		size := len(batch[0].data)
	gather:
		for len(batch) < c.l.cfg.BatchMessagesMax {
			select {
			case p := <-c.in:
				if size+len(p.data) > c.l.cfg.BatchBytesMax {
					c.commit(batch)
					batch, size = append(batch[:0], p), 0
				} else {
					batch = append(batch, p)
				}
				size += len(p.data)
			default:
				break gather
			}
		}
		c.commit(batch)
	}
}

// commit publishes batch and completes every append in it.
func (c *committer) commit(batch []*pendingAppend) {
	for round := 0; len(batch) > 0; round++ {
		var seqs []uint64
		var err error
		if len(batch) == 1 {
			seqs, err = c.publishOne(batch[0])
		} else {
			seqs, err = c.publishBatch(batch)
		}
		if err == nil {
			for i, p := range batch {
				c.l.stats.appends.Add(1)
				p.done <- appendResult{seq: seqs[i]}
			}
			return
		}
		batch = c.resolve(batch, err, round >= resolveRoundsMax)
	}
}

// resolve settles each append of a failed publish and returns the ones to
// try again. giveUp fails the undecided ones with cause instead.
func (c *committer) resolve(batch []*pendingAppend, cause error, giveUp bool) []*pendingAppend {
	retry := batch[:0:0]
	for _, p := range batch {
		last, err := c.l.lastMsg(context.Background(), LogStream(c.shard), p.subj)
		switch {
		case err != nil && !errors.Is(err, ErrNotFound):
			p.done <- appendResult{err: fmt.Errorf("append %s: %v; then %w", p.subj, cause, err)}
		case err == nil && bytes.Equal(last.data, p.data):
			c.l.stats.duplicates.Add(1)
			c.l.stats.appends.Add(1)
			p.done <- appendResult{seq: last.seq}
		case last.seq != p.expect: // includes "not found" with expect > 0
			c.l.stats.conflicts.Add(1)
			p.done <- appendResult{err: fmt.Errorf("append %s: expected last sequence %d, subject is at %d: %w", p.subj, p.expect, last.seq, ErrConflict)}
		case giveUp:
			p.done <- appendResult{err: fmt.Errorf("append %s: %w", p.subj, cause)}
		default:
			retry = append(retry, p)
		}
	}
	if len(retry) > 0 {
		c.l.logger.Debug("log: retrying appends after a failed publish", "shard", c.shard, "retry", len(retry), "of", len(batch), "cause", cause)
	}
	return retry
}

func (c *committer) message(p *pendingAppend) *nats.Msg {
	m := nats.NewMsg(p.subj)
	m.Data = p.data
	m.Header.Set(nats.MsgIdHdr, p.msgID)
	m.Header.Set(nats.ExpectedLastSubjSeqHdr, strconv.FormatUint(p.expect, 10))
	return m
}

func (c *committer) publishOne(p *pendingAppend) ([]uint64, error) {
	c.l.stats.publishes.Add(1)
	ack, err := c.l.request(c.message(p))
	if err != nil {
		return nil, err
	}
	return []uint64{ack.Seq}, nil
}

// publishBatch sends batch as one atomic batch. The staged messages need no
// answer: the commit's answer covers the batch, whose messages are stored
// at consecutive sequences ending at the ack's.
func (c *committer) publishBatch(batch []*pendingAppend) ([]uint64, error) {
	c.l.stats.batches.Add(1)
	c.l.stats.batched.Add(uint64(len(batch)))
	id := nuid.Next()
	for i, p := range batch {
		m := c.message(p)
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(batch)-1 {
			if err := c.l.nc.PublishMsg(m); err != nil {
				return nil, fmt.Errorf("batch publish: %w", err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		ack, err := c.l.request(m)
		if err != nil {
			return nil, err
		}
		if ack.Count != 0 && ack.Count != len(batch) {
			return nil, fmt.Errorf("batch %s committed %d of %d messages", id, ack.Count, len(batch))
		}
		seqs := make([]uint64, len(batch))
		for j := range batch {
			seqs[j] = ack.Seq - uint64(len(batch)-1-j)
		}
		return seqs, nil
	}
	return nil, nil
}

// pubAck is JetStream's answer to a publish or a batch commit.
type pubAck struct {
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"seq"`
	Duplicate bool      `json:"duplicate"`
	Batch     string    `json:"batch"`
	Count     int       `json:"count"`
	Error     *apiError `json:"error"`
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (%d)", e.Description, e.ErrCode)
}

// request publishes m and waits for its ack. A duplicate ack counts as a
// failure: only resolve can say whether the stored message is ours.
func (l *Log) request(m *nats.Msg) (pubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return pubAck{}, fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return pubAck{}, fmt.Errorf("publish %s: bad ack %q: %w", m.Subject, resp.Data, err)
	}
	switch {
	case ack.Error != nil:
		return pubAck{}, fmt.Errorf("publish %s: %w", m.Subject, ack.Error)
	case ack.Duplicate:
		return pubAck{}, fmt.Errorf("publish %s: duplicate of sequence %d", m.Subject, ack.Seq)
	case ack.Seq == 0:
		return pubAck{}, fmt.Errorf("publish %s: ack without a sequence: %q", m.Subject, resp.Data)
	}
	return ack, nil
}
