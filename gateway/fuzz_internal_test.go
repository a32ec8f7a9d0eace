package gateway

import (
	"testing"
	"time"
)

// FuzzBodyDecode: the body decoders (restore, alarm) never panic, and
// what they accept is in range: exactly one target, a version from 1, or
// a time that int64 nanoseconds hold. (Bodies that are not UTF-8 are
// refused before them, by readJSONBody: FuzzRPCBody covers that path.)
func FuzzBodyDecode(f *testing.F) {
	for _, s := range []string{
		`{"version":1}`, `{"version":0}`, `{"at":"2026-01-01T00:00:00Z"}`, `{"at":"1442-05-18T00:00:00Z"}`,
		`{"version":1,"at":"2026-01-01T00:00:00Z"}`, `{"in":"5s"}`, `{"in":"2562047h"}`, `{"at":"9999-12-31T23:59:59.999999999Z"}`,
		`{"version":18446744073709551615}`, `{}`, `[]`, `null`, "{\"at\":\"\xff\"}", `{"version":1} {}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		at, err := restoreTarget(body)
		if err == nil {
			switch {
			case at.Version == 0 && at.Time.IsZero():
				t.Fatalf("restore %q accepted with no target", body)
			case at.Version != 0 && !at.Time.IsZero():
				t.Fatalf("restore %q accepted with two targets", body)
			case !at.Time.IsZero() && time.Unix(0, at.Time.UnixNano()).Compare(at.Time) != 0:
				t.Fatalf("restore %q accepted a time that wraps: %s", body, at.Time)
			}
		}
		if a, err := alarmTime(body, now); err == nil && time.Unix(0, a.UnixNano()).Compare(a) != 0 {
			t.Fatalf("alarm %q accepted a time that wraps: %s", body, a)
		}
	})
}
