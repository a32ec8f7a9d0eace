package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(strataBinary(t), "rebuild", "--data", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rebuilt snapshot from 51 events") {
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
