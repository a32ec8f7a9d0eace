package log

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Tail calls fn for every event committed from now on, across every shard,
// of one class ("" for all), until ctx ends or fn fails. Each shard is
// followed by an ordered consumer: ephemeral, server-side filtered, and
// resumed by the client library if the connection drops. Events of one
// object arrive in order; events of different shards interleave freely.
func (l *Log) Tail(ctx context.Context, class string, fn func(Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		rec Record
		err error
	}
	items := make(chan item)
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for n := 0; n < l.shards; n++ {
		filter := fmt.Sprintf("strata.%d.obj.>", n)
		if class != "" {
			if !ValidClass(class) {
				return fmt.Errorf("tail: %w: class %q", ErrBadEvent, class)
			}
			filter = fmt.Sprintf("strata.%d.obj.%s.>", n, class)
		}
		cons, err := l.js.OrderedConsumer(ctx, LogStream(n), jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{filter},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		})
		if err != nil {
			return fmt.Errorf("tail shard %d: %w", n, err)
		}
		shard := n
		cc, err := cons.Consume(func(m jetstream.Msg) {
			meta, err := m.Metadata()
			var it item
			if err != nil {
				it.err = fmt.Errorf("tail shard %d: %w", shard, err)
			} else {
				it.rec, it.err = record(LogStream(shard), shard, storedMsg{seq: meta.Sequence.Stream, subj: m.Subject(), data: m.Data()})
			}
			select {
			case items <- it:
			case <-ctx.Done():
			}
		})
		if err != nil {
			return fmt.Errorf("tail shard %d: %w", n, err)
		}
		stops = append(stops, cc.Stop)
	}
	for {
		select {
		case it := <-items:
			if it.err != nil {
				return it.err
			}
			if err := fn(it.rec); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
