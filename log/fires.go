package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fires: the consumer that hands them out, the sweeper that removes them
// once acknowledged, and the dead letters (see timers.go for the layout).

// FireMsg is one delivery of a fire. Exactly one of Ack, Retry, Term or
// DeadLetter should end it; if none does, the server delivers it again.
type FireMsg struct {
	Fire
	// Deliveries counts this delivery: 1 the first time.
	Deliveries uint64
	msg        jetstream.Msg
	l          *Log
	shard      int
}

// Ack confirms the fire. The consumer's sweeper removes acknowledged fires
// from the stream (its retention keeps messages until removed).
func (m *FireMsg) Ack(ctx context.Context) error {
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("log: ack fire %s: %w", m.msg.Subject(), err)
	}
	return nil
}

// timerAPI makes one JetStream API request on shard's timer stream (the
// jetstream package would look the stream up first: one more round trip).
func (l *Log) timerAPI(ctx context.Context, op string, shard int, req any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("log: %s: %w", op, err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.nc.RequestWithContext(ctx, "$JS.API."+op+"."+TimerStream(shard), body)
	if err != nil {
		return fmt.Errorf("log: %s on %s: %w", op, TimerStream(shard), err)
	}
	var out struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		return fmt.Errorf("log: %s on %s: answer: %w", op, TimerStream(shard), err)
	}
	if out.Error != nil {
		return fmt.Errorf("log: %s on %s: %s (%d)", op, TimerStream(shard), out.Error.Description, out.Error.ErrCode)
	}
	return nil
}

// InProgress tells the server the fire is still being worked on: its
// ack wait starts over, so it is not delivered again meanwhile (nor is its
// delivery count raised).
func (m *FireMsg) InProgress() error {
	if err := m.msg.InProgress(); err != nil {
		return fmt.Errorf("log: fire %s in progress: %w", m.msg.Subject(), err)
	}
	return nil
}

// FireAckWait is how long a fire may stay unacknowledged, and without
// InProgress, before the server delivers it again.
const FireAckWait = fireAckWait

// Retry asks for the fire again after delay.
func (m *FireMsg) Retry(delay time.Duration) error {
	if err := m.msg.NakWithDelay(delay); err != nil {
		return fmt.Errorf("log: retry fire %s: %w", m.msg.Subject(), err)
	}
	return nil
}

// DeadLetter moves the fire to the dead-letter subject with a reason, then
// confirms it.
func (m *FireMsg) DeadLetter(ctx context.Context, reason string) error {
	if err := m.l.publishDead(ctx, m.shard, m.Fire, reason); err != nil {
		return err
	}
	return m.Ack(ctx)
}

func (l *Log) publishDead(ctx context.Context, shard int, f Fire, reason string) error {
	data, err := f.encode()
	if err != nil {
		return err
	}
	if len(reason) > deadReasonMax {
		reason = reason[:deadReasonMax]
	}
	m := nats.NewMsg(deadSubject(shard, f.Class, f.ID, f.Name))
	m.Data = data
	m.Header.Set(hdrDeadReason, reason)
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("log: dead-letter %s: %w", m.Subject, err)
	}
	return nil
}

// fireSweepInterval is how often acknowledged fires are purged: one purge
// below the consumer's ack floor instead of one delete (one fsync) per fire.
const fireSweepInterval = time.Second

// FireConsumer hands one shard's fires to a callback.
type FireConsumer struct {
	cc         jetstream.ConsumeContext
	stopSweep  chan struct{}
	sweepDone  chan struct{}
	stopOnce   sync.Once
	sweptBelow uint64 // owned by sweep
}

// Stop stops taking fires and waits until no callback of it runs.
func (c *FireConsumer) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopSweep) })
	c.cc.Stop()
	select {
	case <-c.cc.Closed():
	case <-ctx.Done():
		return fmt.Errorf("log: stop fire consumer: %w", ctx.Err())
	}
	select {
	case <-c.sweepDone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("log: stop fire sweeper: %w", ctx.Err())
	}
}

// sweep purges the shard's fires below the consumer's ack floor, every
// fireSweepInterval, until Stop.
func (c *FireConsumer) sweep(l *Log, shard int, cons jetstream.Consumer) {
	defer close(c.sweepDone)
	t := time.NewTicker(fireSweepInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stopSweep:
			return
		case <-l.stopping:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.RequestTimeout)
		info, err := cons.Info(ctx)
		if err == nil && info.AckFloor.Stream+1 > c.sweptBelow {
			below := info.AckFloor.Stream + 1
			err = l.timerAPI(ctx, "STREAM.PURGE", shard, map[string]any{"filter": fmt.Sprintf(fireSubjectsFmt, shard), "seq": below})
			if err == nil {
				c.sweptBelow = below
			}
		}
		cancel()
		if err != nil && !l.closed() {
			l.cfg.Logger.Debug("sweep acknowledged fires", "shard", shard, "err", err)
		}
	}
}

