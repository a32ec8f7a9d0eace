package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// runAlarms is `strata alarms ls [class] | dead | retry`, over the
// gateway's operator routes of a running node.
func runAlarms(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "alarms", "alarms [flags] ls [class] | dead | retry", "gateway URL")
	fs, base := g.FlagSet, g.base
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	root := strings.TrimRight(*base, "/") + "/v1/alarms"
	var method, u string
	switch {
	case fs.NArg() >= 1 && fs.NArg() <= 2 && fs.Arg(0) == "ls":
		method, u = http.MethodGet, root
		if fs.NArg() == 2 {
			u += "?class=" + url.QueryEscape(fs.Arg(1))
		}
	case fs.NArg() == 1 && fs.Arg(0) == "dead":
		method, u = http.MethodGet, root+"/dead"
	case fs.NArg() == 1 && fs.Arg(0) == "retry":
		method, u = http.MethodPost, root+"/dead/retry"
	default:
		fs.Usage()
		return &usageError{"alarms needs ls [class], dead or retry"}
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
			return fmt.Errorf("alarms retry: answer: %w", err)
		}
		_, err := fmt.Fprintf(env.Stdout, "%d dead alarms fired again\n", out.Retried)
		return err
	}
	var out struct {
		Alarms []struct {
			Class  string    `json:"class"`
			ID     string    `json:"id"`
			Object string    `json:"object"`
			Name   string    `json:"name"`
			At     time.Time `json:"at"`
			Reason string    `json:"reason"`
		} `json:"alarms"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("alarms: answer: %w", err)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tOBJECT\tALARM\tDUE\tIN\tREASON")
	now := time.Now()
	for _, a := range out.Alarms {
		obj := a.Object
		if obj == "" {
			obj = "id/" + a.ID
		}
		name := a.Name
		if name == "" {
			name = "(default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Class, obj, name, a.At.UTC().Format(time.RFC3339Nano), a.At.Sub(now).Round(time.Millisecond), a.Reason)
	}
	return tw.Flush()
}
