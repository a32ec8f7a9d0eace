package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchClusterRuns: a short `strata bench cluster` (the built binary,
// since it starts `serve` children of itself) measures the raw limit, W3
// on one node and on three, and local and forwarded increments, without
// errors (every row has a rate; placement by the Strata-Node header found
// local and forwarded objects, or the run fails).
func TestBenchClusterRuns(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "strata")
	build := exec.Command("go", "build", "-o", bin, "../strata")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "bench", "cluster", "--json", "--duration", "300ms", "--warmup", "0s", "--clients", "3", "--objects", "20")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = os.Environ()
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench cluster: %v\n%s", err, errOut.String())
	}
	got := map[string]benchResult{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r benchResult
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got[r.Workload] = r
	}
	for _, w := range []string{"raw-sync", "W3-R1", "W3-R3", "R3-local", "R3-fwd", "C2-http", "C2", "WS-ping-l", "WS-ping-f", "WS-post-l", "WS-post-f"} {
		r, ok := got[w]
		if !ok {
			t.Fatalf("no %s row in %v\n%s", w, got, errOut.String())
		}
		if r.PerSecond <= 0 || r.Errors != 0 {
			t.Errorf("%s: %+v", w, r)
		}
	}
}