// ConsumeFires starts the durable consumer of shard's fires. fn runs on
// the consumer's goroutine, one fire at a time: it should hand the fire
// on rather than run it. A fire that does not decode is dead-lettered
// whole.
func (l *Log) ConsumeFires(ctx context.Context, shard int, fn func(*FireMsg)) (*FireConsumer, error) {
	if err := l.checkShard(shard); err != nil {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       firesConsumer,
		Description:   "Strata: alarm fires of this shard",
		FilterSubject: fmt.Sprintf(fireSubjectsFmt, shard),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       fireAckWait,
		MaxDeliver:    -1,
		MaxAckPending: firesInFlightMax,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      l.cfg.Replicas,
	}
	cons, err := l.createConsumer(ctx, TimerStream(shard), cfg)
	if err != nil {
		return nil, fmt.Errorf("log: fire consumer of shard %d: %w", shard, err)
	}
	logger := l.cfg.Logger.With("component", "log", "shard", shard)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		f, err := decodeFire(msg.Data())
		if err != nil {
			logger.Error("undecodable fire: terminated", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			return
		}
		var delivered uint64 = 1
		if md, err := msg.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		fn(&FireMsg{Fire: f, Deliveries: delivered, msg: msg, l: l, shard: shard})
	}, jetstream.PullMaxMessages(firesBufferedMax), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		logger.Debug("fire consumer", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("log: consume fires of shard %d: %w", shard, err)
	}
	fc := &FireConsumer{cc: cc, stopSweep: make(chan struct{}), sweepDone: make(chan struct{})}
	go fc.sweep(l, shard, cons)
	return fc, nil
}

// DeadFire is a fire whose retries were spent.
type DeadFire struct {
	Fire
	Shard  int
	Seq    uint64 // its sequence in the shard's timer stream
	Reason string
	Time   time.Time
}

// DeadFires lists the dead-lettered fires of every shard, oldest first per
// shard, stopping at the first error fn returns.
func (l *Log) DeadFires(ctx context.Context, fn func(DeadFire) error) error {
	for shard := range l.shards {
		if err := l.deadFires(ctx, shard, fn); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) deadFires(ctx context.Context, shard int, fn func(DeadFire) error) error {
	if l.closed() {
		return ErrClosed
	}
	filter := fmt.Sprintf(deadSubjectsFmt, shard)
	s, err := l.js.Stream(ctx, TimerStream(shard))
	if err != nil {
		return fmt.Errorf("log: dead fires of shard %d: %w", shard, err)
	}
	var seq uint64
	for {
		rm, err := s.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("log: dead fires of shard %d: %w", shard, err)
		}
		seq = rm.Sequence
		f, err := decodeFire(rm.Data)
		if err != nil {
			return fmt.Errorf("log: dead fire at %d of shard %d: %w", seq, shard, err)
		}
		d := DeadFire{Fire: f, Shard: shard, Seq: seq, Reason: rm.Header.Get(hdrDeadReason), Time: rm.Time}
		if err := fn(d); err != nil {
			return err
		}
	}
}

// RemoveDead removes a dead-lettered fire (after its alarm was re-armed).
func (l *Log) RemoveDead(ctx context.Context, d DeadFire) error {
	if err := l.checkShard(d.Shard); err != nil {
		return err
	}
	if l.closed() {
		return ErrClosed
	}
	return l.timerAPI(ctx, "STREAM.MSG.DELETE", d.Shard, map[string]any{"seq": d.Seq, "no_erase": true})
}

// TimerMessages is the number of messages in shard's timer stream:
// schedules, fires not yet swept, dead letters.
func (l *Log) TimerMessages(ctx context.Context, shard int) (uint64, error) {
	st, err := l.streamState(ctx, shard, TimerStream(shard))
	return st.Msgs, err
}

// createConsumer creates or updates a durable consumer. On replicated
// streams it waits (until ctx ends, at most clusterFormTimeout) while the
// stream or the meta group elects a leader, which drops requests rather
// than refusing them: a node restarting into a cluster that is electing
// leaders for the streams its dead peer led would otherwise fail to start.
func (l *Log) createConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if l.cfg.Replicas <= 1 {
		ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
		defer cancel()
		return l.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterFormTimeout)
	defer cancel()
	var cons jetstream.Consumer
	err := whileElecting(ctx, func(ctx context.Context) (err error) {
		cons, err = l.js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	})
	return cons, err
}
