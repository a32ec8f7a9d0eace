package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
)

// runOutbox is `strata outbox ls <class> <name> | dead | retry`, over the
// gateway's outbox routes of a running node.
func runOutbox(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "outbox", "outbox [flags] ls <class> <name> | dead | retry", "gateway URL")
	fs, base := g.FlagSet, g.base
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	root := strings.TrimRight(*base, "/")
	var method, u string
	switch {
	case fs.NArg() == 3 && fs.Arg(0) == "ls":
		method, u = http.MethodGet, root+"/v1/objects/"+url.PathEscape(fs.Arg(1))+"/"+url.PathEscape(fs.Arg(2))+"/outbox"
	case fs.NArg() == 1 && fs.Arg(0) == "dead":
		method, u = http.MethodGet, root+"/v1/outbox/dead"
	case fs.NArg() == 1 && fs.Arg(0) == "retry":
		method, u = http.MethodPost, root+"/v1/outbox/dead/retry"
	default:
		fs.Usage()
		return &usageError{"outbox needs ls <class> <name>, dead or retry"}
	}
	body, err := fetch(ctx, method, u, nil)
	if err != nil {
		return err
	}
	if fs.Arg(0) == "retry" {
		var out struct {
			Retried int `json:"retried"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			return fmt.Errorf("outbox retry: answer: %w", err)
		}
		_, err := fmt.Fprintf(env.Stdout, "%d dead letters back in their outboxes\n", out.Retried)
		return err
	}
	var out struct {
		Messages []struct {
			Class    string `json:"class"`
			Sender   string `json:"sender"`
			Version  uint64 `json:"version"`
			Turn     int    `json:"turn"`
			Index    int    `json:"index"`
			Target   string `json:"target"`
			Method   string `json:"method"`
			Reply    string `json:"reply"`
			Attempts int    `json:"attempts"`
			LastErr  string `json:"last_error"`
			Dead     bool   `json:"dead"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("outbox: answer: %w", err)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SENDER\tMESSAGE\tTARGET\tMETHOD\tREPLY\tSTATE\tATTEMPTS\tLAST ERROR")
	for _, m := range out.Messages {
		state := "pending"
		if m.Dead {
			state = "dead"
		}
		fmt.Fprintf(tw, "%s/id/%s\tv%d.%d.%d\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Class, m.Sender, m.Version, m.Turn, m.Index, m.Target, m.Method, m.Reply, state, m.Attempts, m.LastErr)
	}
	return tw.Flush()
}
