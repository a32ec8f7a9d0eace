package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRetentionAfterLostSnapshot: a node with checkpoints every 5 events
// and retention for kv is SIGKILLed, its snapshot deleted, and restarted:
// the object comes back from its checkpoint (its early events are gone),
// the audit verifies from that checkpoint, and time travel before it is a
// 400.
func TestRetentionAfterLostSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := t.TempDir()
	flags := []string{"--checkpoint-every", "5", "--retain", "kv=checkpoint"}
	p := serve(t, dir, flags...)
	ctx := context.Background()
	model := map[string]int{}
	for i := 1; i <= 23; i++ {
		k := fmt.Sprint("k", i%4)
		if _, err := call(ctx, p.url, "kv", "r", "put", map[string]any{"key": k, "value": i}, nil); err != nil {
			t.Fatal(err)
		}
		model[k] = i
	}
	type audit struct {
		Events uint64
		OK     bool
		From   uint64 `json:"from_version"`
	}
	getAudit := func(base string) (audit, error) {
		var a audit
		resp, err := client.Get(base + "/v1/objects/kv/r/audit")
		if err != nil {
			return a, err
		}
		defer resp.Body.Close()
		return a, json.NewDecoder(resp.Body).Decode(&a)
	}
	// Checkpoints and drops happen after the acks: wait for the last.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if a, err := getAudit(p.url); err == nil && a.From == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events before the checkpoint at 20 were not dropped:\n%s", p.output())
		}
	}
	p.kill()
	if err := os.RemoveAll(filepath.Join(dir, "snapshot")); err != nil {
		t.Fatal(err)
	}
	p = serve(t, dir, flags...)
	var out struct {
		Entries []struct {
			Key   string
			Value int
		}
	}
	if _, err := call(ctx, p.url, "kv", "r", "list", map[string]any{}, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range out.Entries {
		got[e.Key] = e.Value
	}
	if !maps.Equal(got, model) {
		t.Fatalf("after a lost snapshot: %v, want %v", got, model)
	}
	if a, err := getAudit(p.url); err != nil || !a.OK || a.From != 20 || a.Events != 4 {
		t.Fatalf("audit: %+v %v", a, err)
	}
	resp, err := client.Get(p.url + "/v1/objects/kv/r/state?version=3")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("state before the retained history: %s", resp.Status)
	}
}
