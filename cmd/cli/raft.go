package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
)

// raftStatus answers GET /v1/cluster/raft from the embedded server's own
// view; nil (the route answers 404) without a clustered embedded server.
func raftStatus(srv *log.Server, clustered bool) func() (gateway.RaftStatus, error) {
	if srv == nil || !clustered {
		return nil
	}
	return func() (gateway.RaftStatus, error) {
		st, err := srv.RaftStatus()
		if err != nil {
			return gateway.RaftStatus{}, err
		}
		out := gateway.RaftStatus{Node: st.Server, StandingBy: st.StandingBy, MetaLeader: st.MetaLeader, MetaSize: st.MetaSize, MetaPeers: raftPeers(st.MetaPeers), Streams: []gateway.StreamRaft{}}
		for _, s := range st.Streams {
			out.Streams = append(out.Streams, gateway.StreamRaft{Name: s.Name, Leader: s.Leader, Replicas: raftPeers(s.Replicas)})
		}
		return out, nil
	}
}

func raftPeers(in []log.RaftPeer) []gateway.RaftPeer {
	out := make([]gateway.RaftPeer, 0, len(in))
	for _, p := range in {
		out = append(out, gateway.RaftPeer{Name: p.Name, Current: p.Current, Offline: p.Offline, ActiveMs: p.Active.Milliseconds(), Lag: p.Lag})
	}
	return out
}

// printRaft prints GET /v1/cluster/raft: strata cluster --raft.
func printRaft(env *Env, b []byte) error {
	var st gateway.RaftStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("cluster: raft answer: %w", err)
	}
	if st.StandingBy {
		_, err := fmt.Fprintf(env.Stdout, "as seen by %s: standing by (no membership lease: its JetStream is stopped until the lease is back)\n", st.Node)
		return err
	}
	leader := st.MetaLeader
	if leader == "" {
		leader = "(none known)"
	}
	fmt.Fprintf(env.Stdout, "as seen by %s: JetStream meta leader %s, %d servers\n", st.Node, leader, st.MetaSize)
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tLEADER\tOTHER PEERS (last heard)")
	row := func(name, leader string, peers []gateway.RaftPeer) {
		if leader == "" {
			leader = "(electing)"
		}
		var ps []string
		for _, p := range peers {
			s := fmt.Sprintf("%s %dms", p.Name, p.ActiveMs)
			if !p.Current {
				s += " not current"
			}
			if p.Offline {
				s += " offline"
			}
			ps = append(ps, s)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, leader, strings.Join(ps, ", "))
	}
	row("(meta)", st.MetaLeader, st.MetaPeers)
	for _, s := range st.Streams {
		row(s.Name, s.Leader, s.Replicas)
	}
	return tw.Flush()
}
