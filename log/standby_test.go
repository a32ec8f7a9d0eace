package log

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"testing"
	"time"
)

// TestStandByAndResume stops one server's JetStream while the other two
// carry on, then starts it again: it takes no part meanwhile (no leader
// there, its peers see it gone), nothing acknowledged is lost, and once
// resumed it serves the log again, writes included, having caught up.
// That the cut-off server's groups then cause no election at the heal is
// measured where a cut can be made (integration, TestClusterPartition).
func TestStandByAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	srvs, logs := startClusterLogs(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := objID(1)
	r, err := logs[0].Append(ctx, testEvent(id, 1, "before"), 0)
	if err != nil {
		t.Fatal(err)
	}

	if srvs[2].StandingBy() {
		t.Fatal("standing by before StandBy")
	}
	if err := srvs[2].StandBy(); err != nil {
		t.Fatal(err)
	}
	if err := srvs[2].StandBy(); err != nil { // again: nothing to do
		t.Fatalf("second StandBy: %v", err)
	}
	if !srvs[2].StandingBy() || srvs[2].ns.JetStreamEnabled() {
		t.Fatalf("after StandBy: standing by %v, JetStream enabled %v", srvs[2].StandingBy(), srvs[2].ns.JetStreamEnabled())
	}
	if st, err := srvs[2].RaftStatus(); err != nil || !st.StandingBy || st.Server != "n3" || len(st.Streams) != 0 {
		t.Fatalf("raft status standing by: %+v, %v", st, err)
	}
	// The others elect leaders where n3 led and see it gone.
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := srvs[0].RaftStatus()
		if err != nil {
			return err
		}
		if st.MetaLeader == "" || st.MetaLeader == "n3" {
			return fmt.Errorf("meta leader %q", st.MetaLeader)
		}
		for _, s := range st.Streams {
			if s.Leader == "" || s.Leader == "n3" {
				return fmt.Errorf("stream %s leader %q", s.Name, s.Leader)
			}
		}
		return nil
	})
	// The majority writes on.
	for v := uint64(2); v <= 5; v++ {
		if r, err = logs[0].Append(ctx, testEvent(id, v, fmt.Sprintf("v%d", v)), r.Seq); err != nil {
			t.Fatalf("append v%d with n3 standing by: %v", v, err)
		}
	}
	before, err := srvs[0].RaftStatus()
	if err != nil {
		t.Fatal(err)
	}

	if err := srvs[2].Resume(); err != nil {
		t.Fatal(err)
	}
	if srvs[2].StandingBy() || !srvs[2].ns.JetStreamEnabled() {
		t.Fatalf("after Resume: standing by %v, JetStream enabled %v", srvs[2].StandingBy(), srvs[2].ns.JetStreamEnabled())
	}
	if err := srvs[2].Resume(); err != nil { // again: nothing to do
		t.Fatalf("second Resume: %v", err)
	}
	// n3 rejoins as a follower: it knows the meta leader, caught up, and
	// writes through it land on top of the majority's.
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := srvs[2].RaftStatus()
		if err != nil {
			return err
		}
		if st.MetaLeader != before.MetaLeader {
			return fmt.Errorf("n3 sees meta leader %q, the majority %q", st.MetaLeader, before.MetaLeader)
		}
		for _, s := range st.Streams {
			if s.Leader == "" {
				return fmt.Errorf("n3: stream %s without a leader", s.Name)
			}
		}
		return nil
	})
	if r, err = logs[2].Append(ctx, testEvent(id, 6, "v6"), r.Seq); err != nil {
		t.Fatalf("append through n3 after Resume: %v", err)
	}
	for i, l := range logs {
		recs := readAll(t, l, "test", id, 1)
		if len(recs) != 6 {
			t.Fatalf("n%d reads %d events, want 6", i+1, len(recs))
		}
		for k, rec := range recs {
			if rec.Event.Version != uint64(k+1) {
				t.Fatalf("n%d: event %d has version %d", i+1, k, rec.Event.Version)
			}
		}
	}
	// Rejoining caused no election: the majority's meta leader stayed.
	after, err := srvs[0].RaftStatus()
	if err != nil || after.MetaLeader != before.MetaLeader {
		t.Fatalf("meta leader %q before n3 resumed, %q after (%v)", before.MetaLeader, after.MetaLeader, err)
	}
}

// TestStandByResumesWhenRoutesComeBack: a server standing by (its lease
// ran out because the others stopped) resumes by itself once its routes
// reach a majority again, without waiting for the lease: the node that
// restarts needs a JetStream quorum to join, so to acknowledge the beats
// that would bring the lease back.
func TestStandByResumesWhenRoutesComeBack(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster and restarts two of them")
	}
	ports := []int{testport.Free(t), testport.Free(t), testport.Free(t)}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", p))
	}
	run := func(i int) *Server { return runClusterServer(t, dirs[i], i, ports[i], routes) }
	srvs := []*Server{run(0), run(1), run(2)}
	awaitRoutes(t, srvs)
	l1 := openClusterLog(t, srvs[0], "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := l1.Append(ctx, testEvent(objID(1), 1, "a"), 0)
	if err != nil {
		t.Fatal(err)
	}

	// n1 stands by; n2 and n3 stop, so its routes fall below a majority.
	if err := srvs[0].StandBy(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2} {
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		if err := srvs[i].Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		scancel()
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := srvs[0].Routes(); n != 0 {
			return fmt.Errorf("n1 has %d routes", n)
		}
		return nil
	})
	time.Sleep(3 * standbyRoutesCheck) // the watch sees the routes fallen
	if !srvs[0].StandingBy() {
		t.Fatal("n1 resumed with no route")
	}
	// n2 comes back: with n1 resumed they form a quorum, and the log
	// opens on n2 (which needs one) and takes writes.
	srvs[1] = run(1)
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if srvs[0].StandingBy() {
			return errors.New("n1 still standing by")
		}
		return nil
	})
	l2 := openClusterLog(t, srvs[1], "n2")
	if _, err := l2.Append(ctx, testEvent(objID(1), 2, "b"), r.Seq); err != nil {
		t.Fatalf("append with n1 resumed and n2 restarted: %v", err)
	}
}

func TestStandByAlone(t *testing.T) {
	srv := startServer(t)
	if err := srv.StandBy(); err == nil || srv.StandingBy() {
		t.Fatalf("StandBy of a server alone: %v, standing by %v; want an error and no change", err, srv.StandingBy())
	}
	if err := srv.Resume(); err != nil {
		t.Fatalf("Resume of a server not standing by: %v", err)
	}
	if !srv.ns.JetStreamEnabled() {
		t.Fatal("JetStream stopped")
	}
}
