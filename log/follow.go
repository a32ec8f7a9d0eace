package log

import (
	"context"
	"errors"
	"fmt"

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
	stream, subj := LogStream(shard), ObjectSubject(shard, class, id)
	cons, err := l.orderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(fromSeq, 1),
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", subj, err)
	}
	defer l.dropConsumer(stream, cons)
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", subj, err)
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
			return fmt.Errorf("follow %s: %w", subj, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("follow %s: %w", subj, err)
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
