package cli

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"strings"
	"testing"

	"github.com/strata-objects/strata/objects"
)

// TestCheckpointFlags: --checkpoint-every takes a default and per-class
// overrides, --retain per-class policies, both also from STRATA_*.
func TestCheckpointFlags(t *testing.T) {
	t.Setenv("STRATA_CHECKPOINT_EVERY", "50,kv=7")
	var cfg objects.CheckpointConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	checkpointFlags(fs, &cfg)
	if err := parseFlags(fs, []string{"--retain", "kv=checkpoint,session=checkpoint,session=all"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Every != 50 || !maps.Equal(cfg.ClassEvery, map[string]int{"kv": 7}) || !maps.Equal(cfg.Retain, map[string]bool{"kv": true}) {
		t.Fatalf("parsed %+v", cfg)
	}
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out}
	for _, args := range [][]string{
		{"serve", "--retain", "kv=forever"},
		{"serve", "--retain", "Bad=checkpoint"},
		{"serve", "--checkpoint-every", "0"},
		{"serve", "--checkpoint-every", "kv=x"},
	} {
		if err := Run(context.Background(), env, args); err == nil || !strings.Contains(err.Error(), "invalid value") {
			t.Errorf("%v: %v, want the flag refused", args, err)
		}
	}
}
