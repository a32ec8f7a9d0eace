package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-objects/strata/gateway"
)

// runToken is `strata token create|ls|revoke`, over a running node's
// token routes (admin scope).
func runToken(ctx context.Context, env *Env, args []string) error {
	const synopsis = "token [flags] create --scope s[,s…] [--classes c,…] [--name n] | ls | revoke <id>"
	if len(args) == 0 {
		return &usageError{"usage: strata " + synopsis}
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, synopsis)
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	var ca clientAuth
	ca.register(fs)
	scope := fs.String("scope", "", "create: comma-separated scopes: call, read, admin (admin implies the others)")
	classes := fs.String("classes", "", "create: comma-separated class patterns ('*' a wildcard) the call scope is limited to")
	name := fs.String("name", "", "create: a name to recognise the token by")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx = ca.with(ctx)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	root := strings.TrimRight(*base, "/") + "/v1/tokens"
	switch {
	case sub == "create" && fs.NArg() == 0:
		scopes, err := tokenScopes(*scope, *classes)
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]any{"name": *name, "scopes": scopes})
		b, err := fetch(ctx, http.MethodPost, root, body)
		if err != nil {
			return err
		}
		var v gateway.TokenView
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("token create: answer: %w", err)
		}
		fmt.Fprintf(env.Stderr, "token %s (%s): store it now, it is not shown again\n", v.ID, strings.Join(v.Scopes, " "))
		_, err = fmt.Fprintln(env.Stdout, v.Token)
		return err
	case sub == "ls" && fs.NArg() == 0:
		b, err := fetch(ctx, http.MethodGet, root, nil)
		if err != nil {
			return err
		}
		var out struct{ Tokens []gateway.TokenView }
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("token ls: answer: %w", err)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tBY\tREVOKED\tBY")
		for _, t := range out.Tokens {
			revoked := "-"
			if t.RevokedAt != nil {
				revoked = t.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, dash(t.Name), strings.Join(t.Scopes, ","), t.CreatedAt.Format(time.RFC3339), dash(t.CreatedBy), revoked, dash(t.RevokedBy))
		}
		return tw.Flush()
	case sub == "revoke" && fs.NArg() == 1:
		b, err := fetch(ctx, http.MethodDelete, root+"/"+url.PathEscape(fs.Arg(0)), nil)
		if err != nil {
			return err
		}
		var v gateway.TokenView
		if err := json.Unmarshal(b, &v); err != nil || v.RevokedAt == nil {
			return fmt.Errorf("token revoke: answer %s: %v", b, err)
		}
		_, err = fmt.Fprintf(env.Stdout, "token %s revoked at %s by %s\n", v.ID, v.RevokedAt.Format(time.RFC3339), dash(v.RevokedBy))
		return err
	}
	fs.Usage()
	return &usageError{"usage: strata " + synopsis}
}

// tokenScopes turns --scope and --classes into scopes: with classes, call
// becomes one call:<pattern> per class pattern.
func tokenScopes(scope, classes string) ([]string, error) {
	var scopes []string
	var pats []string
	for _, c := range strings.Split(classes, ",") {
		if c = strings.TrimSpace(c); c != "" {
			pats = append(pats, c)
		}
	}
	hasCall := false
	for _, s := range strings.Split(scope, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case gateway.ScopeCall:
			hasCall = true
			if len(pats) == 0 {
				scopes = append(scopes, s)
			}
			for _, p := range pats {
				scopes = append(scopes, gateway.ScopeCall+":"+p)
			}
		default:
			scopes = append(scopes, s)
		}
	}
	if len(pats) > 0 && !hasCall {
		return nil, &usageError{"--classes limits the call scope: give --scope call too"}
	}
	if err := gateway.ValidateScopes(scopes); err != nil {
		return nil, &usageError{fmt.Sprintf("--scope %q --classes %q: %v", scope, classes, err)}
	}
	return scopes, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
