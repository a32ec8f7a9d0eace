package classes

import (
	"encoding/json"
	"time"

	"github.com/strata-objects/strata/objects"
)

// session is a login session that expires after a period of inactivity:
// every touch pushes its alarm back; when the alarm fires the session's data
// is deleted. It shows alarms used for real: the expiry survives restarts
// and crashes because the alarm is in the log, and an expiry replaced by a
// later touch never runs.
type session struct{}

// Session bounds.
const (
	sessionTTLDefault = 30 * time.Minute
	sessionTTLMax     = 30 * 24 * time.Hour
)

// TouchInput starts or extends a session. TTL is a Go duration ("15m");
// default 30m. Data, if given, replaces the session's data.
type TouchInput struct {
	TTL  string          `json:"ttl"`
	Data json.RawMessage `json:"data,omitempty"`
}

// SessionState is what the session methods answer.
type SessionState struct {
	Active    bool            `json:"active"`
	Data      json.RawMessage `json:"data,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
}

// Session is the "session" class: touch, get, end. It expires by itself.
func Session() *objects.Class {
	return objects.Define("session", func() *session { return &session{} })
}

// Touch starts the session or extends it by its TTL from now.
func (s *session) Touch(ctx *objects.Ctx, in TouchInput) (SessionState, error) {
	ttl := sessionTTLDefault
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 || d > sessionTTLMax {
			return SessionState{}, objects.Errorf(400, "bad_ttl", "ttl %q: want a duration between 0 and %s", in.TTL, sessionTTLMax)
		}
		ttl = d
	}
	st := ctx.Storage()
	if in.Data != nil {
		if err := st.Put("data", in.Data); err != nil {
			return SessionState{}, err
		}
	} else if _, ok, err := st.Get("data"); err != nil {
		return SessionState{}, err
	} else if !ok {
		if err := st.Put("data", []byte("null")); err != nil {
			return SessionState{}, err
		}
	}
	expires := time.Now().Add(ttl)
	if err := st.SetAlarm(expires); err != nil {
		return SessionState{}, err
	}
	return s.Get(ctx)
}

// Get returns the session; Active is false once it expired or ended.
func (s *session) Get(ctx *objects.Ctx) (SessionState, error) {
	st := ctx.Storage()
	data, ok, err := st.Get("data")
	if err != nil || !ok {
		return SessionState{}, err
	}
	out := SessionState{Active: true, Data: data}
	if at, ok, err := st.GetAlarm(); err != nil {
		return SessionState{}, err
	} else if ok {
		out.ExpiresAt = &at
	}
	return out, nil
}

// End ends the session now.
func (s *session) End(ctx *objects.Ctx) (SessionState, error) {
	if _, err := ctx.Storage().DeleteAlarm(); err != nil {
		return SessionState{}, err
	}
	return SessionState{}, ctx.Storage().DeleteAll()
}

// Alarm expires the session: its data goes; history keeps it.
func (s *session) Alarm(ctx *objects.Ctx, _ objects.AlarmInfo) error {
	return ctx.Storage().DeleteAll()
}
