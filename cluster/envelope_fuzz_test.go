package cluster

import (
	"net/http"
	"testing"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// FuzzEnvelope: what a node receives from another (a forwarded request, a
// reply, a WebSocket frame) decodes or fails, never panics, and an
// accepted envelope or reply encodes again. Corpus:
// testdata/fuzz/FuzzEnvelope.
func FuzzEnvelope(f *testing.F) {
	for _, v := range []any{
		&Envelope{Kind: KindCall, Class: "counter", ID: log.ID{1}, Name: "a", Method: "increment", Body: []byte(`{"by":1}`), From: "n1",
			Cause: objects.Cause{RequestID: "r1"}},
		&Envelope{Kind: KindFetch, Class: "chat", ID: log.ID{2}, HTTP: &HTTPRequest{Method: "GET", URL: "/x", Host: "h", Header: http.Header{"A": {"b"}}}},
		&Envelope{Kind: KindAlarm, Class: "kv", ID: log.ID{3}, Alarm: &AlarmFire{Name: "n", ScheduledAt: 5, RetryCount: 1}},
		&Envelope{Kind: KindWSClose, Sock: 7, EdgeRun: 8, OwnerRun: 9, Code: 1000, Reason: "bye"},
		&Reply{Out: []byte("1"), Err: &WireError{Code: "fenced", Message: "m", Status: 409}, Node: "n2", Run: 3},
	} {
		b, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var env Envelope
		if decode(b, &env) == nil {
			if _, err := encode(&env); err != nil {
				t.Fatalf("an accepted envelope does not encode: %v", err)
			}
			_ = env.ref()
		}
		var rep Reply
		if decode(b, &rep) == nil {
			if _, err := encode(&rep); err != nil {
				t.Fatalf("an accepted reply does not encode: %v", err)
			}
			if rep.Err != nil {
				_ = rep.Err.err()
			}
		}
	})
}
