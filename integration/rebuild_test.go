package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestRebuildThroughTheBinary: write through a server, stop it, rebuild the
// snapshot from the log with `strata rebuild`, start again: same state.
func TestRebuildThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	ctx := context.Background()
	p := serve(t, dir)
	for i := 0; i < 50; i++ {
		if _, err := call(ctx, p.url, "kv", "r", "put", map[string]any{"key": fmt.Sprintf("k%02d", i), "value": i}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := call(ctx, p.url, "kv", "r", "delete", map[string]any{"key": "k07"}, nil); err != nil {
		t.Fatal(err)
	}
	// SQL objects: tables, an index, a view, rows changed and deleted.
	sqlObjects := []string{"s1", "s2", "s3"}
	for i, name := range sqlObjects {
		for _, q := range []string{
			"CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v, w); CREATE INDEX t_v ON t(v); CREATE VIEW big AS SELECT id FROM t WHERE v > 2",
			fmt.Sprintf("INSERT INTO t(v, w) VALUES(1, 'a'), (2, randomblob(4)), (3, %d), (4, 0.5)", i),
			"UPDATE t SET v = v * 10 WHERE id % 2 = 0; DELETE FROM t WHERE id = 3",
		} {
			if _, err := call(ctx, p.url, "sql", name, "exec", map[string]any{"query": q}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// sqlState reads every object's tables and schema through the server.
	sqlState := func() map[string]string {
		out := map[string]string{}
		for _, name := range sqlObjects {
			var res struct{ Rows [][]any }
			q := "SELECT 'row', rowid, * FROM t UNION ALL SELECT type, name, sql, NULL, NULL FROM sqlite_schema UNION ALL SELECT 'seq', seq, NULL, NULL, NULL FROM sqlite_sequence"
			if _, err := call(ctx, p.url, "sql", name, "exec", map[string]any{"query": q}, &res); err != nil {
				t.Fatal(err)
			}
			out[name] = fmt.Sprint(res.Rows)
		}
		return out
	}
	wantSQL := sqlState()
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(strataBinary(t), "rebuild", "--data", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rebuilt snapshot from 60 events") {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	p = serve(t, dir)
	var list struct{ Entries []struct{ Key string } }
	if _, err := call(ctx, p.url, "kv", "r", "list", map[string]any{}, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Entries) != 49 || list.Entries[7].Key != "k08" {
		t.Fatalf("after rebuild: %d entries, %+v", len(list.Entries), list.Entries[:min(len(list.Entries), 9)])
	}
	// The rebuild dropped the SQL files; each object builds its own from
	// the log (and its newest checkpoint) when it is next used.
	if got := sqlState(); !reflect.DeepEqual(got, wantSQL) {
		t.Fatalf("SQL after rebuild:\n%v\nwant\n%v", got, wantSQL)
	}
}

// TestExternalNATS: a node started with --nats-url keeps its log in another
// node's NATS: it serves what the first wrote, and the first is fenced off
// the object once the second writes it.
func TestExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx := context.Background()
	dirA := t.TempDir()
	a := serve(t, dirA, "--nats-listen", "127.0.0.1:0")
	a.mu.Lock()
	natsURL := a.nats
	a.mu.Unlock()
	if natsURL == "" {
		t.Fatalf("no NATS URL logged:\n%s", a.output())
	}
	var v struct{ Value int }
	if _, err := call(ctx, a.url, "counter", "shared", "increment", map[string]int{"by": 5}, &v); err != nil || v.Value != 5 {
		t.Fatal(v, err)
	}
	// a's listener wants the client password it made in its data folder.
	b := serve(t, t.TempDir(), "--nats-url", natsURL, "--nats-password-file", filepath.Join(dirA, "nats-client-password"))
	if _, err := call(ctx, b.url, "counter", "shared", "increment", map[string]int{"by": 1}, &v); err != nil || v.Value != 6 {
		t.Fatalf("second node: %v %v, want 6", v, err)
	}
	code, err := call(ctx, a.url, "counter", "shared", "increment", map[string]int{"by": 1}, &v)
	if code != 409 {
		t.Fatalf("stale first node: %d %v, want 409 fenced", code, err)
	}
	if _, err := call(ctx, a.url, "counter", "shared", "increment", map[string]int{"by": 1}, &v); err != nil || v.Value != 7 {
		t.Fatalf("first node after reload: %v %v, want 7", v, err)
	}
}
