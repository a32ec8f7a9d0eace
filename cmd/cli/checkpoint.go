package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// checkpointFlags adds --checkpoint-every and --retain to fs; they fill cfg.
func checkpointFlags(fs *flag.FlagSet, cfg *objects.CheckpointConfig) {
	fs.Var(&everyFlag{cfg}, "checkpoint-every", fmt.Sprintf("events between an object's checkpoints: N, or N,class=M,… to override per class (default %d; a negative N disables)", objects.DefaultCheckpointEvery))
	fs.Var(&retainFlag{cfg}, "retain", "per-class retention: class=checkpoint,… drops a class's events older than its newest checkpoint (only on a log created with it; default: every class keeps everything)")
}

type everyFlag struct{ cfg *objects.CheckpointConfig }

func (f *everyFlag) String() string {
	if f.cfg == nil {
		return ""
	}
	parts := []string{}
	if f.cfg.Every != 0 {
		parts = append(parts, strconv.Itoa(f.cfg.Every))
	}
	for c, n := range f.cfg.ClassEvery {
		parts = append(parts, c+"="+strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

func (f *everyFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		class, num, perClass := strings.Cut(strings.TrimSpace(part), "=")
		if !perClass {
			num = class
		}
		n, err := strconv.Atoi(num)
		if err != nil || n == 0 {
			return fmt.Errorf("%q: want a non-zero number of events", part)
		}
		if !perClass {
			f.cfg.Every = n
			continue
		}
		if !log.ValidClass(class) {
			return fmt.Errorf("%q: bad class name", class)
		}
		if f.cfg.ClassEvery == nil {
			f.cfg.ClassEvery = map[string]int{}
		}
		f.cfg.ClassEvery[class] = n
	}
	return nil
}

type retainFlag struct{ cfg *objects.CheckpointConfig }

func (f *retainFlag) String() string {
	if f.cfg == nil {
		return ""
	}
	var parts []string
	for c := range f.cfg.Retain {
		parts = append(parts, c+"=checkpoint")
	}
	return strings.Join(parts, ",")
}

func (f *retainFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		class, policy, _ := strings.Cut(strings.TrimSpace(part), "=")
		if !log.ValidClass(class) {
			return fmt.Errorf("%q: want class=checkpoint", part)
		}
		switch policy {
		case "checkpoint":
			if f.cfg.Retain == nil {
				f.cfg.Retain = map[string]bool{}
			}
			f.cfg.Retain[class] = true
		case "all":
			delete(f.cfg.Retain, class)
		default:
			return fmt.Errorf("%q: retention %q, want checkpoint (drop events older than the newest checkpoint) or all (keep everything)", part, policy)
		}
	}
	return nil
}
