package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Raw is the baseline Strata is measured against: JetStream publishing to
// streams configured like the shards' log streams (same storage, replicas,
// duplicate window, direct get and atomic publish, on the same server with
// the same fsync mode, one per shard), with no Strata in between. It
// exists for benchmarks (go test -bench, strata bench), since only this
// package may speak NATS, and writes only to its own scratch streams,
// which Close deletes.
type Raw struct{ l *Log }

// rawStreamName prefixes the scratch streams: stream n's subjects are
// strata.raw.<n>.>, apart from every shard's. (Before there was one
// stream per shard, one stream of this name held strata.raw.>.)
const rawStreamName = "STRATA_RAW_BENCH"

func rawStream(n int) string { return rawStreamName + "_" + strconv.Itoa(n) }

// RawSubject is object i's subject on the first raw stream.
func RawSubject(i int) string { return RawStreamSubject(0, i) }

// RawStreamSubject is object i's subject on raw stream n.
func RawStreamSubject(n, i int) string {
	return "strata.raw." + strconv.Itoa(n) + ".obj.bench." + strconv.Itoa(i)
}

// Raw creates the scratch streams afresh, as many as the log has shards.
func (l *Log) Raw(ctx context.Context) (*Raw, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	r := &Raw{l: l}
	// A bench that did not finish leaves its streams behind.
	if err := r.deleteStreams(ctx); err != nil {
		return nil, fmt.Errorf("log: raw streams: delete the old ones: %w", err)
	}
	for n := range r.l.shards {
		cfg := l.logStreamConfig(n, nil)
		cfg.Name, cfg.Description = rawStream(n), "Strata benchmark baseline, deleted after use"
		cfg.Subjects = []string{"strata.raw." + strconv.Itoa(n) + ".>"}
		if _, err := l.js.CreateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("log: raw stream %d: %w", n, err)
		}
	}
	return r, nil
}

// Streams is the number of raw streams, the log's shard count.
func (r *Raw) Streams() int { return r.l.shards }

// Close deletes the scratch streams.
func (r *Raw) Close(ctx context.Context) error {
	if err := r.deleteStreams(ctx); err != nil {
		return fmt.Errorf("log: delete raw streams: %w", err)
	}
	return nil
}

func (r *Raw) deleteStreams(ctx context.Context) error {
	names := []string{rawStreamName}
	for n := range r.l.shards {
		names = append(names, rawStream(n))
	}
	for _, name := range names {
		if err := r.l.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
	}
	return nil
}

func rawMessage(subj string, data []byte, expect uint64) *nats.Msg {
	return &nats.Msg{Subject: subj, Data: data, Header: nats.Header{
		hdrMsgID:      []string{nuid.Next()},
		hdrExpectSubj: []string{strconv.FormatUint(expect, 10)},
	}}
}

// PublishSync publishes one message with the headers an append carries (a
// message id and the expected last subject sequence) and waits for its
// ack. It returns the stream sequence.
func (r *Raw) PublishSync(ctx context.Context, subj string, data []byte, expect uint64) (uint64, error) {
	ack, err := r.l.js.PublishMsg(ctx, rawMessage(subj, data, expect))
	if err != nil {
		return 0, fmt.Errorf("log: raw publish to %s: %w", subj, err)
	}
	return ack.Sequence, nil
}

// PublishAsync publishes data[i] to subjs[i] without waiting in between,
// with a message id each and at most window acks outstanding, and waits
// for all the acks. (No expectations: a pipeline cannot know the sequence
// it would expect.)
func (r *Raw) PublishAsync(ctx context.Context, subjs []string, data [][]byte, window int) error {
	if len(subjs) != len(data) || window < 1 {
		return fmt.Errorf("log: raw async publish: %d subjects, %d payloads, window %d", len(subjs), len(data), window)
	}
	js, err := jetstream.New(r.l.nc, jetstream.WithPublishAsyncMaxPending(window+1))
	if err != nil {
		return fmt.Errorf("log: raw async publish: %w", err)
	}
	var pending []jetstream.PubAckFuture
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return fmt.Errorf("log: raw async publish: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("log: raw async publish: %w", ctx.Err())
		}
	}
	for i := range subjs {
		if len(pending) == window {
			if err := wait(pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		m := &nats.Msg{Subject: subjs[i], Data: data[i], Header: nats.Header{hdrMsgID: []string{nuid.Next()}}}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("log: raw async publish to %s: %w", subjs[i], err)
		}
		pending = append(pending, f)
	}
	for _, f := range pending {
		if err := wait(f); err != nil {
			return err
		}
	}
	return nil
}

// PublishBatch publishes data[i] to subjs[i] as one atomic batch, each
// with a message id and the expected last subject sequence expects[i]
// (nil: none), and waits for the commit's ack. It returns the batch's
// last stream sequence; the others precede it consecutively.
func (r *Raw) PublishBatch(ctx context.Context, subjs []string, data [][]byte, expects []uint64) (uint64, error) {
	n := len(subjs)
	if n == 0 || len(data) != n || expects != nil && len(expects) != n || n > batchMessagesMaxServer {
		return 0, fmt.Errorf("log: raw batch: %d subjects, %d payloads, %d expectations", n, len(data), len(expects))
	}
	id := nuid.Next()
	for i := range subjs {
		m := &nats.Msg{Subject: subjs[i], Data: data[i], Header: nats.Header{hdrMsgID: []string{nuid.Next()}}}
		if expects != nil {
			m.Header[hdrExpectSubj] = []string{strconv.FormatUint(expects[i], 10)}
		}
		m.Header[hdrBatchID] = []string{id}
		m.Header[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
		if i < n-1 {
			if err := r.l.nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("log: raw batch: stage message %d: %w", i+1, err)
			}
			continue
		}
		m.Header[hdrBatchCommit] = []string{"1"}
		resp, err := r.l.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return 0, fmt.Errorf("log: raw batch: commit: %w", err)
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("log: raw batch: ack %q: %w", resp.Data, err)
		}
		if ack.Error != nil {
			return 0, fmt.Errorf("log: raw batch: %w", ack.Error)
		}
		if ack.Count != n {
			return 0, fmt.Errorf("log: raw batch: ack %q for %d messages", resp.Data, n)
		}
		return ack.Seq, nil
	}
	return 0, nil
}
