package log

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
		name               string
		own, peer, resumed time.Time
		live               []string
	}{
		{"both fresh", ago(0), ago(100 * time.Millisecond), time.Time{}, []string{"n1", "n2"}},
		{"peer silent while own heartbeats flow", ago(0), ago(2 * ttl), time.Time{}, []string{"n1"}},
		{"bucket stalled: both silent", ago(5 * ttl), ago(5*ttl + 100*time.Millisecond), time.Time{}, []string{"n1", "n2"}},
		{"peer was silent a TTL before the bucket stalled", ago(5 * ttl), ago(7 * ttl), time.Time{}, []string{"n1"}},
		{"own heartbeats just came back, the peer's not yet", ago(0), ago(5 * ttl), ago(ttl / 2), []string{"n1", "n2"}},
		{"own heartbeats back for over a TTL, the peer still silent", ago(0), ago(5 * ttl), ago(2 * ttl), []string{"n1"}},
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
		m.mu.resumed = tc.resumed
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

// kvPut is a KV put as the watcher delivers it.
type kvPut struct {
	jetstream.KeyValueEntry
	key string
}

func (p kvPut) Key() string                     { return p.key }
func (p kvPut) Value() []byte                   { return nil }
func (p kvPut) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

// TestMembersResumedAfterGap: this node's own heartbeat arriving after a
// gap of more than two intervals marks the moment the bucket resumed;
// one on time does not.
func TestMembersResumedAfterGap(t *testing.T) {
	m := &Members{cfg: MembersConfig{Node: "n1", Heartbeat: 100 * time.Millisecond}, logger: slog.New(slog.DiscardHandler)}
	m.mu.nodes = map[string]Member{"n1": {Node: "n1", Seen: time.Now().Add(-50 * time.Millisecond)}}
	m.apply(kvPut{key: "n1"})
	if !m.mu.resumed.IsZero() {
		t.Fatalf("a heartbeat on time set resumed")
	}
	m.mu.nodes["n1"] = Member{Node: "n1", Seen: time.Now().Add(-time.Second)}
	m.apply(kvPut{key: "n2"})
	if !m.mu.resumed.IsZero() {
		t.Fatalf("another node's heartbeat set resumed")
	}
	m.apply(kvPut{key: "n1"})
	if time.Since(m.mu.resumed) > time.Second {
		t.Fatalf("own heartbeat after a 1 s gap (interval 100ms): resumed %v", m.mu.resumed)
	}
}

// TestMembersLease: the lease runs two thirds of a TTL past the latest
// heartbeat the bucket stored; when heartbeats stop being stored (here the
// bucket is gone) it runs out, and before any other node could drop this
// one (a TTL after receiving that heartbeat).
func TestMembersLease(t *testing.T) {
	l := openLog(t, startServer(t), Config{RequestTimeout: time.Second})
	ctx := context.Background()
	const hb, ttl = 50 * time.Millisecond, 600 * time.Millisecond
	before := time.Now()
	m, err := l.JoinMembers(ctx, MembersConfig{Node: "n1", Heartbeat: hb, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Leave(ctx) // fails: the bucket is gone
	if u := m.LeaseUntil(); u.Before(before.Add(ttl*2/3)) || u.After(time.Now().Add(ttl*2/3)) {
		t.Fatalf("lease until %s after joining at %s, want two thirds of a TTL after the first heartbeat", u.Sub(before), before)
	}
	time.Sleep(3 * hb)
	renewed := m.LeaseUntil()
	if !renewed.After(before.Add(ttl * 2 / 3)) {
		t.Fatalf("lease not renewed by later heartbeats")
	}
	// The bucket goes away: no heartbeat is stored from now on.
	if err := l.js.DeleteKeyValue(ctx, MembersBucket); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if time.Now().Before(m.LeaseUntil()) {
			return fmt.Errorf("lease still held %s after the server stopped", time.Since(stopped))
		}
		return nil
	})
	if m.LeaseUntil().After(stopped.Add(ttl)) {
		t.Fatalf("lease ran until %s after the heartbeats stopped: past a TTL", m.LeaseUntil().Sub(stopped))
	}
}
