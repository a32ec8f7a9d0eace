package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUnwritableSnapshot: the snapshot folder stops being writable under a
// running node. How, as root (chmod does not stop root, and mounting a tiny
// tmpfs needs privileges a test does not have): the folder is renamed away
// and a plain file put at its path. Badger keeps its open files, so writes
// to its memtable go on, but the next memtable flush must create a table
// file at <folder>/NNNNNN.sst, which now fails (ENOTDIR), and Badger
// retries that forever, as it does on a full or read-only disk. Then:
// /healthz says 503 with the reason, writes are refused, and a graceful stop
// (whose Badger close would flush forever) exits within --shutdown-timeout,
// non-zero, naming what it waited for.
func TestUnwritableSnapshot(t *testing.T) {
	dir := t.TempDir()
	p := serve(t, dir, "--shutdown-timeout", "5s")
	ctx := context.Background()
	if _, err := call(ctx, p.url, "kv", "before", "put", map[string]any{"key": "k", "value": 1}, nil); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snapshot")
	if err := os.Rename(snap, snap+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(snap, []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Fill more than a memtable (16 MiB) so that Badger flushes one.
	big := strings.Repeat("x", 120<<10)
	deadline := time.Now().Add(2 * time.Minute)
	var health struct{ Status, Reason string }
	for i := 0; ; i++ {
		if i < 400 {
			status, _, body, err := rpc(ctx, p.url, "kv", "filler", "put", map[string]any{"key": "k" + string(rune('a'+i%26)) + strings.Repeat("0", i%7), "value": big})
			if err != nil {
				t.Fatal(err)
			}
			if status != 200 && status != 503 {
				t.Fatalf("put %d: %d %s", i, status, body)
			}
		}
		resp, err := client.Get(p.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if err := json.Unmarshal(b, &health); err != nil {
				t.Fatalf("healthz: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz still %d %s after filling the memtable:\n%s", resp.StatusCode, b, p.output())
		}
		if i >= 400 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if health.Status != "unhealthy" || !strings.Contains(health.Reason, "badger") {
		t.Fatalf("healthz says %+v", health)
	}
	status, _, body, err := rpc(ctx, p.url, "kv", "after", "put", map[string]any{"key": "k", "value": 2})
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(string(body), `"unhealthy"`) {
		t.Fatalf("a write on an unhealthy node: %d %s %v", status, body, err)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit 60s after SIGTERM with --shutdown-timeout 5s:\n%s", p.output())
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("exit code 0 after a stop that could not finish:\n%s", p.output())
	}
	if out := p.output(); !strings.Contains(out, "shutdown timed out") || !strings.Contains(out, "waiting_for=") {
		t.Fatalf("the stop does not say what it waited for:\n%s", out)
	}
}
