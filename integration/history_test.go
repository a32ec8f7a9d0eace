package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHistoryCLI drives history, state, audit, restore and ls through the
// binary against a real server.
func TestHistoryCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	p := serve(t, t.TempDir())
	ctx := context.Background()
	for _, v := range []int{1, 2, 3} {
		if _, err := call(ctx, p.url, "kv", "cfg", "put", map[string]any{"key": "level", "value": v}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// strata runs a subcommand (its words before the first flag or
	// argument are in cmd) against the server.
	strata := func(args ...string) string {
		t.Helper()
		words := 1
		if args[0] == "audit" {
			words = 2
		}
		full := append(append(append([]string{}, args[:words]...), "--url", p.url), args[words:]...)
		out, err := exec.Command(strataBinary(t), full...).CombinedOutput()
		if err != nil {
			t.Fatalf("strata %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	hist := strata("history", "kv", "cfg")
	if !strings.Contains(hist, "level: 1 → 2") || strings.Count(hist, "\n") != 4 {
		t.Fatalf("history table:\n%s", hist)
	}
	if out := strata("state", "--json", "--version", "1", "kv", "cfg"); !strings.Contains(out, `"keys":{"level":1}`) {
		t.Fatalf("state at version 1: %s", out)
	}
	if out := strata("state", "--version", "1", "kv", "cfg"); !strings.Contains(out, "KEY    VALUE\nlevel  1\n") {
		t.Fatalf("state at version 1 as a table:\n%s", out)
	}
	// SQL tables show as tables, with their indexes and views.
	q := map[string]any{"query": "CREATE TABLE t(a, b); CREATE INDEX t_b ON t(b); CREATE VIEW v AS SELECT a FROM t; INSERT INTO t VALUES(1, 'one'), (NULL, 'two\tlines')"}
	if _, err := call(ctx, p.url, "sql", "db", "exec", q, nil); err != nil {
		t.Fatal(err)
	}
	want := "table t (2 rows): CREATE TABLE t(a, b)\nROWID  a     b\n1      1     one\n2      NULL  two\\tlines\n\nindex t_b: CREATE INDEX t_b ON t(b)\nview v: CREATE VIEW v AS SELECT a FROM t\n"
	if out := strata("state", "sql", "db"); !strings.Contains(out, want) {
		t.Fatalf("SQL state as tables:\n%s\nwant\n%s", out, want)
	}
	if out := strata("audit", "verify", "kv", "cfg"); !strings.Contains(out, "hash chain intact over 3 events") {
		t.Fatalf("audit: %s", out)
	}
	if _, err := call(ctx, p.url, "kv", "other", "put", map[string]any{"key": "x", "value": 1}, nil); err != nil {
		t.Fatal(err)
	}
	waitListed := func() string {
		for i := 0; ; i++ { // the listing reads the snapshot, which trails the log a little
			out := strata("audit", "verify", "--all", "kv")
			if strings.Contains(out, "kv: 2 objects, 4 events, 0 broken") || i == 100 {
				return out
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out := waitListed(); !strings.Contains(out, "kv: 2 objects, 4 events, 0 broken") {
		t.Fatalf("audit --all: %s", out)
	}
	if out := strata("restore", "--yes", "--version", "1", "kv", "cfg"); !strings.Contains(out, `"restored_to_version":1`) {
		t.Fatalf("restore: %s", out)
	}
	var got struct{ Value int }
	if _, err := call(ctx, p.url, "kv", "cfg", "get", map[string]any{"key": "level"}, &got); err != nil || got.Value != 1 {
		t.Fatalf("after restore: %v %v", got, err)
	}
	if out := strata("ls", "kv"); !strings.Contains(out, "cfg") || !strings.Contains(out, "VERSION") {
		t.Fatalf("ls: %s", out)
	}
	// Without --yes and without an answer, nothing is restored.
	cmd := exec.Command(strataBinary(t), "restore", "--url", p.url, "--version", "2", "kv", "cfg")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "cancelled") {
		t.Fatalf("unconfirmed restore: %v %s", err, out)
	}
}
