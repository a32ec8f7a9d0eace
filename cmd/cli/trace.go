package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// traceNode is what the CLI reads of one line of GET …/trace.
type traceNode struct {
	Depth   int
	Link    string
	Class   string
	ID      string
	Name    string
	Method  string
	Asked   bool
	Missing string
	Events  []struct {
		Version   uint64
		Time      time.Time
		Via       string
		RequestID string `json:"request_id"`
		Changes   []historyChange
	}
	Notes []string
	Error *struct{ Message string }
}

// printTrace prints the causal trace through class/name's event version:
// a tree, one object's turn per entry, indented under what caused it, with
// its events and changes; or, with asJSON, the gateway's NDJSON.
func printTrace(ctx context.Context, env *Env, base, class, name, version string, asJSON bool) error {
	if _, err := strconv.ParseUint(version, 10, 64); err != nil {
		return &usageError{fmt.Sprintf("history --trace: version %q is not a number", version)}
	}
	body, err := getObject(ctx, base, class, name, "trace", url.Values{"version": {version}})
	if err != nil {
		return err
	}
	defer body.Close()
	if asJSON {
		_, err := io.Copy(env.Stdout, body)
		return err
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var n traceNode
		if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		if n.Error != nil {
			return fmt.Errorf("trace: %s", n.Error.Message)
		}
		for _, note := range n.Notes {
			fmt.Fprintf(env.Stdout, "note: %s\n", note)
		}
		if n.Class == "" {
			continue
		}
		fmt.Fprintln(env.Stdout, traceHeader(n))
		pad := strings.Repeat("    ", n.Depth) + "    "
		if n.Missing != "" {
			fmt.Fprintf(env.Stdout, "%s(%s)\n", pad, n.Missing)
		}
		for _, e := range n.Events {
			cs := changeTexts(e.Changes)
			if len(cs) == 0 {
				cs = []string{"no changes"}
			}
			fmt.Fprintf(env.Stdout, "%sv%d %s  %s\n", pad, e.Version, e.Time.Format(time.RFC3339Nano), strings.Join(cs, "; "))
		}
	}
	return sc.Err()
}

// traceHeader is a node's first line: how it was caused, the object, the
// method, and the cause of its turn.
func traceHeader(n traceNode) string {
	var b strings.Builder
	b.WriteString(strings.Repeat("    ", n.Depth))
	if n.Link != "" {
		b.WriteString(n.Link + " → ")
	}
	who := n.Name
	if who == "" {
		who = "id/" + n.ID
	}
	fmt.Fprintf(&b, "%s/%s .%s", n.Class, who, n.Method)
	if len(n.Events) > 0 {
		e := n.Events[0]
		fmt.Fprintf(&b, "  (%s", e.Via)
		if e.RequestID != "" {
			fmt.Fprintf(&b, ", request %s", e.RequestID)
		}
		b.WriteString(")")
	}
	if n.Asked {
		b.WriteString("  ← asked")
	}
	return b.String()
}
