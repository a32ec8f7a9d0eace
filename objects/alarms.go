package objects

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/strata-objects/strata/log"
)

// Alarms (DESIGN.md, "Alarms"). An alarm is a write of the turn's event, like
// a key: the log is the truth about it. The objects package only records
// alarms and runs Alarm turns; scheduling them on the timer stream and taking
// their fires is the alarms package's work, which learns of them through
// Config.Alarms.

// Alarm limits. A name is checked when it is set; the count covers the
// named alarms (the default alarm "" is not counted).
const (
	AlarmNameBytesMax = 128
	NamedAlarmsMax    = 64
	// DefaultAlarmRetries is how often a failing Alarm handler is retried
	// before its fire is dead-lettered (Durable Objects: 6).
	DefaultAlarmRetries = 6
)

// AlarmInfo describes the alarm an Alarm turn runs for.
type AlarmInfo struct {
	Name        string    // "" is the default alarm
	ScheduledAt time.Time // the due time the alarm was set to
	RetryCount  int       // 0 on the first attempt
	IsRetry     bool      // RetryCount > 0
}

// Alarmer is implemented by a class that wants its alarms. The alarm is
// cleared when Alarm returns nil, unless the handler set or deleted that
// alarm itself; on an error or a panic its writes are discarded and the
// alarm is retried with backoff.
type Alarmer interface {
	Alarm(ctx *Ctx, info AlarmInfo) error
}

// AlarmChange is an alarm set (At) or deleted by an acknowledged event.
type AlarmChange struct {
	Name    string
	At      time.Time // the new due time; for a deletion the deleted one (zero if unknown)
	Deleted bool
}

// AlarmScheduler learns what the log holds about alarms. Its methods run on
// the activation's goroutine and must not block for long or call back into
// the runtime.
type AlarmScheduler interface {
	// AlarmsCommitted reports the alarm changes of an acknowledged event,
	// the last change per alarm name, in the event's order.
	AlarmsCommitted(ref Ref, version uint64, changes []AlarmChange)
	// AlarmsLoaded reports the pending alarms of an object just activated,
	// so schedules missing after a crash can be published again.
	// version is the object's version the pending set was read at.
	AlarmsLoaded(ref Ref, version uint64, pending map[string]time.Time)
}

// WithAlarmRetries sets how often a failing Alarm handler of the class is
// retried before its fire goes to the dead letters (default 6; 0: never
// retried). It returns c, for use at definition.
func (c *Class) WithAlarmRetries(n int) *Class {
	if n < 0 {
		n = 0
	}
	c.alarmRetries = &n
	return c
}

// AlarmRetries is the class's retry count for failing Alarm handlers.
func (c *Class) AlarmRetries() int {
	if c.alarmRetries == nil {
		return DefaultAlarmRetries
	}
	return *c.alarmRetries
}

func (l *layer) setAlarm(name string, e entry) {
	if l.alarms == nil {
		l.alarms = make(map[string]entry)
	}
	l.alarms[name] = e
}

func (w *writeSet) stageAlarm(name string, e entry) error {
	cost := 0
	_, had := w.alarms[name]
	if !had {
		cost = writeCost(name, nil) + 8 // the due time
	}
	if w.bytes+cost > WriteSetBytesMax {
		return tooLarge("write set", w.bytes+cost, WriteSetBytesMax)
	}
	if !had {
		w.alarmOrder = append(w.alarmOrder, name)
	}
	w.setAlarm(name, e)
	w.bytes += cost
	return nil
}

// validAlarmName checks a name given for an alarm: alarmNameShape, and no
// control characters (as object names).
func validAlarmName(name string) error {
	if err := alarmNameShape(name); err != nil {
		return err
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: alarm name has control character %U", ErrBadInput, r)
		}
	}
	return nil
}

