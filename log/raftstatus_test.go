package log

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestRaftStatus: every server of a three-server cluster names the same
// meta leader and each stream's leader; once the meta leader is shut
// down, the two left agree on a new one among themselves. A server alone
// answers ErrNotClustered.
func TestRaftStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	srvs := startCluster(t, 3)
	openClusterLog(t, srvs[0], "n1")
	names := []string{"n1", "n2", "n3"}

	// agreed waits until the servers in idx name one meta leader among
	// names and a leader for every stream, and returns the meta leader.
	agreed := func(idx []int, among []string) string {
		t.Helper()
		var leader string
		checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			leader = ""
			var streams int
			for _, i := range idx {
				st, err := srvs[i].RaftStatus()
				if err != nil {
					return err
				}
				if st.Server != names[i] {
					return fmt.Errorf("server %d answers as %q", i, st.Server)
				}
				if !slices.Contains(among, st.MetaLeader) || leader != "" && st.MetaLeader != leader {
					return fmt.Errorf("%s sees meta leader %q (others %q)", st.Server, st.MetaLeader, leader)
				}
				leader = st.MetaLeader
				if st.MetaSize != 3 || len(st.MetaPeers) != 2 {
					return fmt.Errorf("%s: meta size %d, peers %+v", st.Server, st.MetaSize, st.MetaPeers)
				}
				if streams != 0 && len(st.Streams) != streams || len(st.Streams) == 0 {
					return fmt.Errorf("%s knows %d streams (others %d)", st.Server, len(st.Streams), streams)
				}
				streams = len(st.Streams)
				for _, s := range st.Streams {
					if !slices.Contains(among, s.Leader) || len(s.Replicas) != 2 {
						return fmt.Errorf("%s: stream %s leader %q replicas %+v", st.Server, s.Name, s.Leader, s.Replicas)
					}
				}
			}
			return nil
		})
		return leader
	}
	leader := agreed([]int{0, 1, 2}, names)
	gone := slices.Index(names, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srvs[gone].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var left []int
	var among []string
	for i := range srvs {
		if i != gone {
			left, among = append(left, i), append(among, names[i])
		}
	}
	if next := agreed(left, among); next == leader {
		t.Fatalf("meta leader still %s after its shutdown", leader)
	}

	alone, err := RunEmbedded(EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Shutdown(context.Background())
	if _, err := alone.RaftStatus(); !errors.Is(err, ErrNotClustered) {
		t.Errorf("a server alone: %v, want ErrNotClustered", err)
	}
}

// TestStepDown: a server gives up every stream leadership it holds at
// once, alone, and another takes each over.
func TestStepDown(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	srvs := startCluster(t, 3)
	openClusterLog(t, srvs[0], "n1")
	// led is the streams server i leads, as its own status says; it waits
	// until every stream has a leader.
	led := func(i int) []string {
		t.Helper()
		var out []string
		checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			out = nil
			st, err := srvs[i].RaftStatus()
			if err != nil {
				return err
			}
			for _, s := range st.Streams {
				if s.Leader == "" {
					return fmt.Errorf("stream %s has no leader", s.Name)
				}
				if s.Leader == st.Server {
					out = append(out, s.Name)
				}
			}
			return nil
		})
		return out
	}
	leader := -1
	for i := range srvs {
		if len(led(i)) > 0 {
			leader = i
			break
		}
	}
	if leader < 0 {
		t.Fatal("no server leads a stream")
	}
	before := led(leader)
	n, err := srvs[leader].StepDown()
	if err != nil || n != len(before) {
		t.Fatalf("StepDown: %d, %v; it led %d streams: %v", n, err, len(before), before)
	}
	if now := led(leader); len(now) != 0 {
		t.Fatalf("server %d still leads %v after stepping down", leader, now)
	}
}
