package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// TestEnvFlags: every flag takes its STRATA_* variable unless the command
// line gives it, and a bad value is a usage error.
func TestEnvFlags(t *testing.T) {
	newFS := func() (*flag.FlagSet, *time.Duration, *string) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		idle := fs.Duration("idle-timeout", 30*time.Second, "")
		data := fs.String("data", "./data", "")
		return fs, idle, data
	}
	t.Setenv("STRATA_IDLE_TIMEOUT", "5s")
	t.Setenv("STRATA_DATA", "/from/env")
	fs, idle, data := newFS()
	if err := parseFlags(fs, []string{"--data", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	if *idle != 5*time.Second || *data != "/from/flag" {
		t.Fatalf("idle %v data %q: want the env's 5s and the flag's /from/flag", *idle, *data)
	}
	t.Setenv("STRATA_IDLE_TIMEOUT", "soon")
	fs, _, _ = newFS()
	var ue *usageError
	if err := parseFlags(fs, nil); !errors.As(err, &ue) || !strings.Contains(err.Error(), "STRATA_IDLE_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out}
	cases := [][]string{
		{"nosuch"},
		{"serve", "extra-arg"},
		{"serve", "--fsync", "sometimes"},
		{"serve", "--idle-timeout", "0s"},
		{"call", "counter"},
	}
	for _, args := range cases {
		err := Run(context.Background(), env, args)
		if exitCode(err) != 2 {
			t.Errorf("%v: err %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}
