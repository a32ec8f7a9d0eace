package log

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Alarms on the timer stream (DESIGN.md, "Alarms").
//
// A pending alarm is one schedule message on its own subject,
// strata.<n>.sched.<class>.<id>.<alarm token>, with the header
// Nats-Schedule: @at <RFC3339Nano> (set by hand: nats.go's helper drops
// sub-second precision) and Nats-Schedule-Target: strata.<n>.fire.<class>.<id>.<alarm token>.
// When it is due the server copies its payload to the target subject and
// purges the schedule; a newer schedule on the same subject replaces an
// older one. Fires are taken by one durable pull consumer per shard and
// acknowledged only after the alarm's turn is durable; after the retries are
// spent they are moved to strata.<n>.dead.<class>.<id>.<alarm token>.

const (
	deadSubjectsFmt = "strata.%d.dead.>"
	// firesConsumer is the durable consumer of a shard's fires.
	firesConsumer = "strata-fires"
	// fireAckWait is how long a fire handed to a handler may stay
	// unacknowledged before the server delivers it again.
	fireAckWait = 60 * time.Second
	// firesInFlightMax bounds the fires a shard hands out unacknowledged.
	firesInFlightMax = 1024
	// firesBufferedMax bounds the fires a shard's consumer pulls ahead of
	// its callback. Small, so that under a backlog fires wait on the
	// server (no ack timer running) rather than in the client, where
	// they would time out and be delivered twice.
	firesBufferedMax = 64

	hdrSchedule       = "Nats-Schedule"
	hdrScheduleTarget = "Nats-Schedule-Target"
	hdrDeadReason     = "Strata-Dead-Reason"
	deadReasonMax     = 1024
)

// Fire is the payload of a schedule and of the fire it becomes: which
// alarm of which object, due when.
type Fire struct {
	Class string `cbor:"1,keyasint"`
	ID    ID     `cbor:"2,keyasint"`
	Name  string `cbor:"3,keyasint,omitempty"` // "" is the default alarm
	At    int64  `cbor:"4,keyasint"`           // due time, Unix nanoseconds
}

func (f Fire) encode() ([]byte, error) {
	b, err := encMode.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("log: encode fire: %w", err)
	}
	return b, nil
}

func decodeFire(b []byte) (Fire, error) {
	var f Fire
	if err := decMode.Unmarshal(b, &f); err != nil {
		return Fire{}, fmt.Errorf("log: decode fire: %w", err)
	}
	if !ValidClass(f.Class) {
		return Fire{}, fmt.Errorf("log: decode fire: %w: class %q", ErrBadEvent, f.Class)
	}
	return f, nil
}

// alarmToken is an alarm name as one subject token: "_" for the default
// alarm, else "n" and the name in hex (names may hold any UTF-8).
func alarmToken(name string) string {
	if name == "" {
		return "_"
	}
	return "n" + hex.EncodeToString([]byte(name))
}

func objectTail(class string, id ID) string { return class + "." + id.String() }

// SchedSubject is the subject of one alarm's schedule.
func SchedSubject(shard int, class string, id ID, name string) string {
	return "strata." + strconv.Itoa(shard) + ".sched." + objectTail(class, id) + "." + alarmToken(name)
}

// FireSubject is the subject one alarm's schedule fires into:
// strata.<n>.fire.<class>.<id>.<alarm token>. DESIGN.md names the object's
// subject; the alarm token is added so that a fire waiting for its turn can
// be found (FirePending) without reading the object's other fires.
func FireSubject(shard int, class string, id ID, name string) string {
	return "strata." + strconv.Itoa(shard) + ".fire." + objectTail(class, id) + "." + alarmToken(name)
}

func deadSubject(shard int, class string, id ID, name string) string {
	return "strata." + strconv.Itoa(shard) + ".dead." + objectTail(class, id) + "." + alarmToken(name)
}