// alarmNameShape checks what every alarm name, even one set before control
// characters were refused, must be: at most AlarmNameBytesMax of UTF-8.
func alarmNameShape(name string) error {
	switch {
	case len(name) > AlarmNameBytesMax:
		return fmt.Errorf("%w: alarm name is %d bytes, at most %d", ErrBadInput, len(name), AlarmNameBytesMax)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: alarm name is not valid UTF-8", ErrBadInput)
	}
	return nil
}

// alarms merges the snapshot's pending alarms with every layer above it.
func (s *Storage) alarms() (map[string]int64, error) {
	a := s.t.a
	base, err := a.rt.proj.Alarms(a.class.name, a.id)
	if err != nil {
		return nil, fmt.Errorf("alarms of %s/%s: %w", a.class.name, a.id, err)
	}
	ls := s.layers()
	for i := len(ls) - 1; i >= 0; i-- {
		for name, e := range ls[i].alarms {
			if e.del {
				delete(base, name)
			} else {
				base[name] = e.at
			}
		}
	}
	return base, nil
}

func (s *Storage) getAlarm(name string) (int64, bool, error) {
	for _, l := range s.layers() {
		if e, hit := l.alarms[name]; hit {
			return e.at, !e.del, nil
		}
	}
	a := s.t.a
	all, err := a.rt.proj.Alarms(a.class.name, a.id)
	if err != nil {
		return 0, false, fmt.Errorf("alarm of %s/%s: %w", a.class.name, a.id, err)
	}
	at, ok := all[name]
	return at, ok, nil
}

// GetAlarm returns the time the default alarm is set to, or false if none.
func (s *Storage) GetAlarm() (time.Time, bool, error) { return s.GetAlarmNamed("") }

// SetAlarm sets (or replaces) the default alarm. A time in the past fires
// at once.
func (s *Storage) SetAlarm(at time.Time) error { return s.SetAlarmNamed("", at) }

// DeleteAlarm removes the default alarm; it reports whether one was set.
func (s *Storage) DeleteAlarm() (bool, error) { return s.DeleteAlarmNamed("") }

// GetAlarmNamed returns the time alarm name is set to, or false if none.
func (s *Storage) GetAlarmNamed(name string) (time.Time, bool, error) {
	if err := s.check(); err != nil {
		return time.Time{}, false, err
	}
	if err := validAlarmName(name); err != nil {
		return time.Time{}, false, err
	}
	at, ok, err := s.getAlarm(name)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.Unix(0, at), true, nil
}

// SetAlarmNamed sets (or replaces) alarm name ("" is the default alarm).
// An object holds at most NamedAlarmsMax named alarms besides the default
// one.
func (s *Storage) SetAlarmNamed(name string, at time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := validAlarmName(name); err != nil {
		return err
	}
	if at.IsZero() || at.Year() < 1970 || at.Year() > 2200 {
		return fmt.Errorf("%w: alarm time %s out of range", ErrBadInput, at.Format(time.RFC3339Nano))
	}
	if name != "" {
		all, err := s.alarms()
		if err != nil {
			return err
		}
		if _, had := all[name]; !had {
			delete(all, "")
			if len(all) >= NamedAlarmsMax {
				return fmt.Errorf("%w: object already has %d named alarms, at most %d", ErrBadInput, len(all), NamedAlarmsMax)
			}
		}
	}
	return s.ws.stageAlarm(name, entry{at: at.UnixNano()})
}

// DeleteAlarmNamed removes alarm name; it reports whether it was set.
func (s *Storage) DeleteAlarmNamed(name string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if err := validAlarmName(name); err != nil {
		return false, err
	}
	at, had, err := s.getAlarm(name)
	if err != nil || !had {
		return false, err
	}
	// The deleted alarm's time goes into the event too: history shows what
	// was cancelled, and the scheduler skips purging a schedule that has
	// already fired.
	return true, s.ws.stageAlarm(name, entry{del: true, at: at})
}

// Alarms returns every pending alarm of the object, by name ("" is the
// default alarm).
func (s *Storage) Alarms() (map[string]time.Time, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	all, err := s.alarms()
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(all))
	for name, at := range all {
		out[name] = time.Unix(0, at)
	}
	return out, nil
}

