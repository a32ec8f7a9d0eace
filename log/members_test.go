package log

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// silence stops beating and answering without a word to the others, as a
// node cut off or killed would.
func (m *Members) silence() {
	m.cancel()
	m.wg.Wait()
	m.unsubscribe()
}

// TestMemberStateLease: the lease is renewed by a beat a majority of the
// known nodes received, two thirds of a TTL past its sending; a node alone
// in a known set of three never renews it, however long it waits; a
// renewal after a lapse counts the lapse.
func TestMemberStateLease(t *testing.T) {
	const hb, ttl = time.Second, 3 * time.Second
	t0 := time.Unix(1000, 0)
	s := newMemberState("n1", hb, ttl)
	s.heardFrom("n2", nil, nil, t0)
	s.heardFrom("n3", nil, nil, t0)
	if q := s.quorum(); q != 2 {
		t.Fatalf("quorum of 3 known: %d", q)
	}
	seq := s.beat(t0)
	if !s.leaseUntil().IsZero() {
		t.Fatalf("lease before any ack: %v", s.leaseUntil())
	}
	s.acked("n2", seq)
	if got, want := s.leaseUntil(), t0.Add(2*time.Second); !got.Equal(want) {
		t.Fatalf("lease after a majority's ack: %v, want %v", got, want)
	}
	// Cut off: beats go out, no ack comes back.
	for i := 1; i <= 10; i++ {
		s.beat(t0.Add(time.Duration(i) * hb))
	}
	if got := s.leaseUntil(); !got.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("lease renewed without acks: %v", got)
	}
	// An ack of an old beat does not bring the lease back past its time.
	s.acked("n3", seq)
	if s.lapses != 0 {
		t.Fatalf("lapses %d after an old ack", s.lapses)
	}
	seq = s.beat(t0.Add(11 * hb))
	s.acked("n3", seq)
	if got, want := s.leaseUntil(), t0.Add(13*time.Second); !got.Equal(want) || s.lapses != 1 {
		t.Fatalf("lease %v lapses %d after a renewal past a lapse; want %v and 1", got, s.lapses, want)
	}
	// An ack from a node not known (it left) does not count.
	s.left("n2")
	s.left("n3")
	s2 := newMemberState("n1", hb, ttl)
	s2.heardFrom("n2", nil, nil, t0)
	s2.heardFrom("n3", nil, nil, t0)
	seq = s2.beat(t0)
	s2.acked("n4", seq)
	if !s2.leaseUntil().IsZero() {
		t.Fatalf("an unknown node's ack renewed the lease")
	}
	// Alone, and known alone: its own beat is the majority.
	s3 := newMemberState("n1", hb, ttl)
	s3.beat(t0)
	if s3.leaseUntil().IsZero() {
		t.Fatalf("a node known alone has no lease")
	}
}

// TestMemberStateView: a peer is dropped only once this node and every
// node it hears agree that the peer is silent; a pause of this node gives
// every peer a TTL again.
func TestMemberStateView(t *testing.T) {
	const hb, ttl = time.Second, 3 * time.Second
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	cases := []struct {
		name string
		run  func(s *memberState) time.Time // returns the time to judge at
		live []string
	}{
		{"all heard", func(s *memberState) time.Time {
			s.heardFrom("n2", nil, []string{"n1", "n3"}, at(0))
			s.heardFrom("n3", nil, []string{"n1", "n2"}, at(0))
			return at(time.Second)
		}, []string{"n1", "n2", "n3"}},
		{"n3 silent to all", func(s *memberState) time.Time {
			s.heardFrom("n3", nil, []string{"n1", "n2"}, at(0))
			s.heardFrom("n2", nil, []string{"n1"}, at(4*time.Second))
			return at(4 * time.Second)
		}, []string{"n1", "n2"}},
		{"n3 silent to n1 only: n2 still hears it", func(s *memberState) time.Time {
			s.heardFrom("n3", nil, []string{"n1", "n2"}, at(0))
			s.heardFrom("n2", nil, []string{"n1", "n3"}, at(4*time.Second))
			return at(4 * time.Second)
		}, []string{"n1", "n2", "n3"}},
		{"n2's report that it hears n3 is over a TTL old", func(s *memberState) time.Time {
			s.heardFrom("n3", nil, nil, at(0))
			s.heardFrom("n2", nil, []string{"n3"}, at(0))
			return at(4 * time.Second)
		}, []string{"n1"}},
		{"within a TTL", func(s *memberState) time.Time {
			s.heardFrom("n3", nil, nil, at(0))
			return at(3 * time.Second)
		}, []string{"n1", "n3"}},
		{"after a pause of this node, everyone gets a TTL again", func(s *memberState) time.Time {
			s.heardFrom("n2", nil, nil, at(0))
			s.heardFrom("n3", nil, nil, at(0))
			s.tick(at(0))
			s.tick(at(10 * time.Second))
			return at(11 * time.Second)
		}, []string{"n1", "n2", "n3"}},
		{"after a pause and a TTL, the silent go", func(s *memberState) time.Time {
			s.heardFrom("n2", nil, nil, at(0))
			s.heardFrom("n3", nil, nil, at(0))
			s.tick(at(0))
			s.tick(at(10 * time.Second))
			s.heardFrom("n2", nil, nil, at(12*time.Second))
			return at(14 * time.Second)
		}, []string{"n1", "n2"}},
	}
	for _, tc := range cases {
		s := newMemberState("n1", hb, ttl)
		now := tc.run(s)
		if got := s.live(now); !slices.Equal(got, tc.live) {
			t.Errorf("%s: live %v, want %v", tc.name, got, tc.live)
		}
	}
}

