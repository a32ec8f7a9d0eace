package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// runRebuild derives a new snapshot from the log beside the old one and
// swaps it in only when it is complete: an interrupted rebuild leaves the
// old snapshot in place.
func runRebuild(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "rebuild [flags]")
	var lc logConfig
	fs.StringVar(&lc.dataDir, "data", "./data", "data folder of the stopped node")
	fs.StringVar(&lc.natsURL, "nats-url", "", "external NATS holding the log (default: the embedded store in --data)")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lc.fsync = "always"
	logger, err := newLogger(env.Stderr, *level)
	if err != nil {
		return err
	}
	lc.logger = logger
	ln, err := openLog(ctx, lc)
	if err != nil {
		return err
	}
	defer ln.close(context.Background())

	live, next, old := snapshotDir(lc.dataDir), snapshotDir(lc.dataDir)+".rebuild", snapshotDir(lc.dataDir)+".old"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("clear %s: %w", next, err)
	}
	p, err := projector.Open(projector.Config{Dir: next, Logger: logger})
	if err != nil {
		return err
	}
	start := time.Now()
	last := start
	var broken brokenReport
	n, err := objects.Rebuild(ctx, ln.log, p, func(events uint64) {
		if now := time.Now(); now.Sub(last) > 200*time.Millisecond {
			last = now
			fmt.Fprintf(env.Stderr, "\rrebuilding: %d events, %.0f events/s", events, float64(events)/now.Sub(start).Seconds())
		}
	}, broken.add)
	cerr := p.Close(context.Background())
	if err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	elapsed := time.Since(start)
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if _, err := os.Stat(live); err == nil {
		if err := os.Rename(live, old); err != nil {
			return fmt.Errorf("move old snapshot aside: %w", err)
		}
	}
	if err := os.Rename(next, live); err != nil {
		return fmt.Errorf("swap in new snapshot: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	// SQL databases are rebuilt from the log when their object next
	// activates (objects/sqlstate.go): dropping them is the rebuild.
	if err := os.RemoveAll(sqlDir(lc.dataDir)); err != nil {
		return fmt.Errorf("drop SQL snapshots: %w", err)
	}
	rate := float64(n) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(env.Stdout, "\rrebuilt snapshot from %d events in %s (%.0f events/s)\n", n, elapsed.Round(time.Millisecond), rate)
	if broken.count == 0 {
		return nil
	}
	broken.print(env.Stdout)
	return fmt.Errorf("rebuild: the log holds %d messages that are not valid events of their object's chain (listed above): those objects stop before them and answer corrupt_log; every other object was rebuilt", broken.count)
}

// brokenReport collects the broken messages a rebuild skipped.
type brokenReport struct {
	count int
	shown []*log.CorruptError // the first brokenShownMax
}

// brokenShownMax bounds the broken messages a rebuild lists.
const brokenShownMax = 100

func (b *brokenReport) add(ce *log.CorruptError) {
	b.count++
	if len(b.shown) < brokenShownMax {
		b.shown = append(b.shown, ce)
	}
}

func (b *brokenReport) print(w io.Writer) {
	for _, ce := range b.shown {
		fmt.Fprintf(w, "broken: %s sequence %d on %s: %v\n", ce.Stream, ce.Seq, ce.Subject, ce.Err)
	}
	if b.count > len(b.shown) {
		fmt.Fprintf(w, "broken: … and %d more\n", b.count-len(b.shown))
	}
}
