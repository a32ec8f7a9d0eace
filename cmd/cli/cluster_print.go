package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/strata-objects/strata/cluster"
)

func printCluster(env *Env, b []byte) error {
	var st struct {
		Mode string `json:"mode"`
		cluster.Status
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("cluster: answer: %w", err)
	}
	if st.Mode != "cluster" {
		fmt.Fprintln(env.Stdout, "this node runs alone (not started with --cluster)")
		return nil
	}
	fmt.Fprintf(env.Stdout, "as seen by %s: %d nodes\n", st.Node, len(st.Nodes))
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tOBJECTS\tHTTP\tUP\tLAST HEARTBEAT")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s ago\n", n.Name, n.State, n.Objects, n.HTTP,
			time.Since(n.Started).Round(time.Second), time.Since(n.LastSeen).Round(time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := st.Stats
	fmt.Fprintf(env.Stdout, "requests: %d local, %d forwarded, %d served for others, %d retried while moving\n", s.Local, s.Forwarded, s.Served, s.Retries)
	return nil
}