// TestMembersLeaseWithoutTheBucket: three nodes on three clustered
// servers. The lease and the view do not depend on the membership bucket
// (deleting it changes nothing); when one server goes, the two left keep
// their leases at every moment and drop it; when a second goes, the last
// loses its lease (alone is not a majority of three) within two thirds of
// a TTL of its last acked beat, and keeps the others known.
func TestMembersLeaseWithoutTheBucket(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster")
	}
	srvs := startCluster(t, 3)
	ctx := context.Background()
	const hb, ttl = 200 * time.Millisecond, 3 * time.Second
	var ms [3]*Members
	for i := range 3 {
		l := openClusterLog(t, srvs[i], fmt.Sprintf("n%d", i+1))
		m, err := l.JoinMembers(ctx, MembersConfig{Node: fmt.Sprintf("n%d", i+1), Heartbeat: hb, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	names := func(m *Members) string {
		var s []string
		for _, x := range m.Live() {
			s = append(s, x.Node)
		}
		return strings.Join(s, ",")
	}
	for i, m := range ms {
		checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			if got := names(m); got != "n1,n2,n3" || !time.Now().Before(m.LeaseUntil()) {
				return fmt.Errorf("n%d sees %s, lease until %s", i+1, got, time.Until(m.LeaseUntil()))
			}
			return nil
		})
	}
	if err := ms[0].l.js.DeleteKeyValue(ctx, MembersBucket); err != nil {
		t.Fatal(err)
	}
	// watch samples n1's and n2's leases until stop; a lease found run out
	// (other than by a pause of the test itself) is a failure.
	watch := func(stop <-chan struct{}) <-chan string {
		out := make(chan string, 1)
		go func() {
			defer close(out)
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond): // sampling
				}
				now := time.Now()
				paused := now.Sub(last) > ttl/3
				last = now
				for i := range 2 {
					if !paused && !now.Before(ms[i].LeaseUntil()) {
						out <- fmt.Sprintf("n%d's lease ran out (%s ago)", i+1, now.Sub(ms[i].LeaseUntil()))
						return
					}
				}
			}
		}()
		return out
	}
	stop := make(chan struct{})
	lost := watch(stop)
	time.Sleep(5 * hb) // the bucket is gone: leases go on
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	srvs[2].Shutdown(sctx)
	cancel()
	for i := range 2 {
		checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			if got := names(ms[i]); got != "n1,n2" {
				return fmt.Errorf("n%d sees %s after n3's server stopped", i+1, got)
			}
			return nil
		})
	}
	time.Sleep(2 * ttl)
	close(stop)
	if msg, ok := <-lost; ok {
		t.Fatalf("the majority lost a lease: %s", msg)
	}
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	srvs[1].Shutdown(sctx)
	cancel()
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if time.Now().Before(ms[0].LeaseUntil()) {
			return fmt.Errorf("n1 alone still holds its lease until %s", time.Until(ms[0].LeaseUntil()))
		}
		return nil
	})
	ms[0].mu.Lock()
	known := len(ms[0].mu.st.known)
	ms[0].mu.Unlock()
	if known != 3 {
		t.Fatalf("n1 alone knows %d nodes, want 3 (silent nodes stay known)", known)
	}
	ms[0].silence()
	ms[1].silence()
	ms[2].silence()
}
