package log

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// consumerOpTimeout bounds creating and deleting a reader's consumer.
const consumerOpTimeout = 10 * time.Second

// readerInactive is the inactive threshold of a reader's consumer: the
// server deletes one nobody pulls from for this long. A live reader keeps
// pull requests waiting, so it is untouched (and were its consumer deleted,
// the ordered consumer would make a new one from where it was). This is
// the backstop for what dropConsumer cannot do: a delete that failed, or a
// reader whose process died while an external NATS keeps its consumers.
const readerInactive = 15 * time.Second

// orderedConsumer creates an ordered consumer for a tail or a follow. The
// caller hands it to dropConsumer when done: the library leaves a finished
// ordered consumer on the server until its inactive threshold (5 minutes),
// so a thousand short tails would leave thousands behind, and the
// server's limits would then refuse everyone's. The creation is not cut
// short by ctx (a request that ends mid-creation would leave a consumer
// it never learned of); a creation that fails is deleted by its name.
func (l *Log) orderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	cfg.NamePrefix = nuid.Next()
	cfg.InactiveThreshold = readerInactive
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumerOpTimeout)
	defer cancel()
	cons, err := l.js.OrderedConsumer(cctx, stream, cfg)
	if err != nil {
		l.deleteConsumer(stream, cfg.NamePrefix+"_1") // the first serial's name
		return nil, err
	}
	return cons, nil
}

// dropConsumer deletes an ordered consumer's current server-side consumer.
func (l *Log) dropConsumer(stream string, cons jetstream.Consumer) {
	if info := cons.CachedInfo(); info != nil {
		l.deleteConsumer(stream, info.Name)
	}
}

func (l *Log) deleteConsumer(stream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), consumerOpTimeout)
	defer cancel()
	if err := l.js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		l.cfg.Logger.Warn("log: delete a finished reader's consumer; the server drops it after its inactive threshold", "stream", stream, "consumer", name, "err", err)
	}
}

// ConsumerCount is the number of consumers on the object log's streams
// (tails and follows hold them while they run).
func (l *Log) ConsumerCount(ctx context.Context) (int, error) {
	total := 0
	for n := range l.shards {
		s, err := l.js.Stream(ctx, LogStream(n))
		if err != nil {
			return 0, fmt.Errorf("consumer count of %s: %w", LogStream(n), err)
		}
		total += s.CachedInfo().State.Consumers
	}
	return total, nil
}

// Tail calls fn for every event committed from now on, across every shard,
// of one class ("" for all), until ctx ends or fn fails. "Now" is when
// ready is called (if not nil): every event acknowledged after ready
// returns is delivered. Each shard is
// followed by an ordered consumer: ephemeral, server-side filtered, and
// resumed by the client library if the connection drops. Events of one
// object arrive in order; events of different shards interleave freely.
func (l *Log) Tail(ctx context.Context, class string, ready func(), fn func(Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		rec Record
		err error
	}
	items := make(chan item)
	// Undone last first: each shard's reader stops before its consumer is
	// deleted (a reader that sees its consumer go makes a new one).
	var stops []func()
	defer func() {
		for _, stop := range slices.Backward(stops) {
			stop()
		}
	}()
	if class != "" && !ValidClass(class) {
		return fmt.Errorf("tail: %w: class %q", ErrBadEvent, class)
	}
	for n := 0; n < l.shards; n++ {
		if ctx.Err() != nil {
			return ctx.Err() // the reader left while the tail started
		}
		filter := fmt.Sprintf("strata.%d.obj.>", n)
		if class != "" {
			filter = fmt.Sprintf("strata.%d.obj.%s.>", n, class)
		}
		cons, err := l.orderedConsumer(ctx, LogStream(n), jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{filter},
			DeliverPolicy:  jetstream.DeliverNewPolicy,
		})
		if err != nil {
			return fmt.Errorf("tail shard %d: %w", n, err)
		}
		stops = append(stops, func() { l.dropConsumer(LogStream(n), cons) })
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
	// Each shard's server-side consumer was made, with its start at the
	// stream's end, before its Consume: what is acknowledged from here on
	// reaches this tail.
	if ready != nil {
		ready()
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
