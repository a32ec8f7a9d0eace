package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/objects"
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
		{"serve", "--max-activations", "-1"},
		{"call", "counter"},
		{"serve", "--pprof", "0.0.0.0:6060"},
		{"serve", "--pprof", "6060"},
		{"serve", "--idempotency-window", "nosuch=1h"},
		{"serve", "--alarm-sweep-interval", "0s"},
		{"serve", "--alarm-sweep-page", "0"},
		{"serve", "--alarm-takeover-lookback", "-1s"},
		{"serve", "--nats-listen", "0.0.0.0:4222"},     // off loopback without TLS
		{"serve", "--nats-client-password-file", "pw"}, // without --nats-listen
		{"serve", "--nats-tls-cert", "c.pem"},          // without its key
		{"serve", "--tls-cert", "c.pem"},               // without its key
		{"serve", "--nats-url", "nats://x:4222", "--nats-listen", "127.0.0.1:0"},
	}
	for _, args := range cases {
		err := Run(context.Background(), env, args)
		if exitCode(err) != 2 {
			t.Errorf("%v: err %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}

// TestPprof: the profiler answers on its own loopback listener and stops
// with the server.
func TestPprof(t *testing.T) {
	p, err := startPprof("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + p.ln.Addr().String() + "/debug/pprof/goroutine?debug=1"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Fatalf("pprof: %d %.80q", resp.StatusCode, body)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("pprof still answers after stop")
	}
}

// TestIdempotencyWindowFlag: --idempotency-window sets the windows of the
// classes it names.
func TestIdempotencyWindowFlag(t *testing.T) {
	var windows map[string]time.Duration
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	idempotencyFlags(fs, &windows)
	for _, bad := range []string{"kv", "kv=-1h", "kv=soon", "Bad=1h"} {
		if err := parseFlags(fs, []string{"--idempotency-window", bad}); err == nil {
			t.Fatalf("--idempotency-window %s was taken", bad)
		}
	}
	if err := parseFlags(fs, []string{"--idempotency-window", "kv=1h, counter=90s"}); err != nil {
		t.Fatal(err)
	}
	cls := classes.All()
	if err := applyIdemWindows(windows, cls); err != nil {
		t.Fatal(err)
	}
	for _, c := range cls {
		want := objects.DefaultIdempotencyWindow
		switch c.Name() {
		case "kv":
			want = time.Hour
		case "counter":
			want = 90 * time.Second
		}
		if got := c.IdempotencyWindow(); got != want {
			t.Fatalf("%s: window %s, want %s", c.Name(), got, want)
		}
	}
}
