package cli

import (
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// idemWindowFlag is --idempotency-window class=D,…: how long a class keeps
// the answers of keyed requests for their retries (objects.Class
// WithIdempotencyWindow).
type idemWindowFlag struct{ windows *map[string]time.Duration }

func idempotencyFlags(fs *flag.FlagSet, windows *map[string]time.Duration) {
	fs.Var(&idemWindowFlag{windows}, "idempotency-window", fmt.Sprintf("per-class retention of keyed requests' answers for retries: class=duration,… (default %s, or the class's own)", objects.DefaultIdempotencyWindow))
}

func (f *idemWindowFlag) String() string {
	if f.windows == nil {
		return ""
	}
	var parts []string
	for c, d := range *f.windows {
		parts = append(parts, c+"="+d.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f *idemWindowFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		class, dur, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !log.ValidClass(class) {
			return fmt.Errorf("%q: want class=duration", part)
		}
		d, err := time.ParseDuration(dur)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q: want a positive duration such as 1h", part)
		}
		if *f.windows == nil {
			*f.windows = map[string]time.Duration{}
		}
		(*f.windows)[class] = d
	}
	return nil
}

// applyIdemWindows sets the windows on the hosted classes; a class the
// node does not host is an error.
func applyIdemWindows(windows map[string]time.Duration, classes []*objects.Class) error {
	hosted := map[string]*objects.Class{}
	for _, c := range classes {
		hosted[c.Name()] = c
	}
	for name, d := range windows {
		c, ok := hosted[name]
		if !ok {
			return &usageError{fmt.Sprintf("--idempotency-window: this node hosts no class %q", name)}
		}
		c.WithIdempotencyWindow(d)
	}
	return nil
}
