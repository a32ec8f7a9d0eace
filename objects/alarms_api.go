package objects

import (
	"context"
	"encoding/binary"
	"time"
)

// Alarm operations from outside the object (the gateway's
// /v1/objects/{class}/{name}/alarm, for inspection and for classes such as
// kv that do not manage their alarms themselves). Each runs as a turn of
// its own, through the mailbox and the output gate like any turn.

// GetAlarms returns ref's pending alarms by name ("" is the default alarm).
func (rt *Runtime) GetAlarms(ctx context.Context, ref Ref, cause Cause) (map[string]time.Time, error) {
	cause.Via, cause.Method = ViaSystem, "GET alarm"
	out, err := rt.dispatch(ctx, ref, cause, "GetAlarms", nil, func(c *Ctx, _ any) (any, error) {
		return c.Storage().Alarms()
	})
	if err != nil {
		return nil, err
	}
	return out.(map[string]time.Time), nil
}

// SetAlarmAt sets ref's alarm name ("" is the default alarm) to at and
// returns once the change is durable. It returns the time set: at, or for
// a keyed retry the time its first attempt set.
func (rt *Runtime) SetAlarmAt(ctx context.Context, ref Ref, name string, at time.Time, cause Cause) (time.Time, error) {
	cause.Via, cause.Method = ViaSystem, "PUT alarm"
	err := keyed(&cause, func() []byte {
		return requestHash(ViaSystem, cause.Method, []byte(name), binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
	})
	if err != nil {
		return time.Time{}, err
	}
	out, err := rt.dispatch(ctx, ref, cause, "SetAlarm", setAlarmOutcome, func(c *Ctx, _ any) (any, error) {
		return at, c.Storage().SetAlarmNamed(name, at)
	})
	if err != nil {
		return time.Time{}, err
	}
	return out.(time.Time), nil
}

// DeleteAlarmAt deletes ref's alarm name and reports whether it was set.
func (rt *Runtime) DeleteAlarmAt(ctx context.Context, ref Ref, name string, cause Cause) (bool, error) {
	cause.Via, cause.Method = ViaSystem, "DELETE alarm"
	if err := keyed(&cause, func() []byte { return requestHash(ViaSystem, cause.Method, []byte(name)) }); err != nil {
		return false, err
	}
	out, err := rt.dispatch(ctx, ref, cause, "DeleteAlarm", deleteAlarmOutcome, func(c *Ctx, _ any) (any, error) {
		return c.Storage().DeleteAlarmNamed(name)
	})
	if err != nil {
		return false, err
	}
	return out.(bool), nil
}

// AlarmRecord is one alarm as an operator lists it: pending (Reason empty)
// or dead-lettered after its retries were spent.
type AlarmRecord struct {
	Class  string    `json:"class"`
	ID     ID        `json:"-"`
	Object string    `json:"object,omitempty"` // the object's name, if it has one
	Name   string    `json:"name"`             // "" is the default alarm
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"` // why it was dead-lettered
}

// AbandonAlarm clears ref's alarm name if it is still due at at: its
// retries are spent and its fire went to the dead letters. The clearing is
// an alarm turn of its own, so history shows the alarm was given up.
func (rt *Runtime) AbandonAlarm(ctx context.Context, ref Ref, name string, at time.Time) error {
	cause := Cause{Via: ViaAlarm, Method: "alarm abandoned " + name}
	_, err := rt.dispatch(ctx, ref, cause, "AbandonAlarm", nil, func(c *Ctx, _ any) (any, error) {
		st := c.Storage()
		cur, ok, err := st.getAlarm(name)
		if err != nil || !ok || cur != at.UnixNano() {
			return nil, err
		}
		return nil, st.ws.stageAlarm(name, entry{del: true, at: cur})
	})
	return err
}

// RearmAlarm sets ref's alarm name to at again unless an alarm of that
// name is pending (an operator's replay of a dead-lettered alarm; at is in
// the past, so it fires at once). It reports whether it set it.
func (rt *Runtime) RearmAlarm(ctx context.Context, ref Ref, name string, at time.Time) (bool, error) {
	cause := Cause{Via: ViaSystem, Method: "alarm retry " + name}
	out, err := rt.dispatch(ctx, ref, cause, "RearmAlarm", nil, func(c *Ctx, _ any) (any, error) {
		st := c.Storage()
		if _, ok, err := st.getAlarm(name); err != nil || ok {
			return false, err
		}
		return true, st.ws.stageAlarm(name, entry{at: at.UnixNano()})
	})
	if err != nil {
		return false, err
	}
	return out.(bool), nil
}
