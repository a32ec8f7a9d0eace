package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

func (f *fixture) events(class, name string) int {
	f.t.Helper()
	n := 0
	err := f.node.Log.Read(context.Background(), class, objects.IDFromName(class, name), 1, func(log.Record) error { n++; return nil })
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

type alarmView struct {
	Name   string               `json:"name"`
	At     *time.Time           `json:"at"`
	Alarms map[string]time.Time `json:"alarms"`
}

func (f *fixture) alarm(path string) alarmView {
	f.t.Helper()
	code, body, _ := f.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var v alarmView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		f.t.Fatalf("GET %s: %s: %v", path, body, err)
	}
	return v
}

func TestAlarmRoutes(t *testing.T) {
	f := start(t)
	const path = "/v1/objects/kv/timers/alarm"
	f.post("/v1/objects/kv/timers/rpc/put", `{"key":"k","value":1}`)
	before := f.events("kv", "timers")
	for _, body := range []string{`{"at":"tomorrow"}`, `{"in":"soon"}`, `{}`, `{"at":"2030-01-01T00:00:00Z","in":"5s"}`, `not json`, `{"at":"2030-01-01T00:00:00Z","x":1}`} {
		code, resp, _ := f.do(http.MethodPut, path, body)
		if code != http.StatusBadRequest || !strings.Contains(resp, `"bad_input"`) {
			t.Fatalf("PUT %s: %d %s, want 400 bad_input", body, code, resp)
		}
	}
	code, resp, _ := f.do(http.MethodPut, path+"?name="+strings.Repeat("n", objects.AlarmNameBytesMax+1), `{"in":"1h"}`)
	if code != http.StatusBadRequest {
		t.Fatalf("long name: %d %s", code, resp)
	}
	if got := f.events("kv", "timers"); got != before {
		t.Fatalf("bad input wrote: %d events, had %d", got, before)
	}

	at := time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)
	if code, resp, _ := f.do(http.MethodPut, path+"?name=later", `{"at":"`+at.Format(time.RFC3339Nano)+`"}`); code != http.StatusOK {
		t.Fatalf("PUT at: %d %s", code, resp)
	}
	if v := f.alarm(path + "?name=later"); v.At == nil || !v.At.Equal(at) {
		t.Fatalf("GET named: %+v", v)
	}
	// The default alarm fires (kv has no Alarm handler) and is cleared.
	if code, resp, _ := f.do(http.MethodPut, path, `{"in":"200ms"}`); code != http.StatusOK {
		t.Fatalf("PUT in: %d %s", code, resp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for v := f.alarm(path); v.At != nil; v = f.alarm(path) {
		if time.Now().After(deadline) {
			t.Fatalf("default alarm still pending: %+v", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, resp, _ := f.do(http.MethodDelete, path+"?name=later", ""); code != http.StatusOK || !strings.Contains(resp, `"deleted":true`) {
		t.Fatalf("DELETE: %d %s", code, resp)
	}
	if v := f.alarm(path); len(v.Alarms) != 0 {
		t.Fatalf("alarms left: %+v", v)
	}
	if code, _, _ := f.do(http.MethodPost, path, ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST alarm: %d", code)
	}
}