// Schedule publishes f's schedule, replacing any earlier one of the same
// alarm. msgID, when not empty, makes a repeat of the same publish harmless
// within the duplicate window; derive it from the event that set the alarm.
// A due time in the past fires at the scheduler's next tick.
func (l *Log) Schedule(ctx context.Context, f Fire, msgID string) error {
	if l.closed() {
		return ErrClosed
	}
	if !ValidClass(f.Class) {
		return fmt.Errorf("log: schedule: invalid class %q", f.Class)
	}
	shard := l.ShardOf(f.ID)
	data, err := f.encode()
	if err != nil {
		return err
	}
	m := nats.NewMsg(SchedSubject(shard, f.Class, f.ID, f.Name))
	m.Data = data
	m.Header.Set(hdrSchedule, "@at "+time.Unix(0, f.At).UTC().Format(time.RFC3339Nano))
	m.Header.Set(hdrScheduleTarget, FireSubject(shard, f.Class, f.ID, f.Name))
	if msgID != "" {
		m.Header.Set(hdrMsgID, msgID)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("log: schedule %s: %w", m.Subject, err)
	}
	return nil
}

// ScheduleItem is one schedule of ScheduleMany. Now sends the fire
// straight to the fire subject (FireNow) instead of scheduling it.
type ScheduleItem struct {
	Fire  Fire
	MsgID string
	Now   bool
}

// ScheduleMany publishes schedules, one atomic batch per shard (so one
// fsync stores many, as appends do), and waits for every answer. It
// returns one error per item (nil: stored); a failed batch fails all of
// its items, which the caller may publish again one by one. Items must
// name distinct alarms.
func (l *Log) ScheduleMany(ctx context.Context, items []ScheduleItem) []error {
	errs := make([]error, len(items))
	if l.closed() {
		for i := range errs {
			errs[i] = ErrClosed
		}
		return errs
	}
	byShard := map[int][]int{}
	for i, it := range items {
		sh := l.ShardOf(it.Fire.ID)
		byShard[sh] = append(byShard[sh], i)
	}
	for _, idx := range byShard {
		for len(idx) > 0 {
			n := min(len(idx), l.cfg.BatchMessagesMax)
			chunk := idx[:n]
			idx = idx[n:]
			msgs := make([]*nats.Msg, 0, n)
			var ok []int
			for _, i := range chunk {
				m, err := l.scheduleMsg(items[i])
				if err != nil {
					errs[i] = err
					continue
				}
				msgs = append(msgs, m)
				ok = append(ok, i)
			}
			var err error
			if len(msgs) == 1 {
				err = l.publishTimer(ctx, msgs[0])
			} else if len(msgs) > 1 {
				err = l.publishTimerBatch(ctx, msgs)
			}
			if err != nil {
				for _, i := range ok {
					errs[i] = err
				}
			}
		}
	}
	return errs
}

func (l *Log) publishTimer(ctx context.Context, m *nats.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("log: schedule %s: %w", m.Subject, err)
	}
	return nil
}

// publishTimerBatch stores msgs (all of one timer stream) as one atomic
// batch: staged messages go without a reply, the commit's answer covers
// the batch.
func (l *Log) publishTimerBatch(ctx context.Context, msgs []*nats.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := l.nc.PublishMsg(m); err != nil {
				return fmt.Errorf("log: schedule batch: stage %d: %w", i+1, err)
			}
			continue
		}
		m.Header.Set(hdrBatchCommit, "1")
		resp, err := l.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return fmt.Errorf("log: schedule batch: commit: %w", err)
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return fmt.Errorf("log: schedule batch: ack %q: %w", resp.Data, err)
		}
		if ack.Error != nil {
			return fmt.Errorf("log: schedule batch: %w", ack.Error)
		}
		if ack.Count != len(msgs) {
			return fmt.Errorf("log: schedule batch: ack %q for %d messages", resp.Data, len(msgs))
		}
	}
	return nil
}

