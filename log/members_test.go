package log

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestMembersExpireAgainstOwnHeartbeat: silence is judged against this
// node's own latest heartbeat, so a bucket that stores nothing for a
// while (every heartbeat stops at once) freezes the view instead of
// leaving each node alone in it, the owner of everything.
func TestMembersExpireAgainstOwnHeartbeat(t *testing.T) {
	const ttl = time.Second
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name      string
		own, peer time.Time
		live      []string
	}{
		{"both fresh", ago(0), ago(100 * time.Millisecond), []string{"n1", "n2"}},
		{"peer silent while own heartbeats flow", ago(0), ago(2 * ttl), []string{"n1"}},
		{"bucket stalled: both silent", ago(5 * ttl), ago(5*ttl + 100*time.Millisecond), []string{"n1", "n2"}},
		{"peer was silent a TTL before the bucket stalled", ago(5 * ttl), ago(7 * ttl), []string{"n1"}},
	}
	for _, tc := range cases {
		var views [][]string
		m := &Members{cfg: MembersConfig{Node: "n1", TTL: ttl, OnChange: func(v []Member) {
			var names []string
			for _, x := range v {
				names = append(names, x.Node)
			}
			views = append(views, names)
		}}, logger: slog.New(slog.DiscardHandler)}
		m.mu.nodes = map[string]Member{"n1": {Node: "n1", Seen: tc.own}, "n2": {Node: "n2", Seen: tc.peer}}
		m.mu.live = []string{"n1", "n2"}
		m.expire()
		got := []string{"n1", "n2"}
		if len(views) > 0 {
			got = views[len(views)-1]
		}
		if !slices.Equal(got, tc.live) {
			t.Errorf("%s: live %v, want %v", tc.name, got, tc.live)
		}
		if stalled := time.Since(tc.own) > ttl; m.mu.stalled != stalled {
			t.Errorf("%s: stalled %v, want %v", tc.name, m.mu.stalled, stalled)
		}
	}
}
