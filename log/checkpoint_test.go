package log

import (
	"context"
	"testing"
)

// TestCheckpointSameIDOtherClass: checkpoints of two classes' objects with
// the same id and version are both stored, each with its own state (their
// chunk and manifest message ids once named only id and version, so the
// second was dropped as a duplicate of the first).
func TestCheckpointSameIDOtherClass(t *testing.T) {
	l := openLog(t, startServer(t), Config{})
	ctx := context.Background()
	id := objID(11)
	for _, class := range []string{"kv", "counter"} {
		ck := &Checkpoint{Class: class, ID: id, Version: 1, Seq: 1, Keys: map[string][]byte{"owner": []byte(class)}}
		if err := l.WriteCheckpoint(ctx, ck); err != nil {
			t.Fatalf("checkpoint of %s: %v", class, err)
		}
	}
	for _, class := range []string{"kv", "counter"} {
		info, err := l.LastCheckpoint(ctx, class, id)
		if err != nil {
			t.Fatalf("last checkpoint of %s: %v", class, err)
		}
		ck, err := l.LoadCheckpoint(ctx, info)
		if err != nil {
			t.Fatalf("load checkpoint of %s: %v", class, err)
		}
		if got := string(ck.Keys["owner"]); got != class || len(ck.Keys) != 1 {
			t.Fatalf("checkpoint of %s holds %q", class, ck.Keys)
		}
	}
}