// alarmChanges is the last alarm write per name of a committed event.
func alarmChanges(turns []log.Turn) []AlarmChange {
	var out []AlarmChange
	idx := map[string]int{}
	for _, t := range turns {
		for _, w := range t.Writes {
			var c AlarmChange
			switch w.Op {
			case log.OpSetAlarm:
				c = AlarmChange{Name: w.Key, At: time.Unix(0, w.At)}
			case log.OpDeleteAlarm:
				c = AlarmChange{Name: w.Key, Deleted: true}
				if w.At != 0 {
					c.At = time.Unix(0, w.At)
				}
			default:
				continue
			}
			if i, ok := idx[w.Key]; ok {
				out[i] = c
				continue
			}
			idx[w.Key] = len(out)
			out = append(out, c)
		}
	}
	return out
}

// loadedAlarms reports an activated object's pending alarms to the
// scheduler: the snapshot's, with the overlay of caught-up events on top.
func (a *activation) loadedAlarms() {
	sched := a.rt.cfg.Alarms
	if sched == nil {
		return
	}
	base, err := a.rt.proj.Alarms(a.class.name, a.id)
	if err != nil {
		a.rt.logger.Warn("read pending alarms", "class", a.class.name, "id", a.id, "err", err)
		return
	}
	for name, e := range a.overlay.alarms {
		if e.del {
			delete(base, name)
		} else {
			base[name] = e.at
		}
	}
	if len(base) == 0 {
		return
	}
	pending := make(map[string]time.Time, len(base))
	for name, at := range base {
		pending[name] = time.Unix(0, at)
	}
	sched.AlarmsLoaded(Ref{Class: a.class.name, ID: a.id, Name: a.name}, a.version, pending)
}

// ErrStaleAlarm is returned by Runtime.Alarm for a fire that no longer
// matches the object's alarm (replaced, deleted or already run): nothing ran.
var ErrStaleAlarm = errors.New("stale alarm fire")

// Alarm runs the Alarm turn of ref for the fire described by info, through
// the object's mailbox like any turn, and returns once its event is
// acknowledged. A fire that does not match the object's current alarm of
// that name returns ErrStaleAlarm having run nothing. On success the alarm
// is cleared in the same event (unless the handler set or deleted it).
func (rt *Runtime) Alarm(ctx context.Context, ref Ref, info AlarmInfo) error {
	class, err := rt.Class(ref.Class)
	if err != nil {
		return err
	}
	if err := alarmNameShape(info.Name); err != nil {
		return err
	}
	// The cause names the alarm and the attempt, so history shows retries.
	method := "alarm"
	if info.Name != "" {
		method = "alarm " + info.Name
	}
	if info.RetryCount > 0 {
		method += fmt.Sprintf(" (retry %d)", info.RetryCount)
	}
	cause := Cause{Via: ViaAlarm, Method: method}
	_, err = rt.dispatch(ctx, ref, cause, "Alarm", nil, func(c *Ctx, inst any) (any, error) {
		st := c.Storage()
		at, ok, err := st.getAlarm(info.Name)
		if err != nil {
			return nil, err
		}
		if !ok || at != info.ScheduledAt.UnixNano() {
			return nil, ErrStaleAlarm
		}
		if h, ok := inst.(Alarmer); ok {
			if err := h.Alarm(c, info); err != nil {
				return nil, handlerError(class.name, "Alarm", err)
			}
		}
		// Clear the alarm unless the handler set or deleted it (in this
		// write set, or before a Sync).
		if _, touched := st.ws.alarms[info.Name]; !touched {
			at, ok, err := st.getAlarm(info.Name)
			if err != nil {
				return nil, err
			}
			if ok && at == info.ScheduledAt.UnixNano() {
				if err := st.ws.stageAlarm(info.Name, entry{del: true, at: at}); err != nil {
					return nil, err
				}
			}
		}
		return nil, nil
	})
	return err
}