func (l *Log) scheduleMsg(it ScheduleItem) (*nats.Msg, error) {
	f := it.Fire
	if !ValidClass(f.Class) {
		return nil, fmt.Errorf("log: schedule: invalid class %q", f.Class)
	}
	data, err := f.encode()
	if err != nil {
		return nil, err
	}
	shard := l.ShardOf(f.ID)
	var m *nats.Msg
	if it.Now {
		m = nats.NewMsg(FireSubject(shard, f.Class, f.ID, f.Name))
	} else {
		m = nats.NewMsg(SchedSubject(shard, f.Class, f.ID, f.Name))
		m.Header.Set(hdrSchedule, "@at "+time.Unix(0, f.At).UTC().Format(time.RFC3339Nano))
		m.Header.Set(hdrScheduleTarget, FireSubject(shard, f.Class, f.ID, f.Name))
	}
	m.Data = data
	if it.MsgID != "" {
		m.Header.Set(hdrMsgID, it.MsgID)
	}
	return m, nil
}

// FireNow publishes f straight to its object's fire subject, for an alarm
// already due: the scheduler would take up to one tick (about 250 ms).
func (l *Log) FireNow(ctx context.Context, f Fire, msgID string) error {
	if l.closed() {
		return ErrClosed
	}
	if !ValidClass(f.Class) {
		return fmt.Errorf("log: fire: invalid class %q", f.Class)
	}
	data, err := f.encode()
	if err != nil {
		return err
	}
	m := nats.NewMsg(FireSubject(l.ShardOf(f.ID), f.Class, f.ID, f.Name))
	m.Data = data
	if msgID != "" {
		m.Header.Set(hdrMsgID, msgID)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("log: fire %s: %w", m.Subject, err)
	}
	return nil
}

// Unschedule removes an alarm's schedule, if there is one.
func (l *Log) Unschedule(ctx context.Context, class string, id ID, name string) error {
	if l.closed() {
		return ErrClosed
	}
	shard := l.ShardOf(id)
	return l.timerAPI(ctx, "STREAM.PURGE", shard, map[string]any{"filter": SchedSubject(shard, class, id, name)})
}

// ScheduleState is what the timer stream holds for one pending alarm.
type ScheduleState uint8

const (
	// Scheduled: the alarm's schedule is this fire (the same due time),
	// or the fire has fired and waits on its fire subject (a retry
	// waiting out its backoff, say: publishing it again would start a
	// second run).
	Scheduled ScheduleState = iota + 1
	// Unscheduled: nothing of this alarm: it must be scheduled again.
	Unscheduled
	// ScheduledOther: the alarm's schedule is for another due time. Either
	// the alarm was replaced and the new schedule lost (it must be
	// scheduled again), or whoever asks has an old view of the alarm (and
	// publishing it would put the old time back): only the log can say.
	ScheduledOther
)

// Schedules reports, for each of fires, what the timer stream holds of
// it. The reads are batched: two pipelined reads per shard, not two round
// trips per fire. A failed read fails the call.
func (l *Log) Schedules(ctx context.Context, fires []Fire) ([]ScheduleState, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	out := make([]ScheduleState, len(fires))
	byShard := map[int][]int{}
	for i, f := range fires {
		sh := l.ShardOf(f.ID)
		byShard[sh] = append(byShard[sh], i)
	}
	for shard, idx := range byShard {
		subjs := make([]string, 0, 2*len(idx))
		for _, i := range idx {
			f := fires[i]
			subjs = append(subjs, SchedSubject(shard, f.Class, f.ID, f.Name))
		}
		for _, i := range idx {
			f := fires[i]
			subjs = append(subjs, FireSubject(shard, f.Class, f.ID, f.Name))
		}
		lasts, errs := l.lastMsgs(ctx, TimerStream(shard), subjs)
		for k, i := range idx {
			out[i] = Unscheduled
			for _, j := range []int{k, len(idx) + k} {
				switch err := errs[j]; {
				case errors.Is(err, ErrNotFound):
				case err != nil:
					return nil, fmt.Errorf("log: alarms scheduled on shard %d: %w", shard, err)
				default:
					last, derr := decodeFire(lasts[j].data)
					switch {
					case derr == nil && last == fires[i]:
						out[i] = Scheduled
					case j == k && out[i] == Unscheduled:
						out[i] = ScheduledOther
					}
				}
			}
		}
	}
	return out, nil
}
