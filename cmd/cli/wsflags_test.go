package cli

import (
	"errors"
	"flag"
	"slices"
	"testing"
	"time"
)

// TestWebSocketFlags: serve's WebSocket flags reach the gateway's config,
// from the command line or STRATA_WS_*, and bad values are usage errors.
func TestWebSocketFlags(t *testing.T) {
	parse := func(args ...string) (wsFlags, error) {
		var w wsFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		w.register(fs)
		return w, parseFlags(fs, args)
	}
	t.Setenv("STRATA_WS_ORIGINS", "a.example, b.example:8443")
	w, err := parse("--ws-ping-interval", "5s", "--ws-read-limit", "4096")
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.config()
	if err != nil {
		t.Fatal(err)
	}
	if c.PingInterval != 5*time.Second || c.ReadLimitBytes != 4096 || c.SendQueueLen != 256 ||
		!slices.Equal(c.AllowedOrigins, []string{"a.example", "b.example:8443"}) {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range [][]string{{"--ws-ping-interval", "0s"}, {"--ws-read-limit", "-1"}, {"--ws-send-queue", "0"}} {
		w, err := parse(bad...)
		if err == nil {
			_, err = w.config()
		}
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Fatalf("%v: %v, want a usage error", bad, err)
		}
	}
}
