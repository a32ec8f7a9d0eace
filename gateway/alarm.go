package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/strata-objects/strata/objects"
)

// The alarm routes:
//
//	GET    /v1/objects/{class}/{name}/alarm[?name=n]  the alarm and every pending one
//	PUT    /v1/objects/{class}/{name}/alarm[?name=n]  {"at":"RFC3339Nano"} or {"in":"5s"}
//	DELETE /v1/objects/{class}/{name}/alarm[?name=n]
//
// name selects a named alarm; without it the default alarm is meant.

type alarmBody struct {
	At string `json:"at,omitempty"`
	In string `json:"in,omitempty"`
}

type alarmView struct {
	Name   string               `json:"name"`
	At     *time.Time           `json:"at"`
	Alarms map[string]time.Time `json:"alarms,omitempty"`
}

// alarmTime reads a PUT body: exactly one of an absolute time or a delay.
func alarmTime(body []byte, now time.Time) (time.Time, error) {
	var in alarmBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return time.Time{}, fmt.Errorf("%w: alarm body: %w", objects.ErrBadInput, err)
	}
	switch {
	case (in.At == "") == (in.In == ""):
		return time.Time{}, fmt.Errorf("%w: alarm body needs exactly one of \"at\" (RFC 3339) or \"in\" (a duration such as \"5s\")", objects.ErrBadInput)
	case in.At != "":
		return parseTime("alarm at", in.At)
	default:
		d, err := time.ParseDuration(in.In)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: alarm \"in\" %q is not a duration", objects.ErrBadInput, in.In)
		}
		if now.Add(d).After(timeMax) {
			return time.Time{}, fmt.Errorf("%w: alarm \"in\" %q ends past %s", objects.ErrBadRange, in.In, timeMax.Format(time.RFC3339))
		}
		return now.Add(d), nil
	}
}

func (g *Gateway) alarm(ctx context.Context, w http.ResponseWriter, r *http.Request, rt route, cause objects.Cause) {
	if rt.rest != "" {
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "want …/alarm, with ?name= for a named alarm"})
		return
	}
	name := r.URL.Query().Get("name")
	view := alarmView{Name: name}
	switch r.Method {
	case http.MethodGet:
		all, err := g.cfg.Backend.GetAlarms(ctx, rt.ref, cause)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if at, ok := all[name]; ok {
			view.At = &at
		}
		view.Alarms = all
		writeJSON(w, http.StatusOK, view)
	case http.MethodPut:
		body, err := g.readJSONBody(w, r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		at, err := alarmTime(body, time.Now())
		if err != nil {
			writeError(w, r, err)
			return
		}
		if cause.IdemKey != "" {
			// What was asked, not the time it works out to: a retry of
			// {"in":"5s"} asks the same.
			cause.IdemHash = alarmRequestHash(r.Method, name, body)
		}
		at, err = g.cfg.Backend.SetAlarmAt(ctx, rt.ref, name, at, cause)
		setReplayed(ctx, w)
		if err != nil {
			writeError(w, r, err)
			return
		}
		view.At = &at
		writeJSON(w, http.StatusOK, view)
	case http.MethodDelete:
		if cause.IdemKey != "" {
			cause.IdemHash = alarmRequestHash(r.Method, name, nil)
		}
		deleted, err := g.cfg.Backend.DeleteAlarmAt(ctx, rt.ref, name, cause)
		setReplayed(ctx, w)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "deleted": deleted})
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "alarm takes GET, PUT or DELETE"})
	}
}

// alarmRequestHash is what a keyed alarm write asked.
func alarmRequestHash(method, name string, body []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s alarm %d:%s\n", method, len(name), name)
	h.Write(body)
	return h.Sum(nil)
}

// AlarmAdmin is the operator's view of a node's alarms (the alarms
// package's Service is one).
type AlarmAdmin interface {
	PendingAlarms(ctx context.Context, class string) ([]objects.AlarmRecord, error)
	DeadAlarms(ctx context.Context) ([]objects.AlarmRecord, error)
	RetryDead(ctx context.Context) (int, error)
}

type alarmRecordView struct {
	Class  string    `json:"class"`
	ID     string    `json:"id"`
	Object string    `json:"object,omitempty"`
	Name   string    `json:"name"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

func alarmRecords(rs []objects.AlarmRecord) map[string]any {
	out := make([]alarmRecordView, len(rs))
	for i, r := range rs {
		out[i] = alarmRecordView{Class: r.Class, ID: r.ID.String(), Object: r.Object, Name: r.Name, At: r.At, Reason: r.Reason}
	}
	return map[string]any{"alarms": out}
}

// Operator routes, served when Config.Alarms is set:
//
//	GET  /v1/alarms[?class=c]     pending alarms (at most 10,000)
//	GET  /v1/alarms/dead          dead-lettered alarms
//	POST /v1/alarms/dead/retry    fire every dead-lettered alarm again
func (g *Gateway) alarmAdminRoutes() {
	a := g.cfg.Alarms
	g.handle("GET /v1/alarms", func(w http.ResponseWriter, r *http.Request) {
		class := r.URL.Query().Get("class")
		if class != "" {
			if err := objects.ValidateClassName(class); err != nil {
				writeError(w, r, err)
				return
			}
		}
		rs, err := a.PendingAlarms(r.Context(), class)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, alarmRecords(rs))
	})
	g.handle("GET /v1/alarms/dead", func(w http.ResponseWriter, r *http.Request) {
		rs, err := a.DeadAlarms(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, alarmRecords(rs))
	})
	g.handle("POST /v1/alarms/dead/retry", func(w http.ResponseWriter, r *http.Request) {
		if err := g.health(); err != nil {
			writeError(w, r, &routeError{http.StatusServiceUnavailable, "unhealthy", "this node refuses writes: " + err.Error()})
			return
		}
		n, err := a.RetryDead(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"retried": n})
	})
}
