package log

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow calls fn with each of one object's events from stream sequence
// fromSeq on, in order, including those appended while it runs, until ctx
// ends (it then returns ctx's error) or fn fails. It uses an ordered
// consumer filtered on the object's subject: ephemeral, and resumed by
// the client library if the connection drops.
func (l *Log) Follow(ctx context.Context, class string, id ID, fromSeq uint64, fn func(Record) error) error {
	if l.closed() {
		return ErrClosed
	}
	if !ValidClass(class) {
		return fmt.Errorf("follow: %w: class %q", ErrBadEvent, class)
	}
	shard := l.ShardOf(id)
	subj := ObjectSubject(shard, class, id)
	return l.consumeOrdered(ctx, shard, "follow "+subj, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(fromSeq, 1),
	}, fn)
}

// errReadEnough ends a consumeOrdered whose reader has what it wanted.
var errReadEnough = errors.New("read enough")

// ReadSince calls fn with each event of shard's log stream stored at or
// after since (by the stream's clock), of every object, in order, up to
// the stream's last sequence when it started. It reads the whole stream's
// traffic since then: keep since recent. A node taking over a dead
// node's objects reads the last moments of the log with it to find the
// alarms whose schedules the dead node may not have published.
func (l *Log) ReadSince(ctx context.Context, shard int, since time.Time, fn func(Record) error) error {
	if err := l.checkShard(shard); err != nil {
		return err
	}
	last, err := l.LastSeq(ctx, shard)
	if err != nil {
		return err
	}
	filter := fmt.Sprintf(logSubjectsFmt, shard)
	first, err := l.firstSince(ctx, LogStream(shard), filter, since)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	case first.seq > last:
		return nil
	}
	err = l.consumeOrdered(ctx, shard, fmt.Sprintf("read shard %d from %d", shard, first.seq), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    first.seq,
	}, func(rec Record) error {
		if err := fn(rec); err != nil {
			return err
		}
		if rec.Seq >= last {
			return errReadEnough
		}
		return nil
	})
	if errors.Is(err, errReadEnough) {
		return nil
	}
	return err
}

// consumeOrdered reads shard's log stream with an ordered consumer
// (ephemeral, resumed by the client library if the connection drops) and
// calls fn with each record until ctx ends (ctx's error) or fn fails (its
// error).
func (l *Log) consumeOrdered(ctx context.Context, shard int, what string, cfg jetstream.OrderedConsumerConfig, fn func(Record) error) error {
	stream := LogStream(shard)
	cons, err := l.orderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer l.dropConsumer(stream, cons)
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ErrClosed
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		rec, err := record(stream, shard, storedMsg{seq: meta.Sequence.Stream, subj: m.Subject(), data: m.Data()})
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
