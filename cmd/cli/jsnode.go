package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/strata-objects/strata/jsclass"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// jsFlags configure the classes deployed at run time (jsclass).
type jsFlags struct {
	turnTimeout time.Duration
	memoryLimit int64
}

func (f *jsFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.turnTimeout, "js-turn-timeout", jsclass.DefaultTurnTimeout, "CPU-time limit of one turn of a deployed JavaScript class (a deploy may set its own)")
	fs.Int64Var(&f.memoryLimit, "js-memory-limit", jsclass.DefaultMemoryLimit, "bytes a running JavaScript turn may grow the heap by before it is interrupted")
}

func (f jsFlags) validate() error {
	if f.turnTimeout <= 0 || f.memoryLimit <= 0 {
		return &usageError{"--js-turn-timeout and --js-memory-limit must be positive"}
	}
	return nil
}

// openJS opens the class store and the registry of deployed classes; it
// sets oc.Resolve so the runtime serves them.
func openJS(ctx context.Context, l *log.Log, lc logConfig, builtin []*objects.Class, oc *objects.Config) (*log.Classes, *jsclass.Registry, error) {
	cls, err := l.OpenClasses(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open the class store: %w", err)
	}
	names := map[string]bool{}
	for _, c := range builtin {
		names[c.Name()] = true
	}
	reg, err := jsclass.New(jsclass.Config{
		Classes: cls, Log: l, Builtin: func(n string) bool { return names[n] }, Logger: lc.logger,
		TurnTimeout: lc.js.turnTimeout, MemoryLimit: lc.js.memoryLimit,
	})
	if err != nil {
		cls.Close()
		return nil, nil, err
	}
	oc.Resolve = reg.Resolve
	return cls, reg, nil
}
